"""A schedule from a time budget: ``ultranas search --data my.yaml --time-limit 60`` with no other schedule setting.

The plan times one epoch of each reference with the search's trainer at the proxy size and with the final stage's
trainer at the deploy size, then splits the minutes left: the final stage first (every model it will compare, each
seed), the re-rank, and the rest for the search, which stops starting trials when its share is spent. The proxy
size comes from the data profile (the median object at least ``MIN_OBJECT_PX``). Once the final stage knows its
models it re-plans its epochs from the time actually left (:func:`final_epochs`). Giving any setting of
``SCHEDULE`` turns the plan off: ``--time-limit`` then limits the search alone.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import shutil
import sys
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from .config import search_workers, usable_cores
from .study import StudyRecord

SCHEDULE = ("trials", "epochs", "proxy_imgsz", "trainer", "score", "estimator", "calibration", "halving", "rungs",
            "eta", "seeds", "batch", "fraction", "rerank", "rerank_epochs", "rerank_imgsz", "final_epochs",
            "final_seeds", "final")
FINAL_SHARE = 0.45  # of the minutes left after set-up and probes
RERANK_SHARE = 0.15
EPOCHS = (4, 30)  # a candidate's proxy schedule
FINAL_EPOCHS = (10, 100)  # below 10 the plan first drops a seed, then the larger references
TARGET_DESIGNS = 30
MIN_SEARCH_S = 1.0  # a search limit, however tight the budget (its first trial runs to the end regardless)
MIN_OBJECT_PX = 8  # the proxy size keeps the median object at least this large
PARALLEL = 0.7  # speed-up of one training process per extra core (the re-rank runs in the main process)
WRAP_UP_S = 10.0  # intervals, plots, found_*.pt after the last final training
BETWEEN_S = (10.0, 15.0)  # starting the workers and writing the reports; the final latency session of each band
POINT_GFLOPS = 1.3  # a hand-designed point up to this times a reference's GFLOPs may be in its band
BATCH = 16


def wanted(cfg, given) -> bool:
    """Whether a new search plans its schedule: ``--time-limit`` is given and no setting of ``SCHEDULE`` is (nor
    DARTS, whose one-shot search runs before the plan could set its schedule)."""
    return cfg.time_limit is not None and not set(given) & set(SCHEDULE) and cfg.strategy != "darts"


def proxy_size(profile: dict | None, imgsz: int) -> int:
    """Half the deploy size (at least 64 px), raised in 32 px steps until the median object is ``MIN_OBJECT_PX``."""
    from .data_profile import main_split

    size = min(imgsz, max(64, 32 * round(imgsz / 64)))
    median = main_split(profile).get("size_px", {}).get("median") if profile else None
    while median and size < imgsz and median * size / imgsz < MIN_OBJECT_PX:
        size += 32
    return min(size, imgsz)


@dataclass
class Line:
    """Seconds per epoch as a line in GFLOPs (at the deploy size), fitted to the references' probes."""
    a: float
    b: float

    @classmethod
    def fit(cls, points: list[tuple[float, float]]) -> Line:
        xs = [x for x, _ in points]
        if len(set(xs)) < 2:
            x, y = points[0]
            return cls(0.0, y / x if x else 0.0)
        mx, my = sum(xs) / len(xs), sum(y for _, y in points) / len(points)
        b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
        if b <= 0:  # noise: the mean cost per GFLOP
            return cls(0.0, my / mx)
        a = my - b * mx
        return cls(a, b) if a >= 0 else cls(0.0, my / mx)

    def __call__(self, gflops: float) -> float:
        return self.a + self.b * gflops


@dataclass
class Costs:
    """What the probes measured: epoch lines and fixed seconds per training (search and final trainer)."""
    proxy: Line
    proxy_fixed: float
    final: Line
    final_fixed: float
    gflops: dict[str, float]  # each reference's, at the deploy size
    search_threads: int  # a search worker's threads (the probes ran with them)
    cores: int  # this machine's usable cores (the re-rank trains with all of them)
    probes: dict = field(default_factory=dict)


