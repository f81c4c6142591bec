"""A cheap synthetic objective over a real space's decisions, with a known optimum, and a driver that runs any
registered strategy on it through a real optuna study (the engine's own ask path: propose, enqueue, suggest).

Used by ``tests/test_strategies.py`` to check that every strategy searches (beats random search on regret), the way
optuna's ``testing`` package checks every sampler.
"""

from __future__ import annotations

import random

import optuna

from ..space import SearchSpace
from ..strategies import make_strategy
from ..study import TrialRecord, records
from ..trial_loop import propose_genotype, suggest_genotype


def target_design(space: SearchSpace, seed: int) -> dict:
    """The hidden optimum: a random valid design."""
    return space.sample(random.Random(f"target-{seed}"))


def synthetic_score(space: SearchSpace, g: dict, target: dict) -> float:
    """1 at ``target``, lower the further ``g`` is: per decision, ordered choices (numbers) score by index distance,
    unordered ones (blocks) by equality; the mean over decisions."""
    total = 0.0
    for d, choices in space.decisions.items():
        choices = list(choices)
        if all(isinstance(c, (int, float)) for c in choices) and len(choices) > 1:
            total += 1 - abs(choices.index(g[d]) - choices.index(target[d])) / (len(choices) - 1)
        else:
            total += float(g[d] == target[d])
    return total / len(space.decisions)


def regret(space: SearchSpace, strategy: str, trials: int, seed: int) -> float:
    """1 - the best synthetic score that ``strategy`` finds in ``trials`` designs (0 = found the optimum)."""
    target = target_design(space, seed)
    strat = make_strategy(strategy, space, seed=seed)
    study = optuna.create_study(direction="maximize", sampler=strat.sampler())
    best = 0.0
    for _ in range(trials):
        history = records(study, (optuna.trial.TrialState.COMPLETE,), deepcopy=True)
        g = propose_genotype(strat, space, history, [t.values[0] for t in history], seed, len(study.trials))
        if g is not None:
            study.enqueue_trial(g)
        trial = study.ask()
        g = suggest_genotype(space, trial)
        if not space.check(g)[0]:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        TrialRecord(trial).genotype = g
        score = synthetic_score(space, g, target)
        study.tell(trial, score)
        best = max(best, score)
    return 1.0 - best
