"""Search strategies, by name: random, evolution (aging), tpe, nsga2 (optuna samplers), rl (REINFORCE), darts
(gradient-based block choice, then local search).

Register a new one with :func:`register_strategy` (a ``Strategy`` subclass with a unique ``name``), or install a
package with an entry point in group ``ultranas.strategies``; the CLI's ``--strategy`` choices are read from this
registry. A strategy lists the search settings it reads in ``Strategy.reads`` (e.g. DARTS: ``epochs``, ``batch``).
"""

from ..registry import Registry
from ._base import Strategy, pareto_fitness
from ._darts import DartsStrategy
from ._evolution import EvolutionStrategy
from ._optuna import NSGA2Strategy, RandomStrategy, TPEStrategy
from ._reinforce import ReinforceStrategy

STRATEGIES = Registry("strategy", group="strategies")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Add ``cls`` to the registry under ``cls.name`` (usable as a class decorator)."""
    return STRATEGIES.register(cls.name, cls)


for _cls in (RandomStrategy, EvolutionStrategy, NSGA2Strategy, TPEStrategy, ReinforceStrategy, DartsStrategy):
    register_strategy(_cls)


def make_strategy(name: str, space, seed: int = 0) -> Strategy:
    """The strategy called ``name`` over ``space``; an unknown name is one line listing the choices."""
    return STRATEGIES.lookup(name)(space, seed=seed)


__all__ = ["STRATEGIES", "Strategy", "make_strategy", "pareto_fitness", "register_strategy"]
