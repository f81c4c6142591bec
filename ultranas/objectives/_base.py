"""Objectives: a name, a direction, and whether the value is known before training (cheap)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Candidate:
    """One design as the estimators and objectives see it (read-only by convention)."""

    genotype: dict
    model_dict: dict  # rendered Ultralytics model dict, nc filled in
    design_hash: str
    imgsz: int  # deploy size: latency, limits, the final retrain
    workdir: Path
    info: dict = field(default_factory=dict)  # cheap facts computed once: params, gflops, latency_ms, ...
    train_imgsz: int | None = None  # training size while searching (the proxy size); None: ``imgsz``

    @property
    def proxy_imgsz(self) -> int:
        return int(self.train_imgsz or self.imgsz)


class Objective(ABC):
    """``value(candidate, results)``; ``results`` holds the estimator's output for expensive objectives."""

    name: str = ""
    label: str = ""  # the metric's name with its unit, as the optuna dashboard shows it (default: ``name``)
    direction: str = "minimize"  # or "maximize"
    cheap: bool = True  # known before training: usable for constraints and screening
    reads: tuple[str, ...] = ()  # search settings it reads (e.g. int8_drop: single_cls)

    @abstractmethod
    def value(self, candidate: Candidate, results: dict | None = None) -> float: ...
