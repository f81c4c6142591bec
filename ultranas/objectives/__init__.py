"""Objectives by name: map (up), latency, params, gflops, int8_drop (down). Cheap ones are known before training.

Register a new one with :func:`register_objective` (an ``Objective`` subclass with a unique ``name``); the CLI's
``--objectives`` help is read from this registry.
"""

from ..errors import UserError
from ..registry import Registry
from ._base import Candidate, Objective
from .complexity import GFLOPsObjective, MapObjective, ParamsObjective
from .int8 import Int8DropObjective
from .latency import LatencyObjective

OBJECTIVES = Registry("objective", group="objectives")


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Add ``cls`` under ``cls.name`` (usable as a class decorator)."""
    return OBJECTIVES.register(cls.name, cls)


for _cls in (MapObjective, LatencyObjective, ParamsObjective, GFLOPsObjective, Int8DropObjective):
    register_objective(_cls)


def make_objectives(names: list[str], **instances) -> list[Objective]:
    """Objectives by name; an instance passed by name (``latency=...``: the shared latency objective) is used as
    given, the others are built with no arguments."""
    out = []
    for name in names:
        cls = OBJECTIVES.lookup(name)
        if name in [o.name for o in out]:
            raise UserError(f"objective '{name}' is listed twice")
        out.append(instances[name] if instances.get(name) is not None else cls())
    if not any(not o.cheap for o in out):
        raise UserError("objectives must include 'map': without it nothing measures accuracy")
    return out


def metric_names(names: list[str], score: str = "map") -> list[str]:
    """Each objective's label with its unit (for ``study.set_metric_names``: the optuna dashboard shows them);
    ``map`` holds the search's ``score`` when that is not mAP."""
    return [f"{score} (proxy score)" if n == "map" and score != "map" else OBJECTIVES.lookup(n).label or n
            for n in names]


__all__ = ["OBJECTIVES", "metric_names", "Candidate", "Objective", "make_objectives", "register_objective"]
