"""What one search worker works with, built once per process: space, study, strategy, estimator, objectives, the
references' timings and the latency bands (:class:`SearchContext`), and the cheap screen every design passes first
(:meth:`SearchContext.judge`)."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path

import optuna

from . import ultra
from .bands import GFLOPS_PRESCREEN, Band, band_of, make_bands, order_ms, reachable_bands
from .config import SearchConfig
from .data import class_names, safe_data_yaml
from .data_profile import kept_points
from .errors import UserError
from .estimation import Estimator, SuccessiveHalving, make_estimator
from .inherit import Inheritance
from .input_size import one_size_reason, search_space, train_size
from .objectives import Candidate, Objective, make_objectives
from .objectives.latency import LatencyCache, LatencyMeter, LatencyObjective
from .rundir import open_study
from .space import SearchSpace
from .splits import SplitPlan, plan_splits
from .strategies import Strategy, make_strategy
from .study import StudyRecord

OUTSIDE_BANDS = "latency outside every band"  # the screen's reason for a design in no band (a band miss)


@dataclasses.dataclass(eq=False)
class SearchContext:
    """What one search worker works with: space, study, strategy, estimator, objectives, the references and the
    latency bands. :func:`open_context` builds it (reads the data, opens the study, times the references);
    constructing one does nothing else."""

    cfg: SearchConfig
    run_dir: Path
    study: optuna.Study
    full_data: Path  # the checked copy of the user's data YAML (absolute folders, no 'download:')
    nc: int
    splits: SplitPlan  # the search never reads the verdict's split
    space: SearchSpace
    meter: LatencyMeter
    objectives: list[Objective]
    strategy: Strategy
    estimator: Estimator
    anchor: str | None = None  # the design a weight-sharing estimator or DARTS centres on
    inherit: Inheritance | None = None  # designs start from the user's pretrained weights
    halving: SuccessiveHalving | None = None
    limits: list[str] = dataclasses.field(default_factory=list)  # references no design may be slower than
    references: dict[str, Candidate] = dataclasses.field(default_factory=dict)  # the limits' and bands'
    bands: list[Band] = dataclasses.field(default_factory=list)
    prescreen_gflops: float = 0.0  # designs above it are screened out untimed (0: none)
    profile: dict | None = None  # the data profile (:func:`ultranas.data_profile.announce_profile`), once printed
    progress: bool = True  # progress bars
    plan_deadline: float | None = None  # when a --budget plan must be done (time.time())
    _candidates: dict[str, Candidate] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def data(self) -> Path:
        return Path(self.splits.search_data)

    @property
    def judge_data(self) -> Path:
        return Path(self.splits.judge_data)

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @functools.cached_property
    def point_hashes(self) -> dict[str, str]:
        """Every hand-designed design by hash: its name."""
        return {self.space.design_hash(g, self.nc): name for name, g in self.space.baselines(self.cfg.imgsz).items()}

    def baselines(self) -> dict[str, dict]:
        """The hand-designed designs a search starts from and its final stage compares with: the space's points and
        the references (and ``--latency-le`` point) at the space's hand-scaled input sizes."""
        keep = kept_points(self.cfg)
        return {**self.space.points, **self.space.hand_scaled_points(keep, self.cfg.imgsz),
                **{r: self.space.point(r) for r in keep if r not in self.space.points}}  # a reference named yolo11n@0.75x

    def _band_references(self) -> list[str]:
        """The references whose latency bands the search fills (``focus=bands``): ``--references`` (the final
        stage's goals, also under ``--no-final``), else the ``--latency-le`` point."""
        if self.cfg.focus != "bands":
            return []
        return [r for r in self.cfg.references if r in self.baselines()] or list(self.limits)

    def reference(self, name: str) -> Candidate:
        return self.candidate(self.space.point(name), self.run_dir / "final" / name)

    def trial_candidate(self, g: dict, number: int) -> Candidate:
        """The design as trial ``number`` trains it: in that trial's folder (a cached candidate may be a reference's)."""
        return dataclasses.replace(self.candidate(g, self.run_dir), workdir=self.run_dir / "trials" / str(number))

    def candidate(self, g: dict, workdir: Path) -> Candidate:
        """The design as estimators see it: deploy size (``imgsz``) and training size while searching."""
        h = self.space.design_hash(g, self.nc)
        if h in self._candidates:
            return self._candidates[h]
        imgsz = self.space.imgsz(g, self.cfg.imgsz)
        train = train_size(self.cfg.proxy_imgsz, imgsz, self.cfg.imgsz)  # the proxy size, scaled as the design
        t0 = time.perf_counter()
        model_dict = self.space.render(g, self.nc)
        cand = Candidate(g, model_dict, h, imgsz, workdir, train_imgsz=train)
        model = ultra.build_model(model_dict)
        cand.info.update(params=ultra.count_params(model), gflops=round(ultra.gflops(model, imgsz), 4),
                         imgsz=imgsz, proxy_imgsz=train, build_s=round(time.perf_counter() - t0, 2))
        self._candidates[h] = cand
        return cand

    def judge(self, cand: Candidate) -> str | None:
        """Fill the cheap facts (latency, ratios to every reference) and return why the design is screened out,
        or ``None`` if it may be trained."""
        cfg, info = self.cfg, cand.info
        if self.prescreen_gflops and info["gflops"] > self.prescreen_gflops and "latency_ms" not in info:
            return f"GFLOPs {info['gflops']:.2f} > {GFLOPS_PRESCREEN} x every reference's (latency not measured)"
        if "latency_ms" not in info:
            t0 = time.perf_counter()
            try:
                info["latency"] = self.meter.measure(cand)
                info["latency_ms"] = info["latency"]["median_ms"]
                # a hand-designed point is never kept out of a band on one separate timing: timed interleaved
                hand = cand.design_hash in self.point_hashes or None
                info["latency_vs"] = {r: self.meter.versus(cand, ref, interleave=hand)
                                      for r, ref in self.references.items()}
            finally:
                self.meter.release(cand)
            info["latency_s"] = round(time.perf_counter() - t0, 2)
        if cfg.max_params is not None and info["params"] > cfg.max_params:
            return f"params {info['params']:,} > limit {cfg.max_params:,.0f}"
        if cfg.max_gflops is not None and info["gflops"] > cfg.max_gflops:
            return f"GFLOPs {info['gflops']:.2f} > limit {cfg.max_gflops:.2f}"
        if cfg.max_latency is not None and info["latency_ms"] > cfg.max_latency:
            return f"latency {info['latency_ms']:.2f} ms > limit {cfg.max_latency:.2f} ms"
        for r in self.limits:
            if (ratio := info["latency_vs"][r]["ratio"]) > 1.0:
                return f"latency {ratio:.3f}x {r}'s > 1"
        own = next((b for b in self.bands if self.references[b.reference].design_hash == cand.design_hash), None)
        band = (own or band_of(self.bands, info["latency_vs"])) if self.bands else None  # a reference: its own
        if self.bands and band is None:
            ratios = ", ".join(f"{r} {v['ratio']:.2f}x" for r, v in info["latency_vs"].items())
            return f"{OUTSIDE_BANDS} ({ratios})"
        info["band"] = band.reference if band else None
        return None