@dataclass
class Plan:
    budget_s: float
    spent_s: float  # set-up and probes
    proxy_imgsz: int
    epochs: int
    search_s: float
    designs: int
    rerank: int
    rerank_epochs: int
    rerank_imgsz: int
    rerank_s: float
    final_epochs: int
    final_seeds: list[int]
    final_models: int
    final_s: float
    references: list[str]
    notes: list[str] = field(default_factory=list)
    design_s: float = 0.0  # one design's training: the search runs at least that long, whatever its limit

    @property
    def total_s(self) -> float:
        """The whole job as planned (the first trial runs to its end even past a tight search limit)."""
        return self.spent_s + max(self.search_s, self.design_s) + self.rerank_s + self.final_s + WRAP_UP_S \
            + BETWEEN_S[0] + BETWEEN_S[1] * len(self.references)

    def settings(self) -> dict:
        return {"trials": 100_000, "time_limit": max(0.01, round(self.search_s / 60, 2)), "estimator": "short-train",
                "trainer": "fast", "score": "map", "batch": BATCH, "epochs": self.epochs,
                "proxy_imgsz": self.proxy_imgsz, "rerank": self.rerank, "rerank_epochs": self.rerank_epochs,
                "rerank_imgsz": self.rerank_imgsz, "final_epochs": self.final_epochs,
                "final_seeds": list(self.final_seeds), "references": list(self.references)}

    def lines(self) -> list[str]:
        m = lambda s: f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"  # noqa: E731
        out = [f"plan for {self.budget_s / 60:g} min (about {m(self.total_s)}; set-up and timing probes {m(self.spent_s)}):",
               f"  search  ~{m(self.search_s)}: ~{self.designs} designs at {self.proxy_imgsz} px (x each design's input "
               f"scale), {self.epochs} epochs each"]
        if self.rerank:
            out.append(f"  re-rank ~{m(self.rerank_s)}: the top {self.rerank} of each band and the references at "
                       f"{self.rerank_imgsz} px, {self.rerank_epochs} epochs")
        out.append(f"  final   ~{m(self.final_s)}: ~{self.final_models} models x {len(self.final_seeds)} seeds x "
                   f"{self.final_epochs} epochs at the deploy size, under {', '.join(self.references)}'s latency")
        return out + [f"  {n}" for n in self.notes]


def makespan(jobs: list[float], workers: int) -> float:
    """Wall seconds of ``jobs`` taken in order by ``workers`` parallel workers (each job to the first one free)."""
    free = [0.0] * max(1, workers)
    for job in jobs:
        heapq.heappush(free, heapq.heappop(free) + job)
    return max(free)


def final_jobs(gflops, seeds: int, epochs: int, line: Line, fixed: float) -> list[float]:
    """Seconds of each final training: every model (its GFLOPs) once per seed."""
    return [fixed + epochs * line(g) for g in gflops for _ in range(seeds)]


def most_epochs(jobs, workers: int, limit: float, lo: int, hi: int) -> int | None:
    """The most epochs in ``[lo, hi]`` whose trainings (``jobs(epochs)``) end within ``limit`` seconds."""
    return next((e for e in range(hi, lo - 1, -1) if makespan(jobs(e), workers) <= limit), None)


def band_models(baselines: dict[str, float], references: list[str], gflops: dict[str, float]) -> dict[str, float]:
    """The final stage's models, guessed from GFLOPs (its latency session decides): each reference, a found design
    as costly as it, and the hand-designed points between it and the next cheaper reference."""
    out, lower = {}, 0.0
    for r in sorted(references, key=lambda r: gflops[r]):
        out.update({n: g for n, g in baselines.items() if lower < g <= POINT_GFLOPS * gflops[r] and n not in out})
        out[r], out[f"found:{r}"], lower = gflops[r], gflops[r], gflops[r]
    return out


