"""Ultralytics' detection ``Model`` (its public task map), stock training and validation, EMA, log verbosity."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path

from ..runtime import setup, ultralytics_scope

setup()  # offline switches and fonts before the trainer is imported; the patches apply inside ``ultralytics_scope``

from ultralytics.engine.model import Model
from ultralytics.models import yolo
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.metrics import ap_per_class
from ultralytics.utils.torch_utils import ModelEMA

from ._args import check_args

__all__ = ["DetectionTask", "ModelEMA", "ap_per_class", "box_metrics", "train", "ultralytics_verbosity", "validate",
           "validate_per_image"]


class DetectionTask(Model):
    """An Ultralytics ``Model`` that knows one task, detection, as Ultralytics' own ``NAS`` class is a thin ``Model``."""

    def __init__(self, model: str | Path, task: str = "detect", verbose: bool = False):
        super().__init__(model=str(model), task=task, verbose=verbose)

    @property
    def task_map(self) -> dict:
        return {
            "detect": {
                "model": DetectionModel,
                "trainer": yolo.detect.DetectionTrainer,
                "validator": yolo.detect.DetectionValidator,
                "predictor": yolo.detect.DetectionPredictor,
            }
        }

    # Ultralytics' calls with ultranas' patches (no sync, no integrations, the offline AMP check), for the call only
    def train(self, trainer=None, **kwargs):
        with ultralytics_scope():
            return super().train(trainer, **kwargs)

    def val(self, validator=None, **kwargs):
        with ultralytics_scope():
            return super().val(validator, **kwargs)

    def export(self, **kwargs):
        with ultralytics_scope():
            return super().export(**kwargs)

    def predict(self, source=None, stream: bool = False, predictor=None, **kwargs):
        if stream:  # a generator runs after this returns: Ultralytics' own settings
            return super().predict(source, stream, predictor, **kwargs)
        with ultralytics_scope():
            return super().predict(source, stream, predictor, **kwargs)


@contextlib.contextmanager
def ultralytics_verbosity(verbose: bool):
    """Show Ultralytics' own per-epoch output only when asked."""
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO if verbose else logging.ERROR)
    old = os.environ.get("YOLO_VERBOSE")
    os.environ["YOLO_VERBOSE"] = "true" if verbose else "false"
    try:
        yield
    finally:
        LOGGER.setLevel(level)
        if old is None:
            os.environ.pop("YOLO_VERBOSE", None)
        else:
            os.environ["YOLO_VERBOSE"] = old


def box_metrics(metrics) -> dict:
    """mAP50-95 / mAP50 / precision / recall from Ultralytics' DetMetrics."""
    rd = metrics.results_dict
    out = {
        "map": float(rd.get("metrics/mAP50-95(B)", float("nan"))),
        "map50": float(rd.get("metrics/mAP50(B)", float("nan"))),
        "precision": float(rd.get("metrics/precision(B)", float("nan"))),
        "recall": float(rd.get("metrics/recall(B)", float("nan"))),
    }
    if not all(math.isfinite(v) for v in out.values()):
        raise FloatingPointError("validation produced non-finite metrics (NaN loss or diverged training)")
    return out


class _StepClock:
    """Trainer callbacks: seconds in set-up (model, data loaders), in training epochs and the rest (validation,
    checkpoints). Training epochs and validation passes hold the host's cores shared (:mod:`ultranas.cores`),
    batch loading included, and let them go between batches so a waiting timer gets in."""

    def __init__(self):
        self.marks, self.train_s, self.hold = {}, 0.0, contextlib.ExitStack()

    def attach(self, model) -> None:
        from .. import cores

        def mark(name):
            return lambda trainer: self.marks.__setitem__(name, time.perf_counter())

        def hold(_):
            self.hold.close()
            self.hold.enter_context(cores.training())

        def epoch_start(trainer):
            self.marks["epoch"] = time.perf_counter()
            hold(trainer)

        def epoch_end(trainer):
            self.train_s += time.perf_counter() - self.marks["epoch"]
            self.hold.close()

        model.add_callback("on_pretrain_routine_start", mark("start"))
        model.add_callback("on_pretrain_routine_end", mark("setup"))
        model.add_callback("on_train_epoch_start", epoch_start)
        model.add_callback("on_train_batch_end", hold)  # let go between batches, then hold for the next one
        model.add_callback("on_train_epoch_end", epoch_end)
        model.add_callback("on_val_start", hold)  # the trainer's validator shares its callbacks
        model.add_callback("on_val_batch_end", hold)
        model.add_callback("on_val_end", lambda trainer: self.hold.close())

    def seconds(self, end: float) -> dict:
        start, setup = self.marks.get("start", end), self.marks.get("setup", end)
        return {"data_s": round(setup - start, 2), "train_s": round(self.train_s, 2),
                "val_s": round(max(0.0, end - setup - self.train_s), 2)}


