"""Timing a design on a target: build and prepare it, time runs robustly, compare two designs interleaved.

Every measurement fixes and records the thread count, warms up, and reports the median of timed runs; samples the
OS preempted are dropped where enough clean ones remain.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable

try:
    import resource
except ImportError:  # Windows
    resource = None

import torch

from .. import cores, ultra
from ..errors import UserError
from ._targets import LatencyTarget, default_threads, get_target, host_fingerprint


def prepare_model(model_dict: dict, target: LatencyTarget, nc: int | None = None) -> torch.nn.Module:
    """Built, fused, in eval mode, without gradients; for export targets as Ultralytics' exporter prepares it."""
    return ultra.inference_model(model_dict, nc, export=target.export)


def example_input(imgsz: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(seed))


def _switches() -> int:
    """Involuntary context switches of this process so far (0 where the OS does not say)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw if resource is not None else 0


def time_runs(run: Callable[[], object], warmup: int, repeats: int, max_time_s: float | None = None,
              inner: int = 1) -> tuple[list[float], int]:
    """Milliseconds per call of ``run`` over ``repeats`` samples (``inner`` calls each) after ``warmup`` calls.

    Samples during which the OS preempted this process (an involuntary context switch) are dropped when at least a
    quarter of them (and 5) are clean, so a busy machine inflates the result less. Stops early once ``max_time_s``
    is spent, keeping at least 5 samples. GC is off while timing, and no ultranas process on this host trains
    meanwhile (:func:`ultranas.cores.timing`). Returns (kept samples, dropped count).
    """
    with cores.timing():
        return _time_runs(run, warmup, repeats, max_time_s, inner)


def _time_runs(run, warmup: int, repeats: int, max_time_s: float | None, inner: int) -> tuple[list[float], int]:
    for _ in range(warmup):
        run()
    enabled = gc.isenabled()
    gc.disable()
    times, clean, start = [], [], time.perf_counter()
    try:
        for i in range(repeats):
            s0 = _switches()
            t0 = time.perf_counter()
            for _ in range(inner):
                run()
            t1 = time.perf_counter()
            times.append((t1 - t0) * 1e3 / inner)
            if _switches() == s0:
                clean.append(times[-1])
            if max_time_s is not None and i >= 4 and t1 - start > max_time_s:
                break
    finally:
        if enabled:
            gc.enable()
    if len(clean) >= max(5, len(times) // 4):
        return clean, len(times) - len(clean)
    return times, 0


def summarize(times: list[float]) -> dict:
    """median, mean, std, p10, p90, min and cv (std / mean) of timings in ms."""
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else [times[0]] * 9
    mean = statistics.fmean(times)
    std = statistics.pstdev(times)
    return {"median_ms": statistics.median(times), "mean_ms": mean, "std_ms": std, "p10_ms": q[0],
            "p90_ms": q[-1], "min_ms": min(times), "cv": std / mean if mean > 0 else 0.0, "repeats": len(times)}


@contextlib.contextmanager
def fixed_threads(n: int):
    """Fix torch's intra-op threads for the block and restore them after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_runner(model_dict: dict, imgsz: int, target: str | None = None, threads: int | None = None,
                batch: int = 1, nc: int | None = None) -> Callable[[], object]:
    """A ready-to-time ``run()`` of one design on ``target`` (built, fused, exported where the target exports)."""
    tgt = get_target(target)
    if imgsz % 32 or imgsz <= 0 or imgsz > 4096:
        raise UserError(f"latency imgsz must be a positive multiple of 32 (at most 4096), got {imgsz}")
    with fixed_threads(int(threads or default_threads())):
        model = prepare_model(model_dict, tgt, nc)
        x = example_input(imgsz, batch)
        if tgt.device == "cuda":
            model, x = model.to("cuda"), x.to("cuda")
            if tgt.half:
                model, x = model.half(), x.half()
        return tgt.runner(model, (x,), int(threads or default_threads()))


