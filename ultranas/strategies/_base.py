"""Search strategies: propose the next genotype from read-only history (optuna's ``BaseSampler`` in spirit).

A strategy sees only frozen, completed trials and one scalar fitness per trial (higher is better), computed by the
engine: the search score inside a latency band, or a Pareto-rank fitness over the whole front. It either returns a
genotype itself or ``None``, leaving the choice to its optuna sampler (``trial.suggest_categorical`` for every
decision). Strategies keep no state between calls: it is rebuilt from the history, so they resume and work with
many workers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import optuna

from ..space import SearchSpace
from ..study import TrialRecord


class Strategy:
    """One search strategy. ``sampler`` is what optuna uses for the decisions the strategy leaves open."""

    name: str = ""
    reads: tuple[str, ...] = ()  # search settings it reads beyond the space and seed (e.g. darts: epochs, batch)

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space, self.seed = space, seed

    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.seed)

    def propose(self, history: Sequence[TrialRecord], fitness: Sequence[float], rng: random.Random) -> dict | None:
        """A genotype to evaluate next, or ``None`` to let the sampler choose.

        Args:
            history: completed designs (:class:`ultranas.study.TrialRecord`: ``genotype``, ``values``, ``score``
                ...), oldest first; read-only.
            fitness: one scalar per trial of ``history``, higher is better.
            rng: the random stream for this proposal (seeded by the engine, so runs repeat).
        """
        return None


def pareto_fitness(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[float]:
    """Scalar fitness over several objectives (higher is better): minus the number of points that dominate it,
    then, to break ties within a rank, the first objective's rank scaled into [0, 0.5) — never more than a rank."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    vals = [[s * v for s, v in zip(signs, vs)] for vs in values]

    def dominated_by(a):
        return sum(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a)) for b in vals)

    firsts = sorted({v[0] for v in vals})
    tie = {x: 0.5 * i / len(firsts) for i, x in enumerate(firsts)}
    return [-dominated_by(v) + tie[v[0]] for v in vals]
