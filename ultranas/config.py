"""Search settings: one dataclass shared by the CLI, the Python API, ``args.yaml`` and resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import UserError


@dataclass
class SearchConfig:
    data: str = "coco8.yaml"
    space: str = "yolo"
    strategy: str = "evolution"
    trials: int = 8
    objectives: list[str] = field(default_factory=lambda: ["map", "latency"])
    estimator: str = "short-train"
    trainer: str = "ultralytics"  # for short-train: the stock Ultralytics trainer, or "fast" (on-device data)
    score: str = "map"  # what short-train ranks by: map, or (fast trainer) loss_drop, val_loss, train_loss
    proxy: str = "mae_entropy"
    calibration: str | None = None  # a calibration.json: its recommended estimator replaces --estimator
    epochs: int = 3
    imgsz: int = 64
    batch: int = 8
    fraction: float = 1.0
    single_cls: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    halving: bool = False
    rungs: list[float] = field(default_factory=lambda: [1 / 3, 1.0])
    eta: int = 3
    warm_start: bool = True
    max_latency: float | None = None  # ms
    max_params: float | None = None
    max_gflops: float | None = None
    latency_le: str | None = None  # a baseline point: latency <= its latency
    latency_target: str = "onnxruntime-cpu"
    references: list[str] = field(default_factory=lambda: ["yolo11n", "yolo11s"])
    final_epochs: int = 5
    final: bool = True
    device: str = "cpu"
    seed: int = 0
    project: str = "runs/nas"
    name: str = "exp"
    storage: str | None = None
    coco128: str | None = None
    verbose: bool = False

    def validate(self) -> SearchConfig:
        for key in ("data", "space", "project", "storage", "coco128", "calibration"):
            if getattr(self, key) is not None:
                setattr(self, key, str(getattr(self, key)))
        self.objectives, self.references = list(self.objectives), list(self.references)
        self.seeds, self.rungs = [int(s) for s in self.seeds], [float(r) for r in self.rungs]
        for key in ("trials", "epochs", "imgsz", "batch", "final_epochs", "eta"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.imgsz % 32:
            raise UserError(f"--imgsz must be a multiple of 32 (the detector's largest stride), got {self.imgsz}")
        if not 0 < self.fraction <= 1:
            raise UserError(f"--fraction must be in (0, 1], got {self.fraction}")
        for key in ("max_latency", "max_params", "max_gflops"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise UserError(f"--{key.replace('_', '-')} must be positive, got {value}")
        if self.max_latency is not None and self.latency_le:
            raise UserError("--max-latency and --latency-le conflict: give one latency limit")
        if self.trainer not in ("ultralytics", "fast"):
            raise UserError(f"unknown trainer '{self.trainer}': choose ultralytics or fast")
        from .estimation._base import SCORES

        if self.score not in SCORES:
            raise UserError(f"unknown --score '{self.score}': choose {', '.join(SCORES)}")
        if self.score != "map" and (self.trainer != "fast" or self.estimator != "short-train"):
            raise UserError(f"--score {self.score} needs --estimator short-train --trainer fast")
        if not self.seeds:
            raise UserError("--seeds needs at least one seed")
        if self.estimator == "zero-cost" and self.halving:
            raise UserError("--halving needs a training estimator; zero-cost proxies have no fidelity to raise")
        if self.device not in ("cpu", "mps") and not all(p.isdigit() for p in str(self.device).replace("cuda:", "").split(",")):
            raise UserError(f"unknown device '{self.device}': use cpu, 0, 0,1 or cuda:0")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown setting '{unknown[0]}' in args.yaml")
        return cls(**d)
