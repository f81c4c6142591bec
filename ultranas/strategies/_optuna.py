"""Random search, and the strategies that are optuna samplers: TPE, NSGA-II (not re-implemented here)."""

from __future__ import annotations

import optuna

from ._base import Strategy


class RandomStrategy(Strategy):
    """Uniform over the space's valid designs (proposed here, so latency bands can screen them before a trial)."""

    name = "random"

    def propose(self, history, fitness, rng):
        return self.space.sample(rng)


class TPEStrategy(Strategy):
    """Tree-structured Parzen estimator; ``constant_liar`` keeps parallel workers from proposing the same design."""

    name = "tpe"

    def sampler(self):
        return optuna.samplers.TPESampler(seed=self.seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=5)


class NSGA2Strategy(Strategy):
    name = "nsga2"

    def __init__(self, *args, population_size: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.population_size = population_size

    def sampler(self):
        return optuna.samplers.NSGAIISampler(seed=self.seed, population_size=self.population_size)
