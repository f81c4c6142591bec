"""The one door to optuna's study: where it is stored (:mod:`.storage`), what ultranas records on it and its trials
(:mod:`.records`: typed fields and namespaced caches) and the bookkeeping every worker shares (:mod:`.trials`).

No other module reads or writes optuna's user attributes or touches optuna's internals.
"""

from .records import CACHES, Cache, StudyRecord, TrialRecord
from .storage import (
    GRACE_S,
    HEARTBEAT_S,
    check_study_exists,
    check_study_url,
    create_study,
    driver_url,
    fail_stale,
    heartbeat,
    load_study,
    recorded_run_dir,
    storage_file,
    study_names,
)
from .trials import (
    COUNTED,
    TS,
    band_counts,
    band_misses,
    best_score,
    counted,
    done_by_hash,
    enqueue,
    evaluating,
    fail_and_requeue,
    gives_way,
    is_counted,
    records,
    recover_interrupted,
    requeue,
    running_by,
    seen_hashes,
    tell_uncounted,
    usable,
)

__all__ = ["CACHES", "COUNTED", "GRACE_S", "HEARTBEAT_S", "TS", "Cache", "StudyRecord", "TrialRecord", "band_counts",
           "band_misses", "best_score", "check_study_url", "check_study_exists", "counted", "create_study",
           "done_by_hash", "driver_url", "enqueue", "evaluating", "fail_and_requeue", "fail_stale", "gives_way",
           "heartbeat", "is_counted", "load_study", "records", "recorded_run_dir", "recover_interrupted", "requeue",
           "running_by", "seen_hashes", "storage_file", "study_names", "tell_uncounted", "usable"]
