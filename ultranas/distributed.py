"""Many workers on one study: each joins with the study's stored settings and evaluates trials until the budget is spent.

Workers share the strategy state through the study itself (every strategy rebuilds from its trials). A worker
that dies (``kill -9``) stops sending heartbeats; after the grace period any other worker marks its trial failed
and optuna's ``RetryFailedTrialCallback`` queues the same design again (``ultranas.storage``).
"""

from __future__ import annotations

from pathlib import Path

import optuna

from .config import SearchConfig
from .engine import SearchContext, run_worker
from .errors import UserError
from .storage import GRACE_S, HEARTBEAT_S, check_study_exists, driver_url, make_storage

__all__ = ["GRACE_S", "HEARTBEAT_S", "driver_url", "make_storage", "worker"]


def worker(storage: str, name: str, device: str | None = None, progress: bool = True) -> Path:
    """Join study ``name`` in ``storage`` with its stored settings and evaluate trials until the budget is spent."""
    check_study_exists(storage)
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
