"""Performance estimation: how good will a design be after full training, estimated cheaply."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from ..objectives._base import Candidate

SCORES = ("map", "loss_drop", "val_loss", "train_loss")  # what a training estimator can rank by
KNOBS = ("epochs", "imgsz", "batch", "device", "fraction", "single_cls", "seeds", "verbose")  # every trainer's


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


class TrainingEstimator(Estimator):
    """An estimator that trains each candidate: the knobs every trainer shares.

    Args:
        data: data YAML.
        epochs: the whole short schedule; ``fidelity`` scales it (:meth:`epochs_at`).
        imgsz: training size; ``None``: each candidate's own training size (``Candidate.proxy_imgsz``).
        batch: images per step.
        device: ``cpu``, ``0``, ``cuda:0`` ...
        fraction: share of the training images used.
        single_cls: class-agnostic targets.
        seeds: one run per seed; results are averaged.
        verbose: show the trainer's own output.
    """

    keep_weights: bool = False  # return the trained model's checkpoint as ``weights`` (for the int8_drop objective)
    inherit = None  # an ``ultranas.inherit.Inheritance``: designs start from the user's pretrained weights

    def __init__(self, data, epochs: int = 10, imgsz: int | None = None, batch: int = 16, device: str = "cpu",
                 fraction: float = 1.0, single_cls: bool = False, seeds: tuple[int, ...] = (0,),
                 verbose: bool = False):
        self.data, self.epochs, self.imgsz, self.batch, self.device = data, epochs, imgsz, batch, device
        self.fraction, self.single_cls, self.seeds, self.verbose = fraction, single_cls, tuple(seeds), verbose

    @staticmethod
    def split_knobs(kwargs: dict) -> tuple[dict, dict]:
        """(the keyword arguments that are :class:`TrainingEstimator` knobs, the rest: trainer-specific ones)."""
        knobs = {k: v for k, v in kwargs.items() if k in KNOBS}
        return knobs, {k: v for k, v in kwargs.items() if k not in KNOBS}

    def epochs_at(self, fidelity: float) -> int:
        """Epochs of the schedule at ``fidelity`` (at least one)."""
        return max(1, math.ceil(self.epochs * fidelity))
