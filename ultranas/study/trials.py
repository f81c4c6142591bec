"""Trial bookkeeping that every worker of a study shares: what counts against ``--trials``, what happens to a trial
whose process stopped, which of two workers starting the budget's last trial goes ahead, and the views of the
trials the strategies, the re-rank and the final stage work with."""

from __future__ import annotations

import optuna

from .records import TrialRecord
from .storage import fail_stale

TS = optuna.trial.TrialState
COUNTED = (TS.COMPLETE, TS.PRUNED, TS.FAIL)


def records(study: optuna.Study, states=None, deepcopy: bool = False) -> list[TrialRecord]:
    """The study's trials (in ``states``, oldest first) as read-only records."""
    return [TrialRecord(t) for t in study.get_trials(deepcopy=deepcopy, states=states)]


def enqueue(study: optuna.Study, params: dict, **fields) -> None:
    """Queue a design (``params``) with record ``fields`` (e.g. ``point="yolo11n"``) for the next trial."""
    if unknown := set(fields) - set(TrialRecord.FIELDS):
        raise ValueError(f"not a trial record field: {', '.join(sorted(unknown))}")
    study.enqueue_trial(params, user_attrs=fields, skip_if_exists=False)


def requeue(study: optuna.Study, params: dict, rec: TrialRecord, retry_of: int | None) -> None:
    """Queue ``params`` again (a retry of trial ``retry_of``, if any), keeping what ``rec`` keeps on a retry."""
    enqueue(study, params, **({"retry_of": retry_of} if retry_of is not None else {}), **rec.kept_on_retry())


def is_counted(rec: TrialRecord) -> bool:
    """Whether a trial used the budget: finished, not a duplicate, not interrupted, not screened. A trial failed by a
    heartbeat timeout (its worker died, so no ``failure`` was recorded) is not counted: its retry is."""
    return rec.state in COUNTED and not rec.uncounted and (rec.state != TS.FAIL or rec.has("failure"))


def counted(study: optuna.Study) -> int:
    """Trials that used the budget (:func:`is_counted`)."""
    return sum(1 for r in records(study, COUNTED) if is_counted(r))


def band_counts(study: optuna.Study) -> dict[str, int]:
    """Counted trials per latency band."""
    counts: dict[str, int] = {}
    for r in records(study, COUNTED):
        if not r.uncounted and r.band:
            counts[r.band] = counts.get(r.band, 0) + 1
    return counts


def band_misses(study: optuna.Study, band: str, enough: int) -> bool:
    """Whether the last ``enough`` designs an optuna sampler picked for ``band``'s turn (since the band's last
    counted trial) were not trained: invalid, duplicates, or screened out (most often: in another band)."""
    misses = 0
    for r in reversed(records(study)):
        if r.band == band and not r.uncounted and r.state in COUNTED:
            return False
        if r.band_turn == band and r.band_miss:
            misses += 1
            if misses >= enough:
                return True
    return False


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed run: mark failed and queue their design again; returns how many.

    A storage without heartbeats (SQLite, a journal file) serves one machine, so a RUNNING trial there was left by a
    stopped process. With heartbeats (PostgreSQL, MySQL: a shared study) a RUNNING trial may be evaluated right now
    by a live worker elsewhere: only trials whose worker stopped beating for the grace period are failed (and
    re-queued by the storage's retry callback), through optuna's stale-heartbeat check; the rest are left alone.
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if is_heartbeat_enabled(study._storage):
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
        fail_stale(study)
        return sum(1 for t in study.get_trials(deepcopy=False, states=(TS.FAIL,)) if t.number in running)
    running = study.get_trials(deepcopy=False, states=(TS.RUNNING,))
    for t in running:
        fail_and_requeue(study, t, "interrupted (process stopped); re-queued")
    return len(running)


def fail_and_requeue(study: optuna.Study, t: optuna.trial.FrozenTrial | TrialRecord, reason: str) -> None:
    """Mark a trial whose process stopped failed (uncounted) and queue its design again."""
    t = t.trial if isinstance(t, TrialRecord) else t
    rec = TrialRecord(t, study)
    rec.failure, rec.uncounted = reason, True
    study._storage.set_trial_state_values(t._trial_id, TS.FAIL)
    if t.params:
        requeue(study, t.params, rec, t.number)


def running_by(study: optuna.Study, worker: str, unnamed: bool = False) -> list[TrialRecord]:
    """Running trials that worker ``worker`` (host:pid) took; ``unnamed``: also those no worker has named yet."""
    return [r for r in records(study, (TS.RUNNING,)) if (r.worker or (worker if unnamed else None)) == worker]


def evaluating(study: optuna.Study, design_hash: str, other_than: int) -> bool:
    """Whether another running trial evaluates the design ``design_hash`` right now."""
    return any(r.hash == design_hash and r.number != other_than for r in records(study, (TS.RUNNING,)))


def tell_uncounted(study: optuna.Study, trial: optuna.Trial, reason: str, state, label: str) -> tuple[str, None]:
    """End ``trial`` without using the budget (screened, duplicate, invalid, gave way); returns (label, None)."""
    rec = TrialRecord(trial)
    rec.uncounted, rec.failure = True, reason
    study.tell(trial, state=state)
    return label, None


def gives_way(study: optuna.Study, trial: optuna.Trial, trials: int) -> bool:
    """Workers that start the budget's last trial at the same moment: the later-numbered trial gives way (a trial of a
    dead worker keeps its place until its heartbeat goes stale and it is retried). Returns whether it gave way; a
    queued retry or baseline is queued again, a fresh proposal is dropped (nothing was evaluated)."""
    ahead = sum(1 for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,)) if t.number < trial.number)
    if counted(study) + ahead < trials:
        return False
    rec = TrialRecord(trial)
    system = study._storage.get_trial_system_attrs(trial._trial_id)
    params, retry_of = system.get("fixed_params") or trial.params, rec.retry_of
    retry_of = system.get("failed_trial") if retry_of is None else retry_of
    tell_uncounted(study, trial, "gave way: another worker started the budget's last trial", TS.FAIL, "gave way")
    if params and (retry_of is not None or rec.kept_on_retry()):
        requeue(study, params, rec, retry_of)
    return True


def usable(study: optuna.Study, deepcopy: bool = False) -> list[TrialRecord]:
    """The completed designs a strategy, the re-rank and the final stage work with: each evaluated once (no
    duplicate), with its genotype, metrics and objective values."""
    return [r for r in records(study, (TS.COMPLETE,), deepcopy)
            if r.genotype is not None and r.duplicate_of is None and r.has("metrics") and r.values]


def done_by_hash(study: optuna.Study) -> dict[str, TrialRecord]:
    """Completed designs by hash (duplicates left out)."""
    return {r.hash: r for r in records(study, (TS.COMPLETE,)) if r.hash is not None and r.duplicate_of is None}


def seen_hashes(study: optuna.Study, space, nc: int) -> set[str]:
    """Designs finished, running, queued or screened out already: not worth proposing again (a trial another worker
    has just taken or queued has no hash yet: its design is hashed from its parameters)."""
    seen = set()
    for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.RUNNING, TS.PRUNED, TS.WAITING)):
        if (h := TrialRecord(t).hash) is not None:
            seen.add(h)
        elif (g := t.params or t.system_attrs.get("fixed_params")) and set(g) == set(space.decisions):
            seen.add(space.design_hash(g, nc))
    return seen


def best_score(study: optuna.Study) -> float | None:
    scores = [r.score for r in records(study, (TS.COMPLETE,)) if r.score is not None]
    return max(scores) if scores else None
