"""Latency objective: a design's measured inference time on a deployment target, cached in the study.

Targets (``TARGETS``, ``_targets.py``): ``torch-cpu`` (eager, fused), ``onnxruntime-cpu`` (static-shape ONNX, CPU
provider), ``torch-cuda-fp16``, ``torch-cuda-fp16-compiled`` and ``tensorrt``. Timing (``_timing.py``) fixes and
records the thread count, warms up, and reports the median of timed runs. Results are cached per (design, target,
imgsz, batch, threads, host) in memory and in the optuna study's user attributes, so they survive a resume.

Latency you can compare (:class:`LatencyMeter`): a reference's latency is never taken from an old cache entry
(another process, another load): each process times its references itself, and a design whose latency is close to
a reference's (within ``margin``: by default 25 %, where a band's edge can be in question) is timed again
*interleaved* with it (A B, B A, ...), so both see the same machine load. Measured on a 2-core machine while a
search trained on the other core, separate timings of one design varied by 2-3 % (CV) between runs, interleaved
ratios by 1-2 % (``benchmarks/latency_stability.py``); every timing also holds the host's cores
(:mod:`ultranas.cores`), so no ultranas training on the host runs meanwhile. A judgement is a ratio (design / reference) measured on one host, which a
distributed study can compare across hosts. The per-layer lookup-table predictor is in ``_lut.py``
(:class:`LatencyLUT`).
"""

from __future__ import annotations

import copy
import statistics

from ..errors import UserError
from ._base import Candidate, Objective
from ._lut import LatencyLUT
from ._targets import (
    TARGETS,
    LatencyTarget,
    default_target,
    default_threads,
    get_target,
    host_fingerprint,
    runtime_tag,
)
from ._timing import (
    compare_latency,
    example_input,
    fixed_threads,
    load_seen,
    make_runner,
    measure_latency,
    prepare_model,
    round_robin,
    spread,
    summarize,
    time_runs,
)


# -- cache ------------------------------------------------------------------------------------------------------
class LatencyCache:
    """Measurements by key, in memory and, given an optuna ``study``, in its ``latency`` cache (survives resume).

    A miss re-reads the study's attributes once, so measurements made by other workers on the same storage are
    found too.
    """

    def __init__(self, study=None):
        from ..study import StudyRecord

        self._stored = StudyRecord(study).cache("latency") if study is not None else None
        self._mem: dict[str, dict] = {}
        self.hits = self.misses = 0
        self._reload()

    @staticmethod
    def key(design_hash: str, target: str, imgsz: int, batch: int = 1, threads: int | None = None,
            host: str | None = None) -> str:
        """``<design>:<target>[@runtime versions]:<imgsz>:b<batch>:t<threads>:<host id>``."""
        threads = int(threads or default_threads())
        host = host or host_fingerprint()["id"]
        return f"{design_hash}:{target}{runtime_tag(target)}:{imgsz}:b{batch}:t{threads}:{host}"

    def _reload(self) -> None:
        if self._stored is not None:
            self._mem.update({k: v for k, v in self._stored.items().items() if isinstance(v, dict)})

    def get(self, key: str) -> dict | None:
        if key not in self._mem:
            self._reload()
        if key in self._mem:
            self.hits += 1
            return copy.deepcopy(self._mem[key])
        self.misses += 1
        return None

    def put(self, key: str, value: dict) -> None:
        self._mem[key] = copy.deepcopy(value)
        if self._stored is not None:
            self._stored.put(key, value)

    def __len__(self) -> int:
        return len(self._mem)


def cached_latency(model_dict: dict, design_hash: str, imgsz: int, target: str | None = None,
                   cache: LatencyCache | None = None, threads: int | None = None, batch: int = 1, **kw) -> dict:
    """:func:`measure_latency` through ``cache`` (measured once per key)."""
    name = get_target(target).name
    threads = int(threads or default_threads())
    key = LatencyCache.key(design_hash, name, imgsz, batch, threads)
    found = cache.get(key) if cache is not None else None
    if found is not None:
        return found
    result = measure_latency(model_dict, imgsz, name, threads=threads, batch=batch, **kw)
    if cache is not None:
        cache.put(key, result)
    return result


