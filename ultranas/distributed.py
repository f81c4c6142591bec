"""Many workers on one study: each joins with the study's stored settings and evaluates trials until the budget is spent.

Workers share the strategy state through the study itself (every strategy rebuilds from its trials). A worker
that dies (``kill -9``) stops sending heartbeats; after the grace period any other worker marks its trial failed
and optuna's ``RetryFailedTrialCallback`` queues the same design again (``ultranas.study.storage``).
"""

from __future__ import annotations

from pathlib import Path

import optuna

from .config import SearchConfig
from .context import open_context
from .errors import UserError
from .rundir import check_no_links, config_from
from .runtime import quiet_ultralytics
from .study import GRACE_S, HEARTBEAT_S, StudyRecord, check_study_exists, driver_url, load_study, storage_file
from .trial_loop import run_worker

__all__ = ["GRACE_S", "HEARTBEAT_S", "driver_url", "worker"]


@quiet_ultralytics
def worker(storage: str, name: str, device: str | None = None, progress: bool = True) -> Path:
    """Join study ``name`` in ``storage`` with its stored settings and evaluate trials until the budget is spent."""
    check_study_exists(storage)
    try:
        study = load_study(storage, name)
    except KeyError:
        raise UserError(f"no study '{name}' in {storage}: start it with 'ultranas search --storage ... --name {name}'") \
            from None
    except Exception as e:
        raise UserError(f"cannot open the study storage {storage}: {str(e).splitlines()[0][:200]}") from None
    record = StudyRecord(study)
    stored = record.config
    if not stored:
        raise UserError(f"study '{name}' was not created by 'ultranas search' (no stored settings)")
    cfg = config_from(stored, f"study '{name}' in {storage}: its stored settings")
    if device is not None:
        cfg.device = device
    cfg.validate()
    if cfg.budget is not None and not record.plan:
        raise UserError(f"study '{name}' is still planning its schedule: start workers once its plan is printed")
    run_dir = worker_run_dir(storage, study, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_no_links(run_dir)
    ctx = open_context(cfg, run_dir, study)
    run_worker(ctx, progress=progress)
    return run_dir


def worker_run_dir(storage: str, study: optuna.Study, cfg: SearchConfig) -> Path:
    """The run folder a worker writes into. A study file (SQLite, journal) inside a run folder: that run, wherever
    the study says it was made (a copied or moved run is written where it is now, never into the original). A study
    file elsewhere: the run it recorded, which must be a run folder (args.yaml). A database server: the run it
    recorded (created on this host if missing, for workers that do not share the coordinator's disk)."""
    recorded = StudyRecord(study).run_dir
    if recorded is not None and not (isinstance(recorded, str) and Path(recorded).is_absolute()):
        raise UserError(f"study '{cfg.name}' in {storage} records a run folder that is not an absolute path")
    run_dir = Path(recorded or Path(cfg.project) / cfg.name).resolve()
    file = storage_file(storage)
    if file is None:
        return run_dir
    if (file.parent / "args.yaml").is_file():
        return file.parent
    if not (run_dir / "args.yaml").is_file():
        raise UserError(f"study '{cfg.name}' in {storage} records the run folder {run_dir}, which is not a run made "
                        "by 'ultranas search' (no args.yaml there)")
    return run_dir
