"""Trial bookkeeping that every worker of a study shares: what counts against ``--trials``, what happens to a trial
whose process stopped, and which of two workers starting the budget's last trial goes ahead."""

from __future__ import annotations

import optuna

from .storage import fail_stale

TS = optuna.trial.TrialState
COUNTED = (TS.COMPLETE, TS.PRUNED, TS.FAIL)
KEPT_ON_RETRY = ("info", "point")  # the latency judgement that admitted a design, and its baseline name


def requeue(study: optuna.Study, params: dict, attrs: dict, retry_of: int | None) -> None:
    """Queue ``params`` again (a retry of trial ``retry_of``, if any), keeping ``KEPT_ON_RETRY`` of ``attrs``."""
    kept = {k: attrs[k] for k in KEPT_ON_RETRY if k in attrs}
    study.enqueue_trial(params, user_attrs={**({"retry_of": retry_of} if retry_of is not None else {}), **kept},
                        skip_if_exists=False)


def counted(study: optuna.Study) -> int:
    """Trials that used the budget: finished, not duplicates, not interrupted, not screened. A trial failed by a
    heartbeat timeout (its worker died, so no ``failure`` was recorded) is not counted: its retry is."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED)
               if not t.user_attrs.get("uncounted") and (t.state != TS.FAIL or "failure" in t.user_attrs))


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


def fail_and_requeue(study: optuna.Study, t: optuna.trial.FrozenTrial, reason: str) -> None:
    """Mark a trial whose process stopped failed (uncounted) and queue its design again."""
    study._storage.set_trial_user_attr(t._trial_id, "failure", reason)
    study._storage.set_trial_user_attr(t._trial_id, "uncounted", True)
    study._storage.set_trial_state_values(t._trial_id, TS.FAIL)
    if t.params:
        requeue(study, t.params, t.user_attrs, t.number)


def add_screened(study: optuna.Study, n: int, seconds: float = 0.0) -> None:
    """Count proposals screened out before becoming trials (``screened`` in the study: a search's hidden cost) and
    the seconds spent proposing (``propose_s``: building and timing proposals, the accepted one included)."""
    if n:
        study.set_user_attr("screened", int(study.user_attrs.get("screened", 0)) + n)
    if seconds:
        study.set_user_attr("propose_s", round(float(study.user_attrs.get("propose_s", 0.0)) + seconds, 2))


def tell_uncounted(study: optuna.Study, trial: optuna.Trial, reason: str, state, label: str) -> tuple[str, None]:
    """End ``trial`` without using the budget (screened, duplicate, invalid, gave way); returns (label, None)."""
    trial.set_user_attr("uncounted", True)
    trial.set_user_attr("failure", reason)
    study.tell(trial, state=state)
    return label, None


def gives_way(study: optuna.Study, trial: optuna.Trial, trials: int) -> bool:
    """Workers that start the budget's last trial at the same moment: the later-numbered trial gives way (a trial of a
    dead worker keeps its place until its heartbeat goes stale and it is retried). Returns whether it gave way; a
    queued retry or baseline is queued again, a fresh proposal is dropped (nothing was evaluated)."""
    ahead = sum(1 for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,)) if t.number < trial.number)
    if counted(study) + ahead < trials:
        return False
    system = study._storage.get_trial_system_attrs(trial._trial_id)
    params, retry_of = system.get("fixed_params") or trial.params, trial.user_attrs.get("retry_of",
                                                                                       system.get("failed_trial"))
    tell_uncounted(study, trial, "gave way: another worker started the budget's last trial", TS.FAIL, "gave way")
    if params and (retry_of is not None or any(k in trial.user_attrs for k in KEPT_ON_RETRY)):
        requeue(study, params, trial.user_attrs, retry_of)
    return True


def usable(study: optuna.Study, deepcopy: bool = False) -> list[optuna.trial.FrozenTrial]:
    """The completed designs a strategy, the re-rank and the final stage work with: each evaluated once (no
    duplicate), with its genotype, metrics and objective values."""
    return [t for t in study.get_trials(deepcopy=deepcopy, states=(TS.COMPLETE,))
            if "genotype" in t.user_attrs and not t.user_attrs.get("duplicate_of") and "metrics" in t.user_attrs
            and t.values]


def done_by_hash(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    return {t.user_attrs["hash"]: t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
            if "hash" in t.user_attrs and not t.user_attrs.get("duplicate_of")}


def seen_hashes(study: optuna.Study, space, nc: int) -> set[str]:
    """Designs finished, running, queued or screened out already: not worth proposing again (a trial another worker
    has just taken or queued has no hash yet: its design is hashed from its parameters)."""
    seen = set()
    for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.RUNNING, TS.PRUNED, TS.WAITING)):
        if "hash" in t.user_attrs:
            seen.add(t.user_attrs["hash"])
        elif (g := t.params or t.system_attrs.get("fixed_params")) and set(g) == set(space.decisions):
            seen.add(space.design_hash(g, nc))
    return seen


def best_score(study: optuna.Study) -> float | None:
    scores = [t.user_attrs["metrics"]["score"] for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
              if "score" in t.user_attrs.get("metrics", {})]
    return max(scores) if scores else None
