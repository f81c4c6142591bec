"""The search loop: optuna study + strategy + estimator + objectives, stored in a run directory.

``search()`` is the Python API behind ``ultranas search``; ``run_worker()`` is one worker of a (shared) study.
Each trial: propose (strategy, or its optuna sampler) -> screen (validity, duplicates, hard limits, latency band;
cheap, before any training) -> estimate -> tell.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import socket
import time
from pathlib import Path

import optuna
import torch

from . import ultra
from .bands import GFLOPS_PRESCREEN, band_of, make_bands, next_band, order_ms, reachable_bands
from .config import SearchConfig, search_workers
from .data import class_names, safe_data_yaml
from .data_profile import announce_profile, kept_points, points_first, scale_suits, score_advice
from .errors import Interrupted, RunFailed, UserError
from .estimation import Pruned, SuccessiveHalving, make_estimator
from .fsutil import RunLock, ask_lock, atomic_write_text, atomic_write_yaml
from .inherit import Inheritance
from .input_size import one_size_reason, scale_note, search_space, train_size
from .objectives import Candidate, make_objectives
from .plan import Phases, make_plan, proxy_size, wanted
from .preflight import preflight, sigterm_as_interrupt
from .progress import Ticker, search_bar, search_status
from .report import write_reports
from .rundir import absolute_paths, check_resumable, check_writable, load_run, new_run_dir, open_study, storage_url
from .runtime import quiet_ultralytics
from .space import SearchSpace
from .splits import plan_splits
from .storage import fail_stale, heartbeat
from .strategies import make_strategy, pareto_fitness
from .trials import (
    COUNTED,
    add_screened,
    counted,
    done_by_hash,
    gives_way,
    recover_interrupted,
    requeue,
    seen_hashes,
    tell_uncounted,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
TS = optuna.trial.TrialState
MAX_SCREENED = 500  # proposals in a row that fail the screen before the search gives up
TRIAL_ERRORS = (RuntimeError, FloatingPointError, ValueError, AssertionError, TypeError, KeyError, IndexError,
                torch.OutOfMemoryError, UserError)  # a design that fails these fails alone; the search goes on


class SearchContext:
    """Everything one worker needs, built once: space, study, strategy, estimator, objectives, latency bands."""

    def __init__(self, cfg: SearchConfig, run_dir: Path, study: optuna.Study | None = None,
                 data_checked: bool = False, resume: bool = False, reference_records: dict | None = None):
        from .objectives.latency import LatencyCache, LatencyMeter, LatencyObjective

        self.cfg, self.run_dir = cfg, run_dir
        # Ultralytics only ever reads the checked copy (absolute folders, no 'download:' to run); preflight already
        # scanned every label file of a new run
        self.full_data = safe_data_yaml(cfg.data, run_dir, cfg.coco128, check_labels=not data_checked)
        self.nc = len(class_names(self.full_data))
        self.study = study or open_study(cfg, run_dir, resume=resume)
        self.splits = plan_splits(cfg, self.full_data, run_dir, self.study)  # the search never reads the verdict's
        self.data, self.judge_data = Path(self.splits.search_data), Path(self.splits.judge_data)
        self.space: SearchSpace = study_space(search_space(cfg), self.study, fixed=bool(
            cfg.input_scales is not None or one_size_reason(cfg)))
        predictor = None
        if cfg.latency_lut:  # a calibrated per-layer table (checked in preflight): predictions replace timings
            from .objectives._lut import LatencyLUT

            predictor = LatencyLUT.load(cfg.latency_lut)
        self.meter = LatencyMeter(cfg.latency_target, cache=LatencyCache(self.study), predictor=predictor)
        self.meter.adopt(reference_records or {})  # a local worker: its supervisor timed the references
        int8 = None
        if "int8_drop" in cfg.objectives:
            from .objectives.int8 import Int8DropObjective

            int8 = Int8DropObjective(self.data, single_cls=cfg.single_cls)
        self.objectives = make_objectives(cfg.objectives, latency=LatencyObjective(meter=self.meter), int8_drop=int8)
        self.directions = [o.direction for o in self.objectives]
        self.strategy = make_strategy(cfg.strategy, self.space, seed=cfg.seed)
        self.study.sampler = self.strategy.sampler()
        # the design a weight-sharing estimator or DARTS centres on: the first reference (or limit) of the space
        self.anchor = next((r for r in [*(cfg.references or []), cfg.latency_le] if r in self.space.points), None)
        self.estimator = make_estimator(cfg.estimator, self.data, epochs=cfg.epochs, imgsz=cfg.proxy_imgsz,
                                        batch=cfg.batch, device=cfg.device, seeds=tuple(cfg.seeds),
                                        fraction=cfg.fraction, single_cls=cfg.single_cls, proxy=cfg.proxy,
                                        verbose=cfg.verbose, trainer=cfg.trainer, score=cfg.score,
                                        space=self.space, cache_dir=self.run_dir, anchor=self.anchor)
        self.estimator.keep_weights = int8 is not None
        self.inherit = Inheritance(cfg.pretrained, self.space) if cfg.pretrained else None
        self.estimator.inherit = self.inherit  # designs start from the user's pretrained weights
        self.halving = SuccessiveHalving(tuple(cfg.rungs), cfg.eta) if cfg.halving else None
        self._candidates: dict[str, Candidate] = {}
        self.point_hashes = {self.space.design_hash(g, self.nc): name  # names every hand-designed design it meets
                             for name, g in self.space.baselines(cfg.imgsz).items()}
        self.limits = [r for r in [cfg.latency_le] if r]  # references every design must not be slower than
        self.references = {r: self.reference(r) for r in dict.fromkeys(self.limits + self._band_references())}
        ms = {r: self.meter.reference(c)["median_ms"] for r, c in self.references.items()}
        band_refs = {r: self.references[r] for r in self._band_references()}
        self.bands = make_bands(list(band_refs), order_ms(self.study, self.meter, band_refs), cfg.band_floor) \
            if cfg.focus == "bands" else []
        ceiling = min([ms[r] for r in self.limits] + [cfg.max_latency or math.inf])
        self.bands = reachable_bands(self.bands, ms, ceiling)  # a band above a hard latency limit gets no trials
        self._prescreen = GFLOPS_PRESCREEN * max((c.info["gflops"] for c in self.references.values()), default=0.0)
        if hasattr(self.strategy, "prepare"):  # a strategy that searches once before proposing (darts)
            self.strategy.prepare(self)

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
        if self._prescreen and info["gflops"] > self._prescreen and "latency_ms" not in info:
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
            return f"latency outside every band ({ratios})"
        info["band"] = band.reference if band else None
        return None


def rebuilt(ctx: SearchContext) -> SearchContext:
    """The context anew for settings a plan changed (the input scales chosen again for the proxy size; the
    references' timings kept)."""
    ctx.study.set_user_attr("input_scales", None)
    fresh = SearchContext(ctx.cfg, ctx.run_dir, study=ctx.study, data_checked=True,
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
    mine, stored = list(space.decisions["input_scale"]), study.user_attrs.get("input_scales")
    if stored is None:  # a new study, or one from before the record: the choices its trials were asked with
        dist = next((t.distributions["input_scale"] for t in study.trials if "input_scale" in t.distributions), None)
        stored = list(dist.choices) if dist else [1.0] if study.trials else mine
        study.set_user_attr("input_scales", stored)
    if fixed and not set(stored) <= set(mine):
        raise UserError(f"this study searches input scales {', '.join(f'{s:g}' for s in stored)}; these settings "
                        f"give {', '.join(f'{s:g}' for s in mine)} (--input-scales, --estimator, --strategy and "
                        "--latency-lut decide them): join or resume it with its own")
    return space.with_input_scales(stored) if stored != mine else space


def warm_start(ctx: SearchContext) -> None:
    """Queue the hand-designed baselines (:meth:`SearchContext.baselines`) once, before any strategy proposal: the
    references first (they anchor the bands and the re-rank), then the others in the order the data suggests (of
    the hand-scaled ones, those at the input sizes the data profile favours)."""
    if not ctx.cfg.warm_start or ctx.study.user_attrs.get("warm_started"):
        return
    profile = getattr(ctx, "profile", None)
    order = points_first(ctx.baselines(), profile, kept_points(ctx.cfg), say=True)
    order = [(n, g) for n, g in order if n in ctx.space.points or n in kept_points(ctx.cfg)
             or scale_suits(profile, g.get("input_scale", 1.0))]  # the final stage compares with all of them
    for name, point in sorted(order, key=lambda item: item[0] not in ctx.cfg.references):
        ctx.study.enqueue_trial(point, user_attrs={"point": name})
    ctx.study.set_user_attr("warm_started", True)


def _history(ctx: SearchContext, band) -> tuple[list, list[float]]:
    """What a strategy may see: completed trials (of ``band``, ranked by score; or all, by Pareto fitness)."""
    done = [t for t in ctx.study.get_trials(deepcopy=True, states=(TS.COMPLETE,))
            if "genotype" in t.user_attrs and not t.user_attrs.get("duplicate_of") and t.values]
    if band is not None:
        done = [t for t in done if t.user_attrs.get("info", {}).get("band") == band.reference]
        return done, [t.user_attrs["metrics"]["score"] for t in done]
    return done, pareto_fitness([t.values for t in done], ctx.directions)


def suggest_genotype(space: SearchSpace, trial: optuna.Trial) -> dict:
    """The trial's design: each decision suggested (fixed when the trial was enqueued, else the sampler's choice)."""
    return {d: trial.suggest_categorical(d, list(c)) for d, c in space.decisions.items()}


def propose_genotype(strategy, space: SearchSpace, history, fitness, seed: int, n_trials: int,
                     attempt: int = 0) -> dict | None:
    """The strategy's proposal with the engine's random stream (seeded by run seed, trial count and attempt)."""
    return strategy.propose(history, fitness, random.Random(f"{seed}-{n_trials}-{attempt}"))


def propose(ctx: SearchContext) -> None:
    """Enqueue the strategy's next design that passes the screen (cheap checks only; nothing is trained here).

    Strategies that leave the choice to their optuna sampler are screened inside the trial instead.
    """
    counts: dict[str, int] = {}
    for t in ctx.study.get_trials(deepcopy=False, states=COUNTED):
        if not t.user_attrs.get("uncounted") and (band := t.user_attrs.get("info", {}).get("band")):
            counts[band] = counts.get(band, 0) + 1
    band = next_band(ctx.bands, counts) if ctx.bands else None
    history, fitness = _history(ctx, band)
    seen, t0 = seen_hashes(ctx.study, ctx.space, ctx.nc), time.perf_counter()
    told = 0  # proposals turned away so far that the study has been told of (a progress bar elsewhere shows them)
    for attempt in range(MAX_SCREENED):
        g = propose_genotype(ctx.strategy, ctx.space, history, fitness, ctx.cfg.seed, len(ctx.study.trials), attempt)
        if g is None:
            return  # the sampler proposes inside the trial
        if not ctx.space.check(g)[0] or (h := ctx.space.design_hash(g, ctx.nc)) in seen:
            continue
        seen.add(h)
        try:
            cand = ctx.candidate(g, ctx.run_dir / "trials")
            accepted = ctx.judge(cand) is None and (band is None or cand.info["band"] == band.reference)
        except TRIAL_ERRORS:
            accepted = True  # cannot be built or timed: the trial records why, as a failed design
        if accepted:
            ctx.study.enqueue_trial(g)
            add_screened(ctx.study, attempt - told, time.perf_counter() - t0)
            return
        add_screened(ctx.study, attempt + 1 - told)  # built and timed, then screened out: about a second each
        told = attempt + 1
    add_screened(ctx.study, MAX_SCREENED - told, time.perf_counter() - t0)
    raise UserError(f"{MAX_SCREENED} proposals in a row were duplicates or outside the limits"
                    + (f" (band {band})" if band else "") + ": the space has too few designs there; widen the space,"
                    " relax the limits or lower --trials")


def evaluate_trial(ctx: SearchContext, trial: optuna.Trial) -> tuple[str, float | None]:
    """Ask, build, screen, estimate and tell one trial. Returns (state, score)."""
    g = suggest_genotype(ctx.space, trial)
    ok, reason = ctx.space.check(g)
    if not ok:
        return tell_uncounted(ctx.study, trial, f"invalid design: {reason}", TS.FAIL, "invalid")
    h = ctx.space.design_hash(g, ctx.nc)
    trial.set_user_attr("genotype", g)
    trial.set_user_attr("hash", h)
    if (twin := done_by_hash(ctx.study).get(h)) is not None:
        for k in ("metrics", "info"):
            if k in twin.user_attrs:
                trial.set_user_attr(k, twin.user_attrs[k])
        trial.set_user_attr("duplicate_of", twin.number)
        trial.set_user_attr("uncounted", True)
        ctx.study.tell(trial, twin.values)
        return "duplicate", None
    if any(t.user_attrs.get("hash") == h and t.number != trial.number
           for t in ctx.study.get_trials(deepcopy=False, states=(TS.RUNNING,))):
        return tell_uncounted(ctx.study, trial, "the same design is being evaluated by another worker", TS.FAIL,
                               "duplicate")
    t0 = time.time()
    try:
        cand = ctx.trial_candidate(g, trial.number)
        prior = trial.user_attrs.get("info", {})
        if "latency_vs" in prior and "latency_ms" not in cand.info:
            cand.info.update(prior)  # a retry keeps the judgement that let it in (measured on the first worker's host)
        screened = ctx.judge(cand)
        trial.set_user_attr("info", cand.info)
        if screened is not None:
            return tell_uncounted(ctx.study, trial, f"screened: {screened}", TS.PRUNED, "screened")
        cand.workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cand.workdir / "model.yaml", ctx.space.to_yaml(g, ctx.nc))
        if ctx.halving and ctx.estimator.trains:
            result = ctx.halving.run(ctx.estimator, cand, ctx.study, trial)
        else:
            result = ctx.estimator.estimate(cand)
        values = [o.value(cand, result) for o in ctx.objectives]
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"non-finite objective values {values}")
        trial.set_user_attr("metrics", {k: v for k, v in result.items() if isinstance(v, (int, float, str))})
        trial.set_user_attr("time_s", round(time.time() - t0, 2))
        ctx.study.tell(trial, values)
        return "complete", result["score"]
    except Pruned as p:
        trial.set_user_attr("metrics", {k: v for k, v in p.result.items() if isinstance(v, (int, float, str))})
        trial.set_user_attr("failure", str(p))
        ctx.study.tell(trial, state=TS.PRUNED)
        return "pruned", None
    except KeyboardInterrupt:
        trial.set_user_attr("failure", "interrupted (Ctrl-C); re-queued")
        trial.set_user_attr("uncounted", True)
        ctx.study.tell(trial, state=TS.FAIL)
        requeue(ctx.study, trial.params, trial.user_attrs, trial.number)
        raise
    except TRIAL_ERRORS as e:
        kind = "out of memory" if isinstance(e, torch.OutOfMemoryError) else type(e).__name__
        trial.set_user_attr("failure", f"{kind}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}")
        trial.set_user_attr("time_s", round(time.time() - t0, 2))
        ctx.study.tell(trial, state=TS.FAIL)
        return "failed", None


