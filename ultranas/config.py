"""Search settings: one dataclass shared by the CLI, the Python API, ``args.yaml`` and resume.

Two image sizes, as in Ultralytics: ``imgsz`` is the **deploy** size (latency, constraints, the final retrain and
``found_*.pt``); ``proxy_imgsz`` is what candidates train at while searching.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from . import checks
from .errors import UserError

DEFAULT_REFERENCES = ("yolo11n", "yolo11s")  # found_n.pt and found_s.pt, where the space has them
LIMITS = {"trials": 100_000, "epochs": 10_000, "final_epochs": 10_000, "rerank_epochs": 10_000, "batch": 4096,
          "eta": 100, "imgsz": 4096, "proxy_imgsz": 4096}


@dataclass
class SearchConfig:
    data: str = "coco8.yaml"
    space: str = "yolo"
    strategy: str = "evolution"
    trials: int = 8
    time_limit: float | None = None  # minutes of search (final stage excluded); stops starting trials after it
    budget: float | None = None  # a planned run (--time-limit alone): the whole job's minutes (ultranas.plan)
    objectives: list[str] = field(default_factory=lambda: ["map", "latency"])
    focus: str = "bands"  # bands: spend the budget under each reference's latency; front: the whole Pareto front
    band_floor: float = 0.0  # >0: a band holds only designs with latency in (band_floor, 1] x its reference's
    estimator: str = "short-train"
    trainer: str = "ultralytics"  # for short-train: the stock Ultralytics trainer, or "fast" (on-device data)
    score: str = "map"  # what short-train ranks by: map, or (fast trainer) loss_drop, val_loss, train_loss
    proxy: str = "mae_entropy"
    calibration: str | None = None  # a calibration.json: its recommended estimator replaces --estimator
    epochs: int = 3
    imgsz: int = 320  # deploy size: latency, limits, final retrain
    proxy_imgsz: int = 64  # training size of candidates while searching
    input_scales: list[float] | None = None  # the input scales designs may have (x imgsz); None: the space's own
    batch: int = 8
    fraction: float = 1.0
    select_on: str = "auto"  # the selection split (search scores, re-rank): auto, val, or train (a carved part)
    judge_on: str = "auto"  # the verdict split (the final stage): auto, val or test
    select_share: float = 0.2  # share of train carved as the selection split (at least 50 images)
    single_cls: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    rerank: int = 0  # the K best designs of each band trained again at a higher fidelity before the final stage
    rerank_epochs: int = 16
    rerank_imgsz: int | None = None  # default: twice --proxy-imgsz
    halving: bool = False
    rungs: list[float] = field(default_factory=lambda: [1 / 3, 1.0])
    eta: int = 3
    warm_start: bool = True
    max_latency: float | None = None  # ms
    max_params: float | None = None
    max_gflops: float | None = None
    latency_le: str | None = None  # a baseline point: latency <= its latency
    latency_target: str = "onnxruntime-cpu"
    latency_lut: str | None = None  # a saved LatencyLUT JSON: its predictions replace latency measurements
    references: list[str] | None = None  # None: those of DEFAULT_REFERENCES that the space has
    pretrained: list[str] | None = None  # checkpoints of points: designs inherit their weights (ultranas.inherit)
    final_epochs: int = 5
    final_init: str = "scratch"  # or "supernet": final retrains start from the supernet's inherited weights
    final_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    final_workers: int = 0  # 0: one per CPU core on CPU (at most 4), 1 on a GPU
    workers: int = 0  # local search worker processes; 0: automatic (search_workers)
    final_cache: str | None = None  # JSON lines of final-stage results shared across runs (references retrained once)
    final: bool = True
    device: str = "cpu"
    seed: int = 0
    project: str = "runs/nas"
    name: str = "exp"
    storage: str | None = None
    coco128: str | None = None
    verbose: bool = False

    def validate(self) -> SearchConfig:
        for key in ("data", "space", "project", "storage", "coco128", "calibration", "final_cache", "latency_le",
                    "latency_lut"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, (str, Path)):
                raise UserError(f"--{_flag(key)} must be a string or path, got {type(value).__name__}")
            if value is not None:
                setattr(self, key, str(value))
        if self.references is None:  # the defaults the space has (the mobile space has no yolo11s)
            from .space import load_space

            points = load_space(self.space).points
            self.references = [r for r in DEFAULT_REFERENCES if r in points] or list(points)[:1]
        if self.pretrained is not None:
            if isinstance(self.pretrained, (str, Path)):
                self.pretrained = [self.pretrained]
            if not isinstance(self.pretrained, (list, tuple)) or not self.pretrained \
                    or not all(isinstance(p, (str, Path)) for p in self.pretrained):
                raise UserError("--pretrained must name one or more checkpoint files, e.g. yolo11n.pt,yolo26n.pt")
            self.pretrained = [str(p) for p in self.pretrained]
            if self.estimator != "short-train" or self.strategy == "darts" or self.final_init != "scratch":
                raise UserError(f"--pretrained needs a training estimator (short-train; here {self.estimator}) and "
                                f"no DARTS or --final-init supernet: the supernet and zero-cost proxies score designs "
                                "from weights of their own")
        for key in ("objectives", "references", "rungs"):
            value = getattr(self, key)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise UserError(f"--{_flag(key)} must be a list, got {value!r}")
        self.objectives, self.references = [str(o) for o in self.objectives], [str(r) for r in self.references]
        self.seeds = checks.seeds("--seeds", self.seeds)
        self.final_seeds = checks.seeds("--final-seeds", self.final_seeds, distinct=True)
        self.rungs = [checks.finite("--rungs", r) for r in self.rungs]
        if self.input_scales is not None:
            if not isinstance(self.input_scales, (list, tuple)) or not self.input_scales:
                raise UserError(f"--input-scales must be a non-empty list of numbers, got {self.input_scales!r}"[:120])
            self.input_scales = [checks.finite("--input-scales", s) for s in self.input_scales]
        self._check_counts()
        if self.eta < 2:
            raise UserError(f"--eta must be >= 2 (keep the top 1/eta at each rung), got {self.eta}")
        if not self.rungs or self.rungs[-1] != 1.0 or any(not 0 < r <= 1 for r in self.rungs) \
                or self.rungs != sorted(set(self.rungs)):
            raise UserError(f"--rungs must be increasing fidelities in (0, 1] ending at 1, got {self.rungs}")
        self.fraction = checks.fraction("--fraction", self.fraction)
        from .splits import JUDGE_ON, SELECT_ON

        checks.choice("--select-on", self.select_on, SELECT_ON)
        checks.choice("--judge-on", self.judge_on, JUDGE_ON)
        self.select_share = checks.within("--select-share", self.select_share, 0, 0.5, lo_open=True, hi_open=True)
        for key in ("max_latency", "max_params", "max_gflops", "time_limit"):
            if getattr(self, key) is not None:
                checks.positive(f"--{_flag(key)}", getattr(self, key))
        if self.budget is not None:
            checks.positive("budget (the planned minutes)", self.budget)
        if self.max_latency is not None and self.latency_le:
            raise UserError("--max-latency and --latency-le conflict: give one latency limit")
        self.band_floor = checks.within("--band-floor", self.band_floor, 0, 1, hi_open=True)
        checks.choice("--focus", self.focus, ("bands", "front"))
        checks.choice("--trainer", self.trainer, ("ultralytics", "fast"))
        from .estimation._base import SCORES

        checks.choice("--score", self.score, SCORES)
        checks.choice("--final-init", self.final_init, ("scratch", "supernet"))
        if self.final_init == "supernet" and self.estimator != "supernet":
            raise UserError("--final-init supernet needs --estimator supernet (the weights come from its supernet)")
        if self.final_init == "supernet" and self.single_cls:
            raise UserError("--final-init supernet and --single-cls conflict: the supernet learns one class, the final "
                            "retrain all of them")
        if self.estimator == "supernet" and "int8_drop" in self.objectives:
            raise UserError("the int8_drop objective needs a trained model of each design: use --estimator short-train")
        if self.estimator == "supernet":
            if self.score not in ("map", "val_loss"):
                raise UserError(f"--estimator supernet scores by map or val_loss, not '{self.score}'")
            if self.halving:
                raise UserError("--halving needs a training estimator; the supernet scores every design at once")
        elif self.score != "map" and (self.trainer != "fast" or self.estimator != "short-train"):
            raise UserError(f"--score {self.score} needs --estimator short-train --trainer fast")
        if "int8_drop" in self.objectives:
            if self.estimator == "zero-cost":
                raise UserError("the int8_drop objective needs a trained model: use a training estimator, not zero-cost")
            from .objectives.int8 import check_int8_available

            check_int8_available()
        if self.estimator == "zero-cost" and self.halving:
            raise UserError("--halving needs a training estimator; zero-cost proxies have no fidelity to raise")
        checks.folder_name("--name", self.name)
        checks.device("device", self.device)
        return self

    def refuse_unread(self) -> None:
        """A setting changed from its default that nothing in this configuration reads is refused, not ignored
        (:func:`ultranas.settings.refuse_unread`)."""
        from .settings import refuse_unread

        refuse_unread(self)

    def _check_counts(self) -> None:
        """Budgets, sizes and worker counts: integers within their limits (image sizes also stride multiples)."""
        for key, hi in LIMITS.items():
            checks.integer(f"--{_flag(key)}", getattr(self, key), 1, hi)
        for key in ("imgsz", "proxy_imgsz", "rerank_imgsz"):
            if getattr(self, key) is not None:
                checks.stride_size(f"--{_flag(key)}", getattr(self, key))
        checks.integer("--rerank", self.rerank, 0, 1000, " (0: off)")
        checks.integer("--final-workers", self.final_workers, 0, 256, " (0: automatic)")
        checks.integer("--workers", self.workers, 0, 64, " (0: automatic)")
        checks.seed("--seed", self.seed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        if not isinstance(d, dict):
            raise UserError("args.yaml must be a mapping of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown setting '{unknown[0]}' in args.yaml")
        return cls(**d)


def _flag(key: str) -> str:
    return key.replace("_", "-")


def final_workers(cfg: SearchConfig) -> int:
    """Parallel final trainings: as given, or one per CPU core on CPU (at most 4) and one on a GPU."""
    import os

    if cfg.final_workers:
        return cfg.final_workers
    return max(1, min(4, os.cpu_count() or 1)) if cfg.device == "cpu" else 1


def search_workers(cfg: SearchConfig) -> int:
    """Local worker processes of a search: ``--workers``, else ``ULTRANAS_WORKERS``, else one per physical core on
    CPU (at most 4: small models at proxy sizes gain nothing from a second thread, so cores are better spent on
    designs) and one per listed GPU; never more than ``--trials``. A search on a shared ``--storage`` runs one unless
    told (other hosts join with ``ultranas worker``)."""
    import os

    if cfg.storage and not cfg.workers:
        return 1
    n = cfg.workers
    if not n:
        env = os.environ.get("ULTRANAS_WORKERS", "")
        if env.strip():
            if not env.strip().isdigit() or not 0 < int(env) <= 64:
                raise UserError(f"ULTRANAS_WORKERS must be an integer in [1, 64], got {env!r}")
            n = int(env)
        elif cfg.device in ("cpu", "mps"):
            import psutil

            physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
            n = 1 if cfg.device == "mps" else min(4, physical, usable_cores())
        else:
            n = len(str(cfg.device).split(","))
    return max(1, min(n, cfg.trials))


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask and, in a container, its cgroup CPU quota."""
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)
