"""Trial bookkeeping shared by workers: the budget's last trial is started once, even by two workers at once."""

from __future__ import annotations

import optuna

from ultranas.study import counted, gives_way

TS = optuna.trial.TrialState


def _study_with_done(n: int) -> optuna.Study:
    study = optuna.create_study()
    for _ in range(n):
        t = study.ask()
        t.suggest_categorical("x", [1, 2, 3])
        study.tell(t, 0.5)
    return study


def test_of_two_workers_starting_the_last_trial_the_later_gives_way():
    study = _study_with_done(2)  # budget 3: one trial left
    first, second = study.ask(), study.ask()  # two workers asked at the same moment
    assert not gives_way(study, first, trials=3)
    assert gives_way(study, second, trials=3)
    later = study.trials[second.number]
    assert later.state == TS.FAIL and later.user_attrs["uncounted"] and "gave way" in later.user_attrs["failure"]
    assert not study.get_trials(states=(TS.WAITING,))  # a fresh proposal is dropped: nothing was evaluated
    first.suggest_categorical("x", [1, 2, 3])
    study.tell(first, 0.7)
    assert counted(study) == 3


def test_a_queued_baseline_that_gives_way_is_queued_again():
    study = _study_with_done(1)
    running = study.ask()  # e.g. a dead worker's trial: it keeps its place until its heartbeat goes stale
    study.enqueue_trial({"x": 2}, user_attrs={"point": "yolo11n"})
    queued = study.ask()
    assert gives_way(study, queued, trials=2)
    (again,) = study.get_trials(states=(TS.WAITING,))
    assert again.user_attrs["point"] == "yolo11n" and study._storage.get_trial_system_attrs(
        again._trial_id)["fixed_params"] == {"x": 2}
    assert not gives_way(study, running, trials=2)  # the earlier trial goes ahead
