"""The search: ``search()`` is the Python API behind ``ultranas search`` — settings checked, the run directory
made, the context built (:mod:`ultranas.context`), the plan made, the baselines queued, the workers run
(:mod:`ultranas.trial_loop`, or :mod:`ultranas.local_workers` for several), then re-rank and the final stage.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import optuna

from .config import SearchConfig, search_workers
from .context import open_context, rebuilt
from .data_profile import announce_profile, score_advice
from .errors import Interrupted, RunFailed, UserError
from .fsutil import RunLock, atomic_write_yaml
from .input_size import scale_note
from .plan import Phases, make_plan, proxy_size, wanted
from .preflight import preflight, sigterm_as_interrupt
from .report import write_reports
from .rundir import absolute_paths, check_resumable, check_writable, load_run, new_run_dir, storage_url
from .runtime import quiet_ultralytics
from .study import StudyRecord, recover_interrupted
from .trial_loop import run_worker
from .warm_start import warm_start

TS = optuna.trial.TrialState


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
            ctx = open_context(cfg, run_dir, data_checked=not resume, resume=bool(resume))
            ctx.progress = progress  # the plan's and the final stage's bars too
            print(f"ultranas: {ctx.splits.describe()}", flush=True)
            ctx.profile = announce_profile(ctx.full_data, cfg.imgsz, run_dir)
            if planned:  # --time-limit alone: the schedule is chosen from measured costs, at the proxy size it needs
                cfg.proxy_imgsz = proxy_size(ctx.profile, cfg.imgsz)
                ctx = rebuilt(ctx)
                deadline = make_plan(ctx, kwargs, started)
                ctx = rebuilt(ctx)
                ctx.plan_deadline, planned = deadline, False  # from here on, a stopped run resumes
            elif cfg.budget is not None and not StudyRecord(ctx.study).plan:
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