def schedule(budget_s: float, spent_s: float, costs: Costs, baselines: dict[str, float], references: list[str],
             proxy_imgsz: int, imgsz: int, workers: int, final_workers: int, keep_references: bool = False) -> Plan:
    """Split ``budget_s`` (``spent_s`` of it gone): final stage, re-rank, search (pure: costs are measured before)."""
    left = max(0.0, budget_s - spent_s - WRAP_UP_S - BETWEEN_S[0] - BETWEEN_S[1] * len(references))
    notes = []
    options = [(s, refs) for refs in ([references] if keep_references else
                                      [references[:k] for k in range(len(references), 0, -1)])
               for s in ((0, 1, 2), (0, 1))]
    def jobs(models, seeds):
        return lambda e: final_jobs(models.values(), len(seeds), e, costs.final, costs.final_fixed)

    for seeds, refs in options:
        models = band_models(baselines, refs, costs.gflops)
        final_e = most_epochs(jobs(models, seeds), final_workers, FINAL_SHARE * left, *FINAL_EPOCHS)
        if final_e is not None:
            break
    else:
        final_e = most_epochs(jobs(models, seeds), final_workers, FINAL_SHARE * left, 1, FINAL_EPOCHS[0] - 1) or 1
        need = spent_s + WRAP_UP_S + BETWEEN_S[0] + BETWEEN_S[1] * len(refs) \
            + makespan(jobs(models, seeds)(FINAL_EPOCHS[0]), final_workers) / FINAL_SHARE
        notes.append(f"the budget is tight: {final_e} final epochs make a weak verdict (about {need / 60:.0f} min "
                     f"would allow {FINAL_EPOCHS[0]})")
    if refs != references:
        out = [r for r in references if r not in refs]
        notes.append(f"{', '.join(out)} left out: the budget searches and retrains under {', '.join(refs)}'s latency "
                     f"only, so no found design for {', '.join(out)} (given --references are kept)")
    final_s = makespan(jobs(models, seeds)(final_e), final_workers)
    trial = {r: lambda e, g=costs.gflops[r]: costs.proxy_fixed + e * costs.proxy(g) for r in refs}
    rerank_imgsz = min(imgsz, 2 * proxy_imgsz)  # at the proxy size itself a re-rank would repeat the search
    speedup = 1 + PARALLEL * (costs.cores / costs.search_threads - 1)
    pixels = (rerank_imgsz / proxy_imgsz) ** 2
    search_left = left - final_s
    for epochs in range(EPOCHS[1], EPOCHS[0] - 1, -1):  # the longest schedule that still leaves ~30 designs
        per_design = sum(t(epochs) for t in trial.values()) / len(trial)
        k, rerank_s = 0, 0.0
        for top in (3, 2, 1) if rerank_imgsz > proxy_imgsz else ():  # and a re-rank, where it fits
            cost = sum(costs.proxy_fixed + epochs * pixels * costs.proxy(costs.gflops[r]) for r in refs) \
                * (top + 1) / speedup
            spare = int((search_left - cost - per_design / 2) * workers / per_design) >= TARGET_DESIGNS
            if cost <= RERANK_SHARE * left or spare:
                k, rerank_s = top, cost
                break
        # running trials finish after it; never past the budget: the first trial starts at once whatever the limit
        search_s = max(MIN_SEARCH_S, min(per_design, search_left), search_left - rerank_s - per_design / 2)
        designs = max(1, int(search_s * workers / per_design))
        if designs >= TARGET_DESIGNS:
            break
    if designs < TARGET_DESIGNS // 2:
        notes.append(f"about {designs} designs: a longer --time-limit searches more")
    plan = Plan(budget_s, spent_s, proxy_imgsz, epochs, search_s, designs, k, epochs, rerank_imgsz, rerank_s,
                final_e, list(seeds), len(models), final_s, list(refs), notes, per_design)
    if (over := plan.total_s - budget_s) > 0:
        notes.append(f"the budget is too small for this data: the plan runs about {over / 60:.1f} min over it")
    return plan


