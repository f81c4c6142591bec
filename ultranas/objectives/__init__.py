"""Objectives: map (up), latency, params, gflops (down). Cheap ones are known before training."""

from ..errors import UserError
from ._base import Candidate, Objective
from .complexity import GFLOPsObjective, MapObjective, ParamsObjective

OBJECTIVES = ("map", "latency", "params", "gflops")


def make_objectives(names: list[str], latency=None) -> list[Objective]:
    """Objectives by name; ``latency`` is the (shared) latency objective instance."""
    out = []
    for name in names:
        if name not in OBJECTIVES:
            raise UserError(f"unknown objective '{name}': choose from {', '.join(OBJECTIVES)}")
        if name in [o.name for o in out]:
            raise UserError(f"objective '{name}' is listed twice")
        out.append({"map": MapObjective, "params": ParamsObjective, "gflops": GFLOPsObjective}[name]()
                   if name != "latency" else latency)
    if not any(not o.cheap for o in out):
        raise UserError("objectives must include 'map': without it nothing measures accuracy")
    return out


__all__ = ["OBJECTIVES", "Candidate", "Objective", "make_objectives"]