# -- judging against references ------------------------------------------------------------------------
class LatencyMeter:
    """Measure designs (:class:`~ultranas.objectives.Candidate`) on ``target`` and compare them with references.

    Args:
        target: latency target name (see ``TARGETS``).
        threads: CPU threads for every timing (default :func:`default_threads`).
        cache: where absolute measurements are kept (a study-backed :class:`LatencyCache` survives resume).
        predictor: a calibrated :class:`LatencyLUT`: predictions replace measurements.
        margin: designs whose latency differs from a reference's by at most this share are timed interleaved
            with it (0.25: from 0.75x to 1.25x); farther ones are judged by the two measurements.
        measure_kw: passed to :func:`measure_latency` (warmup, repeats, max_time_s, ...).
    """

    def __init__(self, target: str | None = None, threads: int | None = None, cache: LatencyCache | None = None,
                 predictor=None, margin: float = 0.25, **measure_kw):
        self.target = get_target(target).name  # an unusable target fails here, before any search starts
        self.threads = int(threads or default_threads())
        self.cache = cache if cache is not None else LatencyCache()
        self.predictor, self.margin, self.measure_kw = predictor, margin, {"max_time_s": 1.0, **measure_kw}
        if predictor is not None and predictor.target != self.target:
            raise UserError(f"latency predictor is for target '{predictor.target}', the meter for '{self.target}'")
        self._references: dict[str, dict] = {}
        self._runners: dict[str, object] = {}

    def measure(self, cand) -> dict:
        """The design's latency record (``median_ms``, spread, load, host ...), measured once and cached."""
        if self.predictor is not None:
            return {"median_ms": self.predictor.predict(cand.model_dict), "predicted": True, "target": self.target,
                    "imgsz": cand.imgsz, "threads": self.predictor.threads, "host": host_fingerprint()["id"]}
        return cached_latency(cand.model_dict, cand.design_hash, cand.imgsz, self.target, self.cache, self.threads,
                              make=lambda: self._runner(cand), **self.measure_kw)  # one export per design

    def reference(self, cand) -> dict:
        """A reference's record, timed by this process (never taken from another process's cache entry)."""
        key = f"{cand.design_hash}:{cand.imgsz}"
        if key not in self._references:
            if self.predictor is not None:
                self._references[key] = self.measure(cand)
            else:
                self._references[key] = measure_latency(cand.model_dict, cand.imgsz, self.target, self.threads,
                                                        make=lambda: self._runner(cand), **self.measure_kw)
        return self._references[key]

    def records(self) -> dict[str, dict]:
        """The references' records this process timed (for :meth:`adopt` by a worker process on the same host)."""
        return dict(self._references)

    def adopt(self, records: dict[str, dict]) -> None:
        """Use references' records timed by another process on this host, with this target and threads."""
        self._references.update(records)

    def _runner(self, cand):
        key = f"{cand.design_hash}:{cand.imgsz}"
        if key not in self._runners:
            self._runners[key] = make_runner(cand.model_dict, cand.imgsz, self.target, self.threads)
        return self._runners[key]

    def versus(self, cand, ref, interleave: bool | None = None) -> dict:
        """``ratio`` = the design's latency / the reference's, and ``how`` it was decided.

        Apart by more than ``margin``: from the two measurements (``separate``). Closer (or ``interleave=True``):
        timed interleaved with the reference now (``interleaved``). Same design: 1.0.
        """
        if cand.design_hash == ref.design_hash and cand.imgsz == ref.imgsz:
            return {"ratio": 1.0, "how": "same design"}
        a, b = self.measure(cand)["median_ms"], self.reference(ref)["median_ms"]
        ratio = a / b
        close = abs(ratio - 1.0) <= self.margin
        if self.predictor is not None or not (interleave or (interleave is None and close)):
            return {"ratio": ratio, "how": "predicted" if self.predictor is not None else "separate",
                    "a_ms": a, "b_ms": b, "load": load_seen()}
        rec = compare_latency(self._runner(cand), self._runner(ref), self.threads)
        rec["how"] = "interleaved"
        return rec

    def session(self, cands: list, ref, rounds: int = 5, per_round: int = 4) -> tuple[list[dict], dict]:
        """Time ``cands`` and the reference ``ref`` together in one round-robin session (:func:`round_robin`), so
        every number comes from the same machine load: per design ``ms`` (median of its per-round medians),
        ``ratio`` = ms / the reference's ms and the spread of its per-round ratios. Returns (records, session),
        the session with the reference's ms, the ``load`` average and ``others`` (the share of the host's CPU that
        other processes used meanwhile). With a latency predictor: its predictions, ``how`` = ``predicted``."""
        if self.predictor is not None:
            ref_ms = self.measure(ref)["median_ms"]
            recs = [{"ms": (ms := self.measure(c)["median_ms"]), "ratio": ms / ref_ms, "how": "predicted"}
                    for c in cands]
            return recs, {"ref_ms": ref_ms, "how": "predicted", "load": None, "others": None}
        runners = [self._runner(ref), *(self._runner(c) for c in cands)]
        medians, load = round_robin(runners, self.threads, rounds, per_round)
        ref_ms = statistics.median(medians[0])
        recs = []
        for m in medians[1:]:
            recs.append({"ms": statistics.median(m), "ratio": statistics.median(m) / ref_ms,
                         **spread([a / b for a, b in zip(m, medians[0])]), "how": "session"})
        for c in cands:
            self.release(c)
        return recs, {"ref_ms": ref_ms, "how": "session", "rounds": rounds, "load": load_seen(),
                      "others": load.others}

    def release(self, cand) -> None:
        """Drop the design's warm runner (kept from its measurement through its comparisons); references stay."""
        key = f"{cand.design_hash}:{cand.imgsz}"  # the key of both tables
        if key not in self._references:
            self._runners.pop(key, None)


