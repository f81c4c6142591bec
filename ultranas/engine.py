"""The search loop: optuna study + strategy + estimator + objectives, stored in a run directory.

``search()`` is the Python API behind ``ultranas search``; ``run_worker()`` is one worker of a (shared) study.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from pathlib import Path

import optuna
import torch
from tqdm import tqdm

from . import ultra
from .config import SearchConfig
from .data import check_dataset, class_names, resolve_data
from .distributed import fail_stale, heartbeat, make_storage
from .errors import UserError
from .estimation import Pruned, SuccessiveHalving, make_estimator
from .fsutil import RunLock, atomic_write_text, atomic_write_yaml
from .objectives import Candidate, make_objectives
from .report import write_reports
from .space import SearchSpace, load_space
from .strategies import make_strategy

optuna.logging.set_verbosity(optuna.logging.WARNING)
TS = optuna.trial.TrialState
COUNTED = (TS.COMPLETE, TS.PRUNED, TS.FAIL)


class SearchContext:
    """Everything one worker needs, built once: space, study, strategy, estimator, objectives."""

    def __init__(self, cfg: SearchConfig, run_dir: Path, study: optuna.Study | None = None,
                 data_checked: bool = False):
        from .objectives.latency import LatencyCache, LatencyObjective

        self.cfg, self.run_dir = cfg, run_dir
        # preflight already scanned every label file; only resolve the path again then
        self.data = resolve_data(cfg.data, cfg.coco128) if data_checked else check_dataset(cfg.data, cfg.coco128)
        self.nc = len(class_names(self.data))
        self.space: SearchSpace = load_space(cfg.space)
        self.study = study or open_study(cfg, run_dir)
        self.latency = LatencyObjective(target=cfg.latency_target, cache=LatencyCache(self.study))
        self.objectives = make_objectives(cfg.objectives, latency=self.latency)
        self.directions = [o.direction for o in self.objectives]
        self.strategy = make_strategy(cfg.strategy, self.space, self.directions, seed=cfg.seed)
        self.study.sampler = self.strategy.sampler()
        self.estimator = make_estimator(cfg.estimator, self.data, epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch,
                                        device=cfg.device, seeds=tuple(cfg.seeds), fraction=cfg.fraction,
                                        single_cls=cfg.single_cls, proxy=cfg.proxy, verbose=cfg.verbose,
                                        trainer=cfg.trainer, score=cfg.score)
        self.halving = SuccessiveHalving(tuple(cfg.rungs), cfg.eta) if cfg.halving else None
        self._reference_ms: dict[str, float] = {}

    def candidate(self, g: dict, workdir: Path) -> Candidate:
        imgsz = self.space.imgsz(g, self.cfg.imgsz)
        model_dict = self.space.render(g, self.nc)
        cand = Candidate(g, model_dict, self.space.design_hash(g, self.nc), imgsz, workdir)
        model = ultra.build_model(model_dict)
        cand.info.update(params=ultra.count_params(model), gflops=round(ultra.gflops(model, imgsz), 4))
        cand.info["latency_ms"] = self.latency.value(cand)
        return cand

    def reference_latency(self, name: str) -> float:
        """Latency of a named point, measured like every design (once per context)."""
        if name not in self._reference_ms:
            g = self.space.point(name)
            self._reference_ms[name] = self.candidate(g, self.run_dir / "references" / name).info["latency_ms"]
        return self._reference_ms[name]

    def constraint_violation(self, cand: Candidate) -> str | None:
        cfg, info = self.cfg, cand.info
        limit = cfg.max_latency
        if cfg.latency_le:
            limit = self.reference_latency(cfg.latency_le)
        if limit is not None and info["latency_ms"] > limit:
            return f"latency {info['latency_ms']:.2f} ms > limit {limit:.2f} ms"
        if cfg.max_params is not None and info["params"] > cfg.max_params:
            return f"params {info['params']:,} > limit {cfg.max_params:,.0f}"
        if cfg.max_gflops is not None and info["gflops"] > cfg.max_gflops:
            return f"GFLOPs {info['gflops']:.2f} > limit {cfg.max_gflops:.2f}"
        return None


def storage_url(cfg: SearchConfig, run_dir: Path) -> str:
    return cfg.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"


def open_study(cfg: SearchConfig, run_dir: Path) -> optuna.Study:
    directions = ["maximize" if o == "map" else "minimize" for o in cfg.objectives]
    url = storage_url(cfg, run_dir)
    try:
        storage = make_storage(url)
        study = optuna.create_study(storage=storage, study_name=cfg.name, directions=directions, load_if_exists=True)
    except Exception as e:  # corrupt database, unreachable server, bad URL
        raise UserError(f"cannot open the study storage {url}: {str(e).splitlines()[0][:200]}") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise UserError(f"study '{cfg.name}' in {url} has other objectives; use a new --name")
    if "config" not in study.user_attrs:
        study.set_user_attr("config", cfg.to_dict())  # what 'ultranas worker' joins with
        study.set_user_attr("run_dir", str(run_dir.resolve()))
    return study


def counted(study: optuna.Study) -> int:
    """Trials that used the budget: finished, not duplicates, not interrupted, not invalid. A trial failed by a
    heartbeat timeout (its worker died, so no ``failure`` was recorded) is not counted: its retry is."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED)
               if not t.user_attrs.get("uncounted") and (t.state != TS.FAIL or "failure" in t.user_attrs))


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed single-machine run: mark failed and queue their design again."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "failure", "interrupted (process stopped); re-queued")
        study._storage.set_trial_user_attr(t._trial_id, "uncounted", True)
        study._storage.set_trial_state_values(t._trial_id, TS.FAIL)
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        n += 1
    return n