def run_worker(ctx: SearchContext, progress: bool = True, poll_s: float = 2.0) -> None:
    """Evaluate trials until the study has ``cfg.trials`` counted trials (shared across workers), then wait for the
    trials other workers are still running (a dead worker's trial is failed after its heartbeat grace and retried)."""
    without_progress = 0
    bar = search_bar(ctx.cfg, counted(ctx.study), "ultranas search", progress)
    start, spent = time.time(), float(ctx.study.user_attrs.get("search_s", 0.0))  # earlier sessions of this run
    ticker = Ticker(bar, lambda: search_status(ctx.study, ctx.cfg, lambda: spent + time.time() - start))
    try:
        with ticker:
            while counted(ctx.study) < ctx.cfg.trials:
                elapsed = spent + time.time() - start
                ctx.study.set_user_attr("search_s", round(elapsed, 1))
                if ctx.cfg.time_limit is not None and elapsed >= 60 * ctx.cfg.time_limit:
                    print(f"ultranas: the search's {ctx.cfg.time_limit:g} min" + (
                        f" (of the {ctx.cfg.budget:g} min budget)" if ctx.cfg.budget else " (--time-limit)")
                        + f" are up after {counted(ctx.study)} trials")
                    break
                if without_progress > MAX_SCREENED:
                    raise UserError("the strategy keeps proposing invalid, screened or already-evaluated designs; "
                                    "the space may be exhausted: lower --trials, relax the limits or widen the space")
                fail_stale(ctx.study)
                waiting = ctx.study.get_trials(deepcopy=False, states=(TS.WAITING,))
                running = ctx.study.get_trials(deepcopy=False, states=(TS.RUNNING,))
                if running and counted(ctx.study) + len(running) >= ctx.cfg.trials:
                    time.sleep(poll_s)  # the rest of the budget is being evaluated by other workers
                    continue
                with ask_lock(ctx.run_dir):  # local siblings: one takes a queued trial at a time, and names itself
                    if not waiting:
                        propose(ctx)
                    trial = ctx.study.ask()
                    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
                if gives_way(ctx.study, trial, ctx.cfg.trials):
                    time.sleep(poll_s)
                    continue
                with heartbeat(ctx.study, trial):
                    state, score = evaluate_trial(ctx, trial)
                without_progress = without_progress + 1 if state in ("invalid", "duplicate", "screened") else 0
                bar.n = min(counted(ctx.study), ctx.cfg.trials)
                ticker.tick()
    finally:
        bar.close()


