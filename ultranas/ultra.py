"""The one door to Ultralytics internals: build, measure, train, validate and checkpoint designs.

An Ultralytics upgrade should change this file (and ``runtime.py``) only. Written against 8.4.190.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from pathlib import Path

import torch

from . import runtime  # noqa: F401  (offline mode before Ultralytics is imported)
from .errors import UserError
from .fsutil import atomic_torch_save

from ultralytics.nn.tasks import DetectionModel, torch_safe_load  # noqa: E402
from ultralytics.utils import LOGGER  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402


def build_model(model_dict: dict, nc: int | None = None, verbose: bool = False) -> DetectionModel:
    """A ``DetectionModel`` from a rendered model dict (``YOLO(dict)`` does not work; this does)."""
    cfg = copy.deepcopy(model_dict)
    return DetectionModel(cfg=cfg, nc=nc or cfg.get("nc"), verbose=verbose)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: torch.nn.Module, imgsz: int = 640) -> float:
    """GFLOPs at ``imgsz`` (Ultralytics' own count, so numbers match ``model.info()``)."""
    return float(get_flops(model, imgsz))


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


def train(model_yaml: str | Path, data: str | Path, project: str | Path, name: str, verbose: bool = False,
          **overrides) -> tuple[dict, Path]:
    """Train a rendered design from scratch with the stock Ultralytics trainer; returns (metrics, best.pt)."""
    from .model import NAS

    args = dict(data=str(data), project=str(Path(project).resolve()), name=name, exist_ok=True, plots=False, verbose=verbose,
                workers=0, amp=True, pretrained=False)
    args.update(overrides)
    with ultralytics_verbosity(verbose):
        model = NAS(str(model_yaml))
        metrics = model.train(**args)
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if metrics is None:
        raise RuntimeError("training returned no metrics")
    return box_metrics(metrics), best


def load_checkpoint(path: str | Path) -> dict:
    """Load a ``.pt`` with the restricted (no arbitrary code) unpickler; one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix != ".pt":
        raise UserError(f"{path} is not a .pt checkpoint")
    try:
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as e:  # restricted unpickler refusals, truncated zips, foreign pickles
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} cannot be loaded safely as an Ultralytics checkpoint: {first[:200]}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("ema") or ckpt.get("model"), torch.nn.Module):
        raise UserError(f"{path} is not an Ultralytics checkpoint (no model inside)")
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, DetectionModel) or type(model).__name__ != "DetectionModel":
        raise UserError(f"{path} holds a {type(model).__name__}, not a detection model")
    return ckpt


def write_nas_checkpoint(best_pt: str | Path, out: str | Path, nas_info: dict) -> Path:
    """Copy a trained ``best.pt`` to ``out`` with an ``ultranas`` entry, atomically."""
    ckpt = load_checkpoint(best_pt)
    ckpt["ultranas"] = nas_info
    return atomic_torch_save(ckpt, out)


from ultralytics.models.yolo.detect import DetectionValidator  # noqa: E402


class CocoJsonValidator(DetectionValidator):
    """Ultralytics' detection validator with ``save_json`` that also keeps, for ``ultranas.coco``, each JSON
    detection's image file and class index and every evaluated image's original (EXIF-corrected) size."""

    def init_metrics(self, model) -> None:
        super().init_metrics(model)
        self.det_meta, self.image_shapes = [], {}

    def _prepare_batch(self, si, batch):
        pbatch = super()._prepare_batch(si, batch)
        self.image_shapes[pbatch["im_file"]] = tuple(int(v) for v in pbatch["ori_shape"])  # (h, w) as loaded
        return pbatch

    def pred_to_json(self, predn, pbatch) -> None:
        super().pred_to_json(predn, pbatch)
        self.det_meta += [(pbatch["im_file"], int(c)) for c in predn["cls"].tolist()]

    def eval_json(self, stats):
        return stats  # scored by ultranas.coco with pycocotools; Ultralytics' own mAP stays in ``stats``


def validate_for_coco(model, save_dir: str | Path, verbose: bool = False, **kwargs) -> dict:
    """One Ultralytics validation pass (as ``model.val``, with ``save_json``) into ``save_dir``.

    Returns Ultralytics' mAP, its ``predictions.json`` detections (``bbox`` x, y, w, h in original pixels) with
    ``im_file`` and class index ``cls`` added, the evaluated images' ``{file: (h, w)}`` and the model's names.
    """
    args = {**model.overrides, "rect": True, **kwargs, "mode": "val", "save_json": True, "plots": False}
    with ultralytics_verbosity(verbose):
        validator = CocoJsonValidator(save_dir=Path(save_dir), args=args, _callbacks=model.callbacks)
        validator(model=model.model)
    if len(validator.det_meta) != len(validator.jdict):
        raise RuntimeError("Ultralytics' pred_to_json wrote a different number of detections than it was given")
    detections = [{**d, "im_file": f, "cls": c} for d, (f, c) in zip(validator.jdict, validator.det_meta)]
    box = validator.metrics.box
    return {"map": float(box.map), "map50": float(box.map50), "detections": detections,
            "images": dict(validator.image_shapes), "names": dict(validator.names)}
