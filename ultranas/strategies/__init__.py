"""Search strategies, by name: random, tpe, nsga2 (optuna samplers), evolution (aging), rl (REINFORCE)."""

from ..errors import UserError
from ._base import Strategy, finished, fitness
from ._evolution import EvolutionStrategy
from ._optuna import NSGA2Strategy, RandomStrategy, TPEStrategy
from ._reinforce import ReinforceStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (RandomStrategy, EvolutionStrategy, NSGA2Strategy, TPEStrategy, ReinforceStrategy)
}


def make_strategy(name: str, space, directions: list[str], seed: int = 0) -> Strategy:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy '{name}': choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](space, directions, seed=seed)


__all__ = ["STRATEGIES", "Strategy", "finished", "fitness", "make_strategy"]