def open_context(cfg: SearchConfig, run_dir: Path, study: optuna.Study | None = None, data_checked: bool = False,
                 resume: bool = False, reference_records: dict | None = None) -> SearchContext:
    """The context of one worker: the data checked (every label file, unless ``data_checked``), the study opened
    (or ``study``), the splits planned, the references timed (or adopted from ``reference_records``: a local
    worker's supervisor timed them) and the bands made; a strategy that searches once first (darts) does so."""
    full_data = safe_data_yaml(cfg.data, run_dir, cfg.coco128, check_labels=not data_checked)
    study = study or open_study(cfg, run_dir, resume=resume)
    splits = plan_splits(cfg, full_data, run_dir, study)
    space = study_space(search_space(cfg), study, fixed=bool(cfg.input_scales is not None or one_size_reason(cfg)))
    predictor = None
    if cfg.latency_lut:  # a calibrated per-layer table (checked in preflight): predictions replace timings
        from .objectives._lut import LatencyLUT

        predictor = LatencyLUT.load(cfg.latency_lut)
    meter = LatencyMeter(cfg.latency_target, cache=LatencyCache(study), predictor=predictor)
    meter.adopt(reference_records or {})
    int8 = None
    if "int8_drop" in cfg.objectives:
        from .objectives.int8 import Int8DropObjective

        int8 = Int8DropObjective(Path(splits.search_data), single_cls=cfg.single_cls)
    objectives = make_objectives(cfg.objectives, latency=LatencyObjective(meter=meter), int8_drop=int8)
    strategy = make_strategy(cfg.strategy, space, seed=cfg.seed)
    study.sampler = strategy.sampler()
    anchor = next((r for r in [*(cfg.references or []), cfg.latency_le] if r in space.points), None)
    estimator = make_estimator(cfg.estimator, Path(splits.search_data), epochs=cfg.epochs, imgsz=cfg.proxy_imgsz,
                               batch=cfg.batch, device=cfg.device, seeds=tuple(cfg.seeds), fraction=cfg.fraction,
                               single_cls=cfg.single_cls, proxy=cfg.proxy, verbose=cfg.verbose, trainer=cfg.trainer,
                               score=cfg.score, space=space, cache_dir=run_dir, anchor=anchor)
    estimator.keep_weights = int8 is not None
    inherit = Inheritance(cfg.pretrained, space) if cfg.pretrained else None
    estimator.inherit = inherit
    ctx = SearchContext(cfg, run_dir, study, full_data, len(class_names(full_data)), splits, space, meter, objectives,
                        strategy, estimator, anchor=anchor, inherit=inherit,
                        halving=SuccessiveHalving(tuple(cfg.rungs), cfg.eta) if cfg.halving else None)
    _place_bands(ctx)
    if hasattr(strategy, "prepare"):  # a strategy that searches once before proposing (darts)
        strategy.prepare(ctx)
    return ctx