def warm_start(ctx: SearchContext) -> None:
    """Queue the space's named points (the hand-designed baselines) once, before any strategy proposal."""
    if not ctx.cfg.warm_start or ctx.study.user_attrs.get("warm_started"):
        return
    for name, point in ctx.space.points.items():
        ctx.study.enqueue_trial(point, user_attrs={"point": name})
    ctx.study.set_user_attr("warm_started", True)


def _done_by_hash(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    return {t.user_attrs["hash"]: t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
            if "hash" in t.user_attrs and not t.user_attrs.get("duplicate_of")}


def _running_elsewhere(study: optuna.Study, trial: optuna.Trial, h: str) -> bool:
    """Another live worker is evaluating the same design right now."""
    return any(t.user_attrs.get("hash") == h and t.number != trial.number
               for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,)))


def evaluate_trial(ctx: SearchContext, trial: optuna.Trial) -> tuple[str, float | None]:
    """Ask, build, screen, estimate and tell one trial. Returns (state, score)."""
    g = {d: trial.suggest_categorical(d, list(c)) for d, c in ctx.space.decisions.items()}
    ok, reason = ctx.space.check(g)
    if not ok:
        trial.set_user_attr("uncounted", True)
        trial.set_user_attr("failure", f"invalid design: {reason}")
        ctx.study.tell(trial, state=TS.FAIL)
        return "invalid", None
    h = ctx.space.design_hash(g, ctx.nc)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("genotype", g)
    trial.set_user_attr("hash", h)
    if (twin := _done_by_hash(ctx.study).get(h)) is not None:
        for k in ("metrics", "info"):
            if k in twin.user_attrs:
                trial.set_user_attr(k, twin.user_attrs[k])
        trial.set_user_attr("duplicate_of", twin.number)
        trial.set_user_attr("uncounted", True)
        ctx.study.tell(trial, twin.values)
        return "duplicate", None
    if _running_elsewhere(ctx.study, trial, h):
        trial.set_user_attr("uncounted", True)
        trial.set_user_attr("failure", "the same design is being evaluated by another worker")
        ctx.study.tell(trial, state=TS.FAIL)
        return "duplicate", None
    workdir = ctx.run_dir / "trials" / str(trial.number)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        cand = ctx.candidate(g, workdir)
        atomic_write_text(workdir / "model.yaml", ctx.space.to_yaml(g, ctx.nc))
        trial.set_user_attr("info", cand.info)
        if (violation := ctx.constraint_violation(cand)) is not None:
            trial.set_user_attr("failure", f"constraint: {violation}")
            ctx.study.tell(trial, state=TS.PRUNED)
            return "pruned", None
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
        ctx.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        raise
    except (RuntimeError, FloatingPointError, ValueError, AssertionError, TypeError, KeyError, IndexError,
            torch.OutOfMemoryError, UserError) as e:
        kind = "out of memory" if isinstance(e, torch.OutOfMemoryError) else type(e).__name__
        trial.set_user_attr("failure", f"{kind}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}")
        trial.set_user_attr("time_s", round(time.time() - t0, 2))
        ctx.study.tell(trial, state=TS.FAIL)
        return "failed", None