def train(model_yaml: str | Path, data: str | Path, project: str | Path, name: str, verbose: bool = False,
          **overrides) -> tuple[dict, Path]:
    """Train a rendered design from scratch with the stock Ultralytics trainer; returns (metrics, best.pt).

    The metrics hold ``data_s`` (set-up: model and data loaders), ``train_s`` (training epochs) and ``val_s`` (the
    rest: validation, checkpoints). Ultralytics reads only the checked copy of ``data`` (no ``download:`` is ever run).
    """
    from ..data import safe_data_yaml

    args = dict(data=str(data), project=str(Path(project).resolve()), name=name, exist_ok=True, plots=False,
                verbose=verbose, workers=0, amp=True, pretrained=False)
    args.update(overrides)
    check_args(args)
    args["data"] = str(safe_data_yaml(args["data"]))
    clock = _StepClock()
    with ultralytics_verbosity(verbose), clock.hold:
        model = DetectionTask(str(model_yaml))
        clock.attach(model)
        metrics = model.train(**args)
    best = Path(model.trainer.save_dir) / "weights" / "best.pt"
    if metrics is None:
        raise RuntimeError("training returned no metrics")
    return {**box_metrics(metrics), **clock.seconds(time.perf_counter())}, best


def validate(model: DetectionModel, verbose: bool = False, **args) -> dict:
    """mAP50-95, mAP50, P, R of ``model`` from Ultralytics' ``DetectionValidator`` (``args``: data, imgsz, batch,
    split, ...), run in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp, ultralytics_verbosity(verbose), ultralytics_scope():
        validator = yolo.detect.DetectionValidator(save_dir=Path(tmp), args={**args, "verbose": verbose})
        validator(model=model)
    return box_metrics(validator.metrics)


class _PerImageValidator(yolo.detect.DetectionValidator):
    """Ultralytics' detection validator that also keeps each image's matches (``tp`` at the ten IoU thresholds,
    confidences, classes and its targets' classes), in the order it validates them."""

    def init_metrics(self, model) -> None:
        super().init_metrics(model)
        self.per_image = []

    def update_metrics(self, preds, batch) -> None:
        first = len(self.metrics.stats["tp"])
        super().update_metrics(preds, batch)  # appends one record per image, in batch order
        for k, file in enumerate(batch["im_file"][:len(preds)]):
            rec = {key: self.metrics.stats[key][first + k] for key in ("tp", "conf", "pred_cls", "target_cls")}
            self.per_image.append({**rec, "file": str(file)})


def validate_per_image(weights: str | Path, data: str | Path, imgsz: int, batch: int, device: str = "cpu",
                       verbose: bool = False) -> tuple[dict, list[dict]]:
    """Validate a checkpoint on ``data``'s val split as the trainer's final validation does (rect batches of
    ``batch``); returns (its box metrics, each image's matches) for resampling images (:mod:`ultranas.bootstrap`)."""
    args = dict(model=str(weights), data=str(data), imgsz=int(imgsz), batch=int(batch), device=device, split="val",
                plots=False, verbose=verbose, workers=0, half=False, rect=True)
    with tempfile.TemporaryDirectory() as tmp, ultralytics_verbosity(verbose), ultralytics_scope():
        validator = _PerImageValidator(save_dir=Path(tmp), args=args)
        validator(model=str(weights))
    return box_metrics(validator.metrics), validator.per_image
