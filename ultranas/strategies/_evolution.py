"""Regularized (aging) evolution, Real et al. 2019: tournament selection, mutation, the oldest member dies."""

from __future__ import annotations

from ._base import Strategy


class EvolutionStrategy(Strategy):
    """Population = the last ``population_size`` completed trials (so aging needs no extra state)."""

    name = "evolution"

    def __init__(self, *args, population_size: int = 8, sample_size: int = 3, crossover_prob: float = 0.2,
                 mutations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.population_size, self.sample_size = population_size, sample_size
        self.crossover_prob, self.mutations = crossover_prob, mutations

    def propose(self, history, fitness, rng):
        if len(history) < 2:
            return self.space.sample(rng)
        population = list(zip(history, fitness))[-self.population_size:]

        def tournament():
            picks = rng.sample(range(len(population)), min(self.sample_size, len(population)))
            return population[max(picks, key=lambda i: population[i][1])][0].genotype

        parent = tournament()
        if rng.random() < self.crossover_prob:
            parent = self.space.crossover(parent, tournament(), rng)
        return self.space.mutate(parent, rng, k=self.mutations)