def run_worker(ctx: SearchContext, progress: bool = True, poll_s: float = 2.0) -> None:
    """Evaluate trials until the study has ``cfg.trials`` counted trials (shared across workers), then wait for the
    trials other workers are still running (a dead worker's trial is failed after its heartbeat grace and retried)."""
    proposals_without_progress = 0
    bar = tqdm(total=ctx.cfg.trials, initial=min(counted(ctx.study), ctx.cfg.trials), desc="ultranas search",
               unit="trial", disable=not progress, dynamic_ncols=True)
    best = _best_score(ctx.study)
    try:
        while counted(ctx.study) < ctx.cfg.trials:
            if proposals_without_progress > 50:
                raise UserError("the strategy keeps proposing invalid or already-evaluated designs; "
                                "the space may be exhausted: lower --trials or widen the space")
            fail_stale(ctx.study)
            waiting = ctx.study.get_trials(deepcopy=False, states=(TS.WAITING,))
            running = ctx.study.get_trials(deepcopy=False, states=(TS.RUNNING,))
            if not waiting and counted(ctx.study) + len(running) >= ctx.cfg.trials:
                time.sleep(poll_s)  # the rest of the budget is being evaluated by other workers
                continue
            if not waiting and (g := ctx.strategy.propose(ctx.study)) is not None:
                ctx.study.enqueue_trial(g)
            trial = ctx.study.ask()
            with heartbeat(ctx.study, trial):
                state, score = evaluate_trial(ctx, trial)
            proposals_without_progress = proposals_without_progress + 1 if state in ("invalid", "duplicate") else 0
            if score is not None and (best is None or score > best):
                best = score
            bar.n = min(counted(ctx.study), ctx.cfg.trials)
            bar.set_postfix_str(f"last={state} best={best if best is None else round(best, 4)}")
            bar.refresh()
    finally:
        bar.close()


def _best_score(study: optuna.Study) -> float | None:
    scores = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,)) if t.values]
    return max(scores) if scores else None


def preflight(cfg: SearchConfig) -> None:
    """Fail on bad settings before anything is written."""
    from .estimation import ESTIMATORS
    from .objectives.latency import get_target

    check_dataset(cfg.data, cfg.coco128)
    space = load_space(cfg.space)
    make_objectives(cfg.objectives, latency=_LatencyName())
    make_strategy(cfg.strategy, space, ["maximize"], seed=cfg.seed)
    if cfg.estimator not in ESTIMATORS:
        raise UserError(f"unknown estimator '{cfg.estimator}': choose from {', '.join(ESTIMATORS)}")
    get_target(cfg.latency_target)
    if cfg.latency_le:
        space.point(cfg.latency_le)
    if cfg.device not in ("cpu", "mps"):
        ids = [int(p) for p in str(cfg.device).replace("cuda:", "").split(",")]
        if max(ids) >= torch.cuda.device_count():
            raise UserError(f"device '{cfg.device}' is not available: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s); use --device cpu")


class _LatencyName:
    name, direction, cheap = "latency", "minimize", True


def new_run_dir(cfg: SearchConfig) -> Path:
    from ultralytics.utils.files import increment_path

    project = Path(cfg.project)
    try:
        project.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {project}: {e.strerror}") from None
    run_dir = increment_path(project / cfg.name, exist_ok=False, mkdir=False)
    try:
        run_dir.mkdir(parents=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the output folder {run_dir}: {e.strerror}") from None
    return run_dir


def load_run(resume: str | Path) -> tuple[SearchConfig, Path]:
    import yaml

    run_dir = Path(resume)
    args = run_dir / "args.yaml"
    if not args.is_file():
        raise UserError(f"--resume {run_dir}: no args.yaml there; give a run directory made by 'ultranas search'")
    try:
        cfg = SearchConfig.from_dict(yaml.safe_load(args.read_text()))
    except (yaml.YAMLError, TypeError) as e:
        raise UserError(f"{args} is damaged: {str(e).splitlines()[0]}") from None
    return cfg.validate(), run_dir


def search(resume: str | Path | None = None, progress: bool = True, **kwargs) -> Path:
    """Run (or resume) a search; returns the run directory. Keyword arguments are ``SearchConfig`` fields."""
    if resume:
        if kwargs:
            raise UserError(f"--resume takes its settings from the run's args.yaml; drop {', '.join(kwargs)}")
        cfg, run_dir = load_run(resume)
    else:
        unknown = sorted(set(kwargs) - set(SearchConfig.__dataclass_fields__))
        if unknown:
            raise UserError(f"unknown search setting '{unknown[0]}'")
        cfg = SearchConfig(**kwargs).validate()
        if cfg.calibration:
            from .estimation.calibrate import apply_calibration

            print(f"ultranas: {apply_calibration(cfg, cfg.calibration)}")
            cfg.validate()
        preflight(cfg)  # every check that can fail runs before the run directory exists
        run_dir = new_run_dir(cfg)
    with RunLock(run_dir):
        if not resume:
            atomic_write_yaml(run_dir / "args.yaml", cfg.to_dict())
        ctx = SearchContext(cfg, run_dir, data_checked=not resume)
        if resume:
            recover_interrupted(ctx.study)
        warm_start(ctx)
        try:
            run_worker(ctx, progress=progress)
        finally:
            with contextlib.suppress(Exception):
                write_reports(ctx)
        if cfg.final:
            from .final import final_stage

            final_stage(ctx)
    return run_dir
