"""Performance estimation: how good will a design be after full training, estimated cheaply."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..objectives._base import Candidate

SCORES = ("map", "loss_drop", "val_loss", "train_loss")  # what a training estimator can rank by


def signed_score(result: dict, key: str) -> float:
    """``result[key]`` as a score where higher is better: losses are negated."""
    return -result[key] if key.endswith("_loss") else result[key]


class Estimator(ABC):
    """``estimate(candidate, fidelity)`` -> dict with at least ``score`` (higher is better).

    ``fidelity`` in (0, 1] scales the estimator's budget (successive halving raises it rung by rung);
    zero-cost estimators ignore it. Training estimators also return ``map``, ``map50`` and ``train_s``.
    """

    name: str = ""
    trains: bool = True

    @abstractmethod
    def estimate(self, candidate: Candidate, fidelity: float = 1.0) -> dict: ...