# -- measuring and applying ------------------------------------------------------------------------------------
def probe(ctx, references: list[str], proxy_imgsz: int) -> Costs:
    """One epoch of each reference: the search's fast trainer at ``proxy_imgsz`` with a search worker's threads,
    the final stage's Ultralytics trainer at the deploy size with a final worker's threads."""
    import os

    from . import ultra
    from .config import final_workers
    from .estimation import compressed_schedule, make_estimator
    from .final_train import _validate
    from .fsutil import atomic_write_text
    from .objectives._timing import fixed_threads
    from .progress import Ticker

    cfg, folder = ctx.cfg, ctx.run_dir / "plan"
    search_threads = max(1, usable_cores() // search_workers(cfg))
    final_threads = max(1, (os.cpu_count() or 1) // final_workers(cfg))
    est = make_estimator("short-train", ctx.data, epochs=1, imgsz=proxy_imgsz, batch=BATCH, device=cfg.device,
                         fraction=cfg.fraction, single_cls=cfg.single_cls, trainer="fast", score="map")
    proxy, final, probes, gflops = [], [], {}, {}
    bar = tqdm(total=2 * len(references), desc="ultranas plan", unit="probe", dynamic_ncols=True,
               disable=not ctx.progress)
    doing, started = [""], time.time()
    try:
        with Ticker(bar, lambda: f"{doing[0]}, {time.time() - started:.0f} s"):
            for r in references:
                cand = dataclasses.replace(ctx.reference(r), workdir=folder / r, train_imgsz=proxy_imgsz)
                gflops[r] = cand.info["gflops"]
                doing[0] = f"{r} at {proxy_imgsz} px (search)"
                with fixed_threads(search_threads):
                    res = est.estimate(cand)
                bar.update()
                yaml = folder / f"{r}.yaml"
                atomic_write_text(yaml, ctx.space.to_yaml(cand.genotype, ctx.nc))
                args = dict(compressed_schedule(1, BATCH), imgsz=cand.imgsz, batch=BATCH, device=cfg.device, seed=0,
                            deterministic=False, fraction=cfg.fraction)
                doing[0], t0 = f"{r} at {cand.imgsz} px (final)", time.perf_counter()
                with fixed_threads(final_threads):
                    metrics, best = ultra.train(yaml, ctx.full_data, folder, f"{r}-final", **args)
                    _validate(best, ctx.judge_data, cand.imgsz, BATCH, cfg.device)
                wall = time.perf_counter() - t0  # the training as the final stage runs it: build, set-up, validations
                shutil.rmtree(best.parent, ignore_errors=True)  # the timing is what counts, not the weights
                bar.update()
                probes[r] = {"proxy_epoch_s": res["train_s"], "proxy_fixed_s": res["val_s"] + res["data_s"],
                             "final_epoch_s": metrics["train_s"], "final_fixed_s": wall - metrics["train_s"]}
                bar.write(f"ultranas:   {r}: {res['train_s']:.1f} s an epoch at {proxy_imgsz} px (search), "
                          f"{metrics['train_s']:.1f} s at {cand.imgsz} px (final, +{probes[r]['final_fixed_s']:.0f} s "
                          "a training)")
                sys.stdout.flush()
                proxy.append((gflops[r], res["train_s"]))
                final.append((gflops[r], metrics["train_s"]))
    finally:
        bar.close()
    mean = lambda key: sum(p[key] for p in probes.values()) / len(probes)  # noqa: E731
    return Costs(Line.fit(proxy), mean("proxy_fixed_s"), Line.fit(final), mean("final_fixed_s"), gflops,
                 search_threads, usable_cores(), probes)


def make_plan(ctx, given, started: float):
    """Measure, choose, print and apply the plan to ``ctx.cfg`` (and the run's records); returns the deadline (the
    search context is then built anew with the planned settings). ``ctx`` is built at the planned proxy size."""
    from .config import final_workers
    from .fsutil import atomic_write_yaml

    cfg, proxy_imgsz = ctx.cfg, ctx.cfg.proxy_imgsz  # proxy_size(), set before this context was built
    cfg.trials, cfg.batch = 100_000, BATCH  # the time decides how many; workers are counted for that
    print(f"ultranas: planning {cfg.time_limit:g} min: timing one epoch of {', '.join(cfg.references)} at "
          f"{proxy_imgsz} px (search) and {cfg.imgsz} px (final)", flush=True)
    costs = probe(ctx, cfg.references, proxy_imgsz)
    baselines = {n: ctx.candidate(g, ctx.run_dir).info["gflops"] for n, g in ctx.baselines().items()}
    plan = schedule(60 * cfg.time_limit, time.time() - started, costs, baselines, cfg.references, proxy_imgsz,
                    cfg.imgsz, search_workers(cfg), final_workers(cfg), keep_references="references" in given)
    for key, value in plan.settings().items():
        setattr(cfg, key, value)
    cfg.validate()
    record = {**dataclasses.asdict(plan), "deadline": started + plan.budget_s, "costs": costs.probes,
              "final_line": [costs.final.a, costs.final.b], "final_fixed_s": costs.final_fixed}
    keep_record(ctx, record)
    StudyRecord(ctx.study).config = cfg.to_dict()  # what workers and a resume check against
    atomic_write_yaml(ctx.run_dir / "args.yaml", cfg.to_dict())
    print("\n".join(f"ultranas: {line}" for line in plan.lines()), flush=True)
    return record["deadline"]


def keep_record(ctx, record: dict) -> None:
    """The plan (and, at the end, what each phase took) in the study and in ``plan/plan.json``."""
    from .fsutil import atomic_write_text

    StudyRecord(ctx.study).plan = record
    atomic_write_text(ctx.run_dir / "plan" / "plan.json", json.dumps(record, indent=1) + "\n")


def final_epochs(ctx, gflops: list[float]) -> None:
    """Re-plan the final epochs of a planned run from the time left, for the models it trains (``gflops`` of each,
    once per seed): the most epochs whose trainings end before the deadline (at least 1)."""
    deadline, plan = ctx.plan_deadline, StudyRecord(ctx.study).plan
    if deadline is None or not plan:
        return
    from .config import final_workers

    cfg, line = ctx.cfg, Line(*plan["final_line"])
    left = deadline - time.time() - WRAP_UP_S

    def jobs(e: int) -> list[float]:
        return final_jobs(gflops, len(cfg.final_seeds), e, line, plan["final_fixed_s"])

    fit = most_epochs(jobs, final_workers(cfg), left, 1, FINAL_EPOCHS[1])
    epochs = fit or 1
    if not fit:
        late = makespan(jobs(1), final_workers(cfg)) - left
        print(f"ultranas: final stage: the budget is spent; 1 epoch each, ending about {late / 60:.1f} min late",
              flush=True)
    elif epochs != cfg.final_epochs:
        print(f"ultranas: final stage: {epochs} epochs instead of the planned {cfg.final_epochs} fill the "
              f"{left / 60:.1f} min left of the budget", flush=True)
    if epochs != cfg.final_epochs:
        from .fsutil import atomic_write_yaml

        cfg.final_epochs = epochs
        atomic_write_yaml(ctx.run_dir / "args.yaml", cfg.to_dict())


class Phases:
    """Wall seconds of each phase of a run (``mark`` ends the current one); a planned run prints them at the end
    beside its budget and keeps them in ``plan/plan.json``."""

    def __init__(self, started: float):
        self.started, self.last, self.spent = started, started, {}

    def mark(self, phase: str) -> None:
        now = time.time()
        self.spent[phase] = self.spent.get(phase, 0.0) + now - self.last
        self.last = now

    def report(self, ctx) -> None:
        plan = StudyRecord(ctx.study).plan
        if ctx.plan_deadline is None or not plan:
            return
        total = time.time() - self.started
        outcome = {"total_s": round(total, 1), **{f"{k}_s": round(v, 1) for k, v in self.spent.items()}}
        keep_record(ctx, {**plan, "outcome": outcome})
        parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in self.spent.items())
        print(f"ultranas: took {total / 60:.1f} min of the planned {plan['budget_s'] / 60:g} ({parts} min)", flush=True)