def load_seen() -> float | None:
    """The host's 1-minute load average (runnable processes), recorded beside every timing."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def measure_latency(model_dict: dict, imgsz: int, target: str | None = None, threads: int | None = None,
                    warmup: int = 10, repeats: int = 50, batch: int = 1, max_time_s: float = 2.0,
                    nc: int | None = None, max_cv: float = 0.1, attempts: int = 3,
                    make: Callable[[], Callable[[], object]] | None = None) -> dict:
    """Measure one design end to end on ``target`` (default :func:`default_target`).

    Args:
        model_dict: rendered Ultralytics model dict.
        imgsz: square input size, a multiple of 32.
        target: a name from ``TARGETS``.
        threads: CPU threads (torch intra-op / onnxruntime intra-op); default :func:`default_threads`.
        warmup: untimed calls first.
        repeats: timed calls at most; fewer once ``max_time_s`` is spent (at least 5).
        batch: images per call.
        max_cv: a measurement whose spread (std / mean) is higher is repeated, up to ``attempts`` times in all,
            and the least disturbed one (lowest median) is kept.
        make: returns a ready runner of this design on ``target`` (:func:`make_runner`'s), e.g. one kept warm for
            later interleaved comparisons; default: built here.

    Returns:
        ``median_ms`` and the other :func:`summarize` statistics, plus target, imgsz, batch, threads, host (the
        fingerprint id), setup_s (build + export time), attempts, and ``load`` (the host's load average).
    """
    tgt = get_target(target)
    threads = int(threads or default_threads())
    t0 = time.perf_counter()
    run = make() if make is not None else make_runner(model_dict, imgsz, tgt.name, threads, batch, nc)
    setup_s = time.perf_counter() - t0
    tries = []
    with fixed_threads(threads), cores.timing():
        for attempt in range(max(1, attempts)):
            first = warmup if "compiled" not in tgt.name else max(warmup, 5)
            times, dropped = time_runs(run, first if attempt == 0 else 2, repeats, max_time_s)
            tries.append({**summarize(times), "preempted": dropped})
            if tries[-1]["cv"] <= max_cv:
                break
    del run
    if tgt.device == "cuda":
        torch.cuda.empty_cache()
    best = min(tries, key=lambda r: r["median_ms"])
    return {**best, "target": tgt.name, "imgsz": imgsz, "batch": batch, "threads": threads,
            "host": host_fingerprint()["id"], "setup_s": round(setup_s, 3), "attempts": len(tries),
            "load": load_seen()}


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole host since boot (Linux ``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(v) - v[3] - (v[4] if len(v) > 4 else 0), sum(v)


class HostLoad:
    """While it is entered: the share of the host's CPU time that *other* processes used (``others``, 0-1), from
    ``/proc/stat`` less this process's own CPU time; ``None`` where the OS does not say."""

    def __enter__(self):
        self.others, self._cpu, self._own = None, _cpu_jiffies(), time.process_time()
        return self

    def __exit__(self, *exc):
        end = _cpu_jiffies()
        if self._cpu is not None and end is not None and end[1] > self._cpu[1]:
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            busy = (end[0] - self._cpu[0]) / hz - (time.process_time() - self._own)
            self.others = round(max(0.0, busy / ((end[1] - self._cpu[1]) / hz)), 3)
        return False


def round_robin(runners: list[Callable[[], object]], threads: int | None = None, rounds: int = 5,
                per_round: int = 4, warmup: int = 3) -> tuple[list[list[float]], HostLoad]:
    """Time ready runners in one session, round-robin (each round in another order: A B C, then B C A, ...), so
    every runner sees the same machine load. Returns each runner's median per round (ms) and the host's load."""
    n = len(runners)
    medians: list[list[float]] = [[] for _ in runners]
    with fixed_threads(int(threads or default_threads())), cores.timing(), HostLoad() as load:
        for _ in range(warmup):
            for run in runners:
                run()
        for r in range(rounds):
            for k in range(n):
                i = (r + k) % n if r % 2 == 0 else (r - k) % n
                times, _ = time_runs(runners[i], 0, per_round)
                medians[i].append(statistics.median(times))
    return medians, load


def compare_latency(run_a: Callable[[], object], run_b: Callable[[], object], threads: int | None = None,
                    rounds: int = 5, per_round: int = 4, warmup: int = 3) -> dict:
    """Time two ready runners interleaved (A B, then B A, ...) so both see the same machine load.

    Returns ``ratio`` (median over rounds of A / B), the medians ``a_ms`` and ``b_ms`` (over rounds), the spread of
    the per-round ratios (``ratio_p10``, ``ratio_p90``), the ``load`` average seen and ``others`` (the share of the
    host's CPU other processes used meanwhile).
    """
    (a, b), load = round_robin([run_a, run_b], threads, rounds, per_round, warmup)
    ratios = [x / y for x, y in zip(a, b)]
    return {"ratio": statistics.median(ratios), "a_ms": statistics.median(a), "b_ms": statistics.median(b),
            **spread(ratios), "rounds": rounds, "load": load_seen(), "others": load.others}


def spread(ratios: list[float]) -> dict:
    """``ratio_p10`` and ``ratio_p90`` of per-round ratios."""
    q = statistics.quantiles(ratios, n=10, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 9
    return {"ratio_p10": q[0], "ratio_p90": q[-1]}