# -- objective ------------------------------------------------------------------------------------------------
class LatencyObjective(Objective):
    """Median inference latency in ms on the meter's target (minimize; cheap: known before training).

    Reads :class:`LatencyMeter` (measured once per design and cached, or predicted by a calibrated LUT); it never
    changes the candidate.
    """

    name = "latency"
    label = "latency ms (median)"
    direction = "minimize"
    cheap = True

    def __init__(self, target: str | None = None, cache: LatencyCache | None = None, predictor=None,
                 threads: int | None = None, meter: LatencyMeter | None = None, **measure_kw):
        self.meter = meter or LatencyMeter(target, threads=threads, cache=cache, predictor=predictor, **measure_kw)
        self.target = self.meter.target

    def value(self, candidate: Candidate, results: dict | None = None) -> float:
        return float(self.meter.measure(candidate)["median_ms"])


def baseline_latencies(space, target: str | None = None, imgsz: int = 640, nc: int = 80,
                       cache: LatencyCache | None = None, threads: int | None = None, **kw) -> dict[str, dict]:
    """Measure every named point of ``space`` (yolov8n, yolo11n, yolo26n, the s scales ...) the same way as designs."""
    out = {}
    for name, g in space.points.items():
        out[name] = cached_latency(space.render(g, nc), space.design_hash(g, nc), imgsz, target, cache, threads,
                                   **kw)
    return out


__all__ = ["TARGETS", "LatencyCache", "LatencyLUT", "LatencyMeter", "LatencyObjective", "LatencyTarget",
           "baseline_latencies", "cached_latency", "compare_latency", "default_target", "default_threads",
           "example_input", "fixed_threads", "get_target", "host_fingerprint", "load_seen", "make_runner",
           "measure_latency", "prepare_model", "summarize", "time_runs"]
