"""Accuracy and size objectives: mAP50-95 (from the estimator), parameters and GFLOPs (counted, no training)."""

from __future__ import annotations

from ._base import Candidate, Objective


class MapObjective(Objective):
    """mAP50-95 as estimated (the estimator's ``score``); the only objective that needs training."""

    name, direction, cheap, label = "map", "maximize", False, "mAP50-95 (proxy)"

    def value(self, candidate: Candidate, results: dict | None = None) -> float:
        return float(results["score"])


class ParamsObjective(Objective):
    name, direction, cheap, label = "params", "minimize", True, "parameters"

    def value(self, candidate: Candidate, results: dict | None = None) -> float:
        return float(candidate.info["params"])


class GFLOPsObjective(Objective):
    name, direction, cheap, label = "gflops", "minimize", True, "GFLOPs (deploy size)"

    def value(self, candidate: Candidate, results: dict | None = None) -> float:
        return float(candidate.info["gflops"])
