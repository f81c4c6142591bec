"""Search strategies, by name: random, evolution (aging), tpe, nsga2 (optuna samplers), rl (REINFORCE), darts
(gradient-based block choice, then local search).

Register a new one with :func:`register_strategy` (a ``Strategy`` subclass with a unique ``name``); the CLI's
``--strategy`` choices are read from this registry.
"""

from ..errors import UserError
from ._base import Strategy, pareto_fitness
from ._darts import DartsStrategy
from ._evolution import EvolutionStrategy
from ._optuna import NSGA2Strategy, RandomStrategy, TPEStrategy
from ._reinforce import ReinforceStrategy

STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Add ``cls`` to the registry under ``cls.name`` (usable as a class decorator)."""
    if not cls.name or cls.name in STRATEGIES:
        raise ValueError(f"strategy name {cls.name!r} is empty or taken")
    STRATEGIES[cls.name] = cls
    return cls


for _cls in (RandomStrategy, EvolutionStrategy, NSGA2Strategy, TPEStrategy, ReinforceStrategy, DartsStrategy):
    register_strategy(_cls)


def make_strategy(name: str, space, seed: int = 0) -> Strategy:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy '{name}': choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](space, seed=seed)


__all__ = ["STRATEGIES", "Strategy", "make_strategy", "pareto_fitness", "register_strategy"]
