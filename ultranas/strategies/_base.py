"""Search strategies: propose the next genotype from the study's history (optuna ``BaseSampler`` in spirit).

A strategy either lets its optuna sampler choose (``propose`` returns ``None``; the engine then calls
``trial.suggest_categorical`` for every decision) or returns a genotype itself, which the engine enqueues.
State is rebuilt from the study on every call, so every strategy resumes, and works with many workers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import optuna

from ..space import SearchSpace


class Strategy(ABC):
    """One search strategy. ``sampler`` is what optuna uses for the decisions the strategy leaves open."""

    name: str = ""

    def __init__(self, space: SearchSpace, directions: list[str], seed: int = 0):
        self.space, self.directions, self.seed = space, directions, seed

    @abstractmethod
    def sampler(self) -> optuna.samplers.BaseSampler: ...

    def propose(self, study: optuna.Study) -> dict | None:
        """A genotype to evaluate next, or ``None`` to let the sampler choose."""
        return None


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, oldest first."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def fitness(trials: list[optuna.trial.FrozenTrial], directions: list[str]) -> list[float]:
    """Scalar fitness (higher is better): Pareto rank first, then the first objective."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    vals = [[s * v for s, v in zip(signs, t.values)] for t in trials]

    def dominated_by(a):
        return sum(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a)) for b in vals)

    return [-dominated_by(v) + 1e-3 * v[0] for v in vals]
