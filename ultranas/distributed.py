"""Many workers on one study: optuna's RDB storage (PostgreSQL, MySQL) with heartbeats, or a JournalStorage file.

Workers share the strategy state through the study itself (every strategy rebuilds from its trials). A worker
that dies (``kill -9``) stops sending heartbeats; after the grace period any other worker marks its trial failed
and optuna's ``RetryFailedTrialCallback`` queues the same design again.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

from .config import SearchConfig
from .errors import UserError

HEARTBEAT_S, GRACE_S = 5, 20


def make_storage(url: str):
    """An optuna storage for ``url``: RDB with heartbeats and retries, or a journal file (``journal:path``)."""
    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url)
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental in optuna 4.9+, the documented way all the same
        callback = retry(max_retry=3)
    return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                      failed_trial_callback=callback)


def heartbeat(study: optuna.Study, trial: optuna.Trial):
    """optuna's own heartbeat thread for ``trial`` while it is evaluated (a no-op without heartbeat support)."""
    return get_heartbeat_thread(trial._trial_id, study._storage)


def fail_stale(study: optuna.Study) -> None:
    """Mark trials of dead workers failed (and re-queued by the retry callback)."""
    if is_heartbeat_enabled(study._storage):
        optuna.storages.fail_stale_trials(study)


def worker(storage: str, name: str, device: str | None = None, progress: bool = True) -> Path:
    """Join study ``name`` in ``storage`` with its stored settings and evaluate trials until the budget is spent."""
    from .engine import SearchContext, run_worker

    try:
        study = optuna.load_study(study_name=name, storage=make_storage(storage))
    except KeyError:
        raise UserError(f"no study '{name}' in {storage}: start it with 'ultranas search --storage ... --name {name}'") \
            from None
    except Exception as e:
        raise UserError(f"cannot open the study storage {storage}: {str(e).splitlines()[0][:200]}") from None
    stored = study.user_attrs.get("config")
    if not stored:
        raise UserError(f"study '{name}' was not created by 'ultranas search' (no stored settings)")
    cfg = SearchConfig.from_dict(stored)
    if device is not None:
        cfg.device = device
    cfg.validate()
    run_dir = Path(study.user_attrs.get("run_dir") or Path(cfg.project) / cfg.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = SearchContext(cfg, run_dir, study)
    run_worker(ctx, progress=progress)
    return run_dir
