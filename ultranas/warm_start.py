"""Where a search starts: the hand-designed baselines, queued once before any strategy proposal, in the order the
data profile suggests; on data where small objects dominate, also each stride-4 (P2-P5) point narrowed to the
smallest reference's GFLOPs (Ultralytics' ``-p2`` models cost more than the ``n`` models they extend, so without
this the search starts with no stride-4 design inside that reference's latency band)."""

from __future__ import annotations

from collections.abc import Callable

from .context import SearchContext
from .data_profile import kept_points, points_first, scale_suits, small_objects
from .space import SearchSpace
from .study import StudyRecord, enqueue

DEEP = ("P4.", "P5.", "N4.", "N4out.", "N5out.")  # the stride-16/32 stages: what small objects need least
MAX_NARROWING = 12  # one-decision steps at most when narrowing a point
MARGIN = 0.95  # narrowed to this share of the reference's GFLOPs: inside its band despite timing noise


def warm_start(ctx: SearchContext) -> None:
    """Queue the hand-designed baselines (:meth:`SearchContext.baselines`) once: the references first (they anchor
    the bands and the re-rank), the stride-4 points fitted into the smallest band next (small objects only), then
    the others in the order the data suggests (of the hand-scaled ones, those at the input sizes it favours)."""
    record = StudyRecord(ctx.study)
    if not ctx.cfg.warm_start or record.warm_started:
        return
    profile = ctx.profile
    order = points_first(ctx.baselines(), profile, kept_points(ctx.cfg), say=True)
    order = [(n, g) for n, g in order if n in ctx.space.points or n in kept_points(ctx.cfg)
             or scale_suits(profile, g.get("input_scale", 1.0))]  # the final stage compares with all of them
    others = [(n, g) for n, g in order if n not in ctx.cfg.references]
    for name, point in [(n, g) for n, g in order if n in ctx.cfg.references]:
        enqueue(ctx.study, point, point=name)
    for name, g in fitted_stride4(ctx, others):
        enqueue(ctx.study, g, origin=f"{name} narrowed")
    for name, point in others:
        enqueue(ctx.study, point, point=name)
    record.warm_started = True


def fitted_stride4(ctx: SearchContext, points: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Where small objects dominate and there are bands: each stride-4 point at the deploy size with more GFLOPs than
    the smallest band's reference, narrowed to at most ``MARGIN`` times its GFLOPs (:func:`narrowed_to`), with its
    name; the trial's screen then times it like any design."""
    if not (ctx.bands and small_objects(ctx.profile)):
        return []
    band, out = ctx.bands[0].reference, []
    limit = MARGIN * ctx.references[band].info["gflops"]

    def gflops(design: dict) -> float:  # built once per design: the context keeps its candidates
        return ctx.candidate(design, ctx.run_dir / "trials").info["gflops"]

    for name, g in points:
        if g.get("levels") != "P2-P5" or g.get("input_scale", 1.0) != 1.0:
            continue
        fitted, steps = narrowed_to(ctx.space, g, limit, gflops)
        if fitted is None:
            print(f"ultranas: {name} could not be narrowed to {band}'s GFLOPs in its stride-16/32 stages",
                  flush=True)
        elif steps:
            print(f"ultranas: {name} narrowed to {band}'s GFLOPs ({', '.join(steps)}): tried first", flush=True)
            out.append((name, fitted))
    return out


def narrowed_to(space: SearchSpace, g: dict, gflops: float, cost: Callable[[dict], float]
                ) -> tuple[dict | None, list[str]]:
    """Narrow ``g`` one size decision at a time, in the stride-16/32 stages, each time the step that saves the most
    ``cost`` (a design's GFLOPs at its input size), until it costs at most ``gflops``; returns the design (``None``
    if even those stages at their narrowest, or ``MAX_NARROWING`` steps, are not enough) and the steps taken
    (``P5.width 192``). Measured at 256 px on a 2-core CPU (3 classes): yolo26n-p2 narrowed so to 0.95x yolo11n's
    GFLOPs ran at 0.91-0.95x its latency and kept its accuracy on small objects
    (``benchmarks/results/reseed_narrowed_p2_cpu.json``)."""
    deep = space.size_decisions(DEEP)
    floor = {**g, **{d: min(space.decisions[d]) for d in deep}}
    if space.check(floor)[0] and cost(floor) > gflops:
        return None, []  # the stride-4 head and the early stages alone cost more (many classes): no narrowing fits
    steps: list[str] = []
    while cost(g) > gflops:
        children = space.narrowed(g, deep)
        if not children or len(steps) == MAX_NARROWING:
            return None, steps
        d, g = min(children, key=lambda dc: cost(dc[1]))  # the step that saves the most
        steps.append(f"{d} {g[d]}")
    return g, steps