def _place_bands(ctx: SearchContext) -> None:
    """Time the references (the limits' and the bands') and make the latency bands a design must fall in."""
    cfg = ctx.cfg
    ctx.limits = [r for r in [cfg.latency_le] if r]
    ctx.references = {r: ctx.reference(r) for r in dict.fromkeys(ctx.limits + ctx._band_references())}
    ms = {r: ctx.meter.reference(c)["median_ms"] for r, c in ctx.references.items()}
    band_refs = {r: ctx.references[r] for r in ctx._band_references()}
    bands = make_bands(list(band_refs), order_ms(ctx.study, ctx.meter, band_refs), cfg.band_floor) \
        if cfg.focus == "bands" else []
    ceiling = min([ms[r] for r in ctx.limits] + [cfg.max_latency or math.inf])
    ctx.bands = reachable_bands(bands, ms, ceiling)  # a band above a hard latency limit gets no trials
    ctx.prescreen_gflops = GFLOPS_PRESCREEN * max((c.info["gflops"] for c in ctx.references.values()), default=0.0)


def rebuilt(ctx: SearchContext) -> SearchContext:
    """The context anew for settings a plan changed (the input scales chosen again for the proxy size; the
    references' timings kept)."""
    StudyRecord(ctx.study).input_scales = None
    fresh = open_context(ctx.cfg, ctx.run_dir, study=ctx.study, data_checked=True,
                         reference_records=ctx.meter.records())
    fresh.profile, fresh.progress = ctx.profile, ctx.progress
    return fresh


def study_space(space: SearchSpace, study: optuna.Study, fixed: bool = False) -> SearchSpace:
    """``space`` with the input scales ``study`` searches, recorded by its first worker (a study made before input
    sizes were searched: the deploy size only), so every worker and resume asks optuna the same choices. ``fixed``
    (``--input-scales`` given, or settings that compare one size only): settings that lack one of the study's
    scales are refused; otherwise the study's own scales are kept."""
    if "input_scale" not in space.decisions:
        return space
    record = StudyRecord(study)
    mine, stored = list(space.decisions["input_scale"]), record.input_scales
    if stored is None:  # a new study, or one from before the record: the choices its trials were asked with
        dist = next((t.distributions["input_scale"] for t in study.trials if "input_scale" in t.distributions), None)
        stored = list(dist.choices) if dist else [1.0] if study.trials else mine
        record.input_scales = stored
    if fixed and not set(stored) <= set(mine):
        raise UserError(f"this study searches input scales {', '.join(f'{s:g}' for s in stored)}; these settings "
                        f"give {', '.join(f'{s:g}' for s in mine)} (--input-scales, --estimator, --strategy and "
                        "--latency-lut decide them): join or resume it with its own")
    return space.with_input_scales(stored) if stored != mine else space