@quiet_ultralytics
def search(resume: str | Path | None = None, progress: bool = True, **kwargs) -> Path:
    """Run (or resume) a search; returns the run directory. Keyword arguments are ``SearchConfig`` fields; with
    ``resume``, only settings that keep the finished trials meaningful may be given (``trials`` to extend ...)."""
    started, planned = time.time(), False
    if resume:
        cfg, run_dir = load_run(resume, kwargs)
        check_resumable(cfg, run_dir)  # before anything in the run is touched
        check_writable(run_dir)
    else:
        unknown = sorted(set(kwargs) - set(SearchConfig.__dataclass_fields__))
        if unknown:
            raise UserError(f"unknown search setting '{unknown[0]}'")
        if kwargs.get("budget") is not None:
            raise UserError("budget is what a plan records: give time_limit alone to plan the whole job")
        try:
            cfg = SearchConfig(**kwargs).validate()
        except TypeError as e:
            raise UserError(f"bad search setting: {e}") from None
        given = dataclasses.replace(cfg)  # the settings as given, before a calibration replaces the estimator's
        if cfg.calibration:
            from .estimation.calibrate import apply_calibration

            print(f"ultranas: {apply_calibration(cfg, cfg.calibration)}")
            cfg.validate()
        preflight(cfg)  # every check that can fail runs before the run directory exists
        given.refuse_unread()
        planned = wanted(cfg, kwargs)
        if planned:
            cfg.budget = cfg.time_limit  # recorded before planning: a run stopped while planning is not resumed
        absolute_paths(cfg)
        run_dir = new_run_dir(cfg)
    try:
        with RunLock(run_dir), sigterm_as_interrupt():
            atomic_write_yaml(run_dir / "args.yaml", cfg.to_dict())  # on resume: keeps --trials / --device changes
            ctx = SearchContext(cfg, run_dir, data_checked=not resume, resume=bool(resume))
            ctx.progress = progress  # the plan's and the final stage's bars too
            print(f"ultranas: {ctx.splits.describe()}", flush=True)
            ctx.profile = announce_profile(ctx.full_data, cfg.imgsz, run_dir)
            if planned:  # --time-limit alone: the schedule is chosen from measured costs, at the proxy size it needs
                cfg.proxy_imgsz = proxy_size(ctx.profile, cfg.imgsz)
                ctx = rebuilt(ctx)
                deadline = make_plan(ctx, kwargs, started)
                ctx = rebuilt(ctx)
                ctx.plan_deadline, planned = deadline, False  # from here on, a stopped run resumes
            elif cfg.budget is not None and not ctx.study.user_attrs.get("plan"):
                raise UserError(f"{run_dir} was stopped while its plan was being made, before any trial: start a new "
                                "run")
            if note := scale_note(cfg, ctx.space):
                print(f"ultranas: {note}", flush=True)
            if advice := score_advice(ctx.profile, cfg):
                print(f"ultranas: {advice}", flush=True)
            if resume:
                recover_interrupted(ctx.study)
            phases = Phases(started)
            phases.mark("set-up")
            warm_start(ctx)
            try:
                if (workers := search_workers(cfg)) > 1:
                    from .local_workers import run_local_workers

                    run_local_workers(ctx, workers, storage_url(cfg, run_dir), progress=progress)
                else:
                    run_worker(ctx, progress=progress)
            finally:
                try:
                    write_reports(ctx)
                except OSError as e:
                    print(f"ultranas: warning: could not write the reports in {run_dir}: {e.strerror}")
            phases.mark("search")
            if cfg.rerank and any(t.state == TS.COMPLETE for t in ctx.study.get_trials(deepcopy=False)):
                from .rerank import rerank

                rerank(ctx)
                phases.mark("re-rank")
            if not any(t.state == TS.COMPLETE for t in ctx.study.get_trials(deepcopy=False)):
                raise RunFailed(f"no design completed in {run_dir}: every trial failed or was screened out (see "
                                "leaderboard.csv, column failure); nothing to retrain")
            if cfg.final:
                from .final import final_stage

                final_stage(ctx)
                phases.mark("final")
            phases.report(ctx)
    except KeyboardInterrupt:
        raise Interrupted(None if planned else run_dir) from None  # stopped while planning: nothing to resume
    return run_dir


