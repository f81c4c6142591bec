"""Ultralytics' ``DetectionModel``: build, count, load and save it; prepare it for timing, loss and training."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from ..runtime import setup

setup()  # offline settings before Ultralytics' model code is imported

import torch
import yaml
from ultralytics.nn.modules import C2f, Detect
from ultralytics.nn.tasks import DetectionModel, torch_safe_load
from ultralytics.utils.checks import check_yaml
from ultralytics.utils.torch_utils import get_flops

from ..errors import UserError
from ..fsutil import atomic_torch_save


def build_model(model_dict: dict, nc: int | None = None, verbose: bool = False) -> DetectionModel:
    """A ``DetectionModel`` from a rendered model dict (``YOLO(dict)`` does not work; this does)."""
    cfg = copy.deepcopy(model_dict)
    try:
        return DetectionModel(cfg=cfg, nc=nc or cfg.get("nc"), verbose=verbose)
    except (KeyError, TypeError, IndexError, AssertionError, AttributeError) as e:  # Ultralytics' parse_model on
        raise RuntimeError(f"Ultralytics cannot build the design: {type(e).__name__}: {e}") from e  # a design it rejects


def head_takes_data_nc(cfg: dict) -> dict:
    """Make a model dict's Detect head take its class count from ``nc`` (as Ultralytics' own YAMLs do), in place:
    training a checkpoint on data with other classes then builds a head for those classes, not the old count."""
    for row in cfg.get("head") or []:
        if isinstance(row, list) and len(row) == 4 and row[2] == "Detect" and isinstance(row[3], list) and row[3] \
                and isinstance(row[3][0], int):
            row[3][0] = "nc"
    return cfg


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: torch.nn.Module, imgsz: int = 640) -> float:
    """GFLOPs at ``imgsz`` (Ultralytics' own count, so numbers match ``model.info()``)."""
    return float(get_flops(model, imgsz))


def inference_model(model_dict: dict, nc: int | None = None, export: bool = False) -> DetectionModel:
    """Built, fused, in eval mode, without gradients; with ``export``, prepared as Ultralytics' exporter prepares it
    (C2f blocks split instead of chunk, the Detect head in static-shape ONNX export mode)."""
    model = build_model(model_dict, nc).eval().fuse(verbose=False)
    if export:
        for m in model.modules():
            if isinstance(m, C2f):
                m.forward = m.forward_split
            if isinstance(m, Detect):
                m.export, m.format, m.dynamic, m.shape = True, "onnx", False, None
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def reset_head_cache(model: torch.nn.Module) -> None:
    """Forget the anchors the Detect head caches for the last input shape (so the next forward builds them)."""
    for m in model.modules():
        if isinstance(m, Detect):
            m.shape = None


def is_end2end(model: torch.nn.Module) -> bool:
    """Whether the model's head is YOLO26-style one-to-one (NMS-free)."""
    head = model.model[-1] if hasattr(model, "model") else None
    return getattr(head, "one2one_cv2", None) is not None


def head_output_sum(out) -> torch.Tensor:
    """Sum of Detect's raw box and class outputs (eval mode returns ``(decoded, raw)``; end-to-end heads nest two)."""
    raw = out[1] if isinstance(out, tuple) else out
    if "one2many" in raw:
        return sum(head_output_sum(v) for v in raw.values())
    return raw["boxes"].sum() + raw["scores"].sum()


def prepare_loss(model: torch.nn.Module) -> torch.nn.Module:
    """Give the model the hyper-parameters Ultralytics' detection loss reads (box/cls/dfl gains), a fresh criterion."""
    if not hasattr(getattr(model, "args", None), "box"):
        from ._args import hyperparameters

        model.args = hyperparameters()
    model.criterion = None
    return model


def prepare_for_training(model: DetectionModel, nc: int, names: dict, hyp) -> DetectionModel:
    """Classes, names and hyper-parameters as Ultralytics' trainer sets them; DFL's fixed projection frozen."""
    model.nc, model.names, model.args = nc, names, hyp
    for name, p in model.named_parameters():
        p.requires_grad_(".dfl" not in name)
    return model


def detection_loss(model: DetectionModel, batch: dict, preds=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ultralytics' detection loss of ``batch`` (forward inside when ``preds`` is None): (the scalar to
    back-propagate, the detached sum of the loss items as the trainer logs them)."""
    loss, items = model.loss(batch, preds)
    return loss.sum(), sum(items.values()).detach()


def epoch_end(model: DetectionModel) -> None:
    """What the trainer does to the loss after an epoch (end-to-end heads shift weight to the one-to-one branch)."""
    criterion = getattr(model, "criterion", None)
    if hasattr(criterion, "update"):
        criterion.update()


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
    for key in ("model", "ema"):
        model = ckpt.get(key)
        if model is not None and (not isinstance(model, DetectionModel) or type(model).__name__ != "DetectionModel"):
            raise UserError(f"{path} holds a {type(model).__name__}, not a detection model")
    check_checkpoint(ckpt, path)
    return ckpt


def check_checkpoint(ckpt: dict, path: str | Path) -> None:
    """What a loaded checkpoint carries besides weights, checked before Ultralytics builds or reads anything from it:
    each model's YAML dict (the rules of a model YAML file, ``ultranas.model.check_model_dict``) and class names,
    ``train_args`` (a mapping; the arguments Ultralytics keeps from it typed), ``epoch``, and the ``ultranas`` entry
    (plain data, its numbers made plain Python numbers so it prints as YAML). One line for anything else."""
    from ..model import check_imgsz, check_model_dict
    from ..safe_yaml import YAMLBudgetError, check_object_budget

    for key in ("model", "ema"):
        if ckpt.get(key) is not None:
            check_model_dict(getattr(ckpt[key], "yaml", None), f"the model YAML inside {path}")
            _check_names(getattr(ckpt[key], "names", None), path)
            stride = getattr(ckpt[key], "stride", None)  # the predictor rounds image sizes up to its largest
            if stride is not None and not (isinstance(stride, torch.Tensor) and 1 <= stride.numel() <= 8
                                           and bool(((stride > 0) & (stride <= 256)).all())):
                raise UserError(f"{path}: the model's strides must be a few numbers in (0, 256]")
    args = ckpt.get("train_args")
    if args is not None and not isinstance(args, dict):
        raise UserError(f"{path}: 'train_args' must be a mapping of Ultralytics arguments")
    info = ckpt.get("ultranas")
    if info is not None and not isinstance(info, dict):
        raise UserError(f"{path}: its 'ultranas' entry must be a mapping")
    try:
        check_object_budget(args)
        check_object_budget(info)
    except YAMLBudgetError as e:
        raise UserError(f"{path}: its metadata {e}") from None
    args = args or {}
    check_imgsz(args.get("imgsz"), f"{path}: train_args imgsz")
    if not isinstance(args.get("data"), (str, Path, type(None))) or args.get("task") not in (None, "detect") \
            or not isinstance(args.get("single_cls", False), bool):
        raise UserError(f"{path}: train_args 'data', 'task' or 'single_cls' has a value of the wrong type")
    epoch = ckpt.get("epoch", -1)
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise UserError(f"{path}: 'epoch' must be a whole number, got {str(epoch)[:40]!r}")
    if info is not None:
        ckpt["ultranas"] = _plain(info, f"{path}: its 'ultranas' entry")
        verdict = ckpt["ultranas"].get("verdict")
        if verdict is not None and not (isinstance(verdict, list) and all(isinstance(v, str) for v in verdict)):
            raise UserError(f"{path}: its 'ultranas' entry's 'verdict' must be a list of lines")


def _check_names(names, path) -> None:
    """Class names as Ultralytics keeps them: ``{index: name}`` (or a list of names), at most ``MAX_NC``."""
    from ..model import MAX_NC

    values = list(names.values()) if isinstance(names, dict) else names
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_NC or not all(isinstance(v, str) for v in values) \
            or (isinstance(names, dict) and not all(isinstance(k, int) and not isinstance(k, bool) for k in names)):
        raise UserError(f"{path}: the model's class names must map class indices to names (1 to {MAX_NC} of them)")


def _plain(obj, where: str):
    """``obj`` as plain data (mappings, lists, text, numbers, booleans, null); numpy numbers become Python ones."""
    import numbers

    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise UserError(f"{where} has keys that are not text")
        return {k: _plain(v, where) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, where) for v in obj]
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    raise UserError(f"{where} holds a {type(obj).__name__} where plain data is expected")


def write_nas_checkpoint(best_pt: str | Path, out: str | Path, nas_info: dict) -> Path:
    """Copy a trained ``best.pt`` to ``out`` with an ``ultranas`` entry, atomically."""
    ckpt = load_checkpoint(best_pt)
    ckpt["ultranas"] = nas_info
    return atomic_torch_save(ckpt, out)


def save_trained(model: torch.nn.Module, path: str | Path) -> Path:
    """A trained in-memory ``DetectionModel`` as an Ultralytics checkpoint (fp16 weights, plain-dict ``args``) that
    ``YOLO``/``NAS`` load and export like a trainer's ``best.pt``."""
    m = copy.deepcopy(model).float().eval()
    args = getattr(m, "args", None)
    m.args = dict(vars(args) if hasattr(args, "__dict__") else args or {})
    for p in m.parameters():
        p.requires_grad_(False)
    return atomic_torch_save({"model": m.half(), "train_args": dict(m.args), "epoch": -1}, path)


def bundled_model_yaml(path: str | Path) -> dict | None:
    """Ultralytics' own model YAML for a name such as ``yolo11n.yaml``, read as Ultralytics reads it (the scale
    letter taken from the name: ``yolo11n.yaml`` is ``yolo11.yaml`` at scale ``n``); ``None`` if it has none."""
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", str(path))
    found = check_yaml(unified, hard=False)
    if not found:
        return None
    scale = re.search(r"yolo(e-)?[v]?\d+([nslmx])", Path(path).stem)
    model = yaml.safe_load(Path(found).read_text())
    model["scale"] = scale.group(2) if scale else None
    return model
