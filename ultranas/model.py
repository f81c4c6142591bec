"""``NAS``: a searched design as an Ultralytics model — predict, val, train, export, like ``YOLO``."""

from __future__ import annotations

import os
from pathlib import Path

from . import ultra
from .checks import MAX_NC, is_int, is_number
from .errors import UserError
from .safe_yaml import read_text, safe_load

SAFE_ACTIVATIONS = {None, "nn.SiLU()", "nn.ReLU()", "nn.ReLU6()", "nn.Hardswish()", "nn.LeakyReLU(0.1)", "nn.GELU()"}
STRUCTURAL = {"Concat", "Detect", "nn.Upsample"}


MAX_ARG, MAX_MULTIPLE = 4096, 4  # a layer width (as spaces bound them), depth/width scale


def _count(v, hi: int) -> bool:
    return is_int(v) and 1 <= v <= hi


def check_model_yaml(path: Path) -> None:
    """Refuse a model YAML file that :func:`check_model_dict` refuses (or that cannot be read), in one line."""
    from .space import load_model_yaml

    path = Path(path)
    if path.is_dir():
        raise UserError(f"model YAML {path} is a folder, not a file")
    try:
        model = load_model_yaml(path)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"model YAML {path} cannot be read: {str(e).splitlines()[0][:120]}") from None
    check_model_dict(model, f"model YAML {path}")


def check_model_dict(model, where: str) -> None:
    """Refuse a model dict (a YAML file's, or the one inside a checkpoint) that names modules outside the allow-list,
    an activation that is not plain, values of the wrong type or out of bounds: one line naming ``where`` and the key
    or layer. Runs before Ultralytics builds anything from it."""
    from .safe_yaml import YAMLBudgetError, check_object_budget

    if not isinstance(model, dict) or "backbone" not in model or "head" not in model:
        raise UserError(f"{where} needs 'backbone' and 'head' lists")
    try:
        check_object_budget(model)
    except YAMLBudgetError as e:
        raise UserError(f"{where} {e}") from None
    _check_top_keys(model, where)
    for part in ("backbone", "head"):
        if not isinstance(model[part], list):
            raise UserError(f"{where}: '{part}' must be a list of layers [from, repeats, module, args]")
    for i, row in enumerate(model["backbone"] + model["head"]):
        _check_layer(row, i, where)


def _check_top_keys(model: dict, where: str) -> None:
    act = model.get("activation")
    if not isinstance(act, (str, type(None))) or act not in SAFE_ACTIVATIONS:
        raise UserError(f"{where}: activation {str(act)[:60]!r} is not allowed (use one of "
                        f"{', '.join(sorted(a for a in SAFE_ACTIVATIONS if a))}); it would be evaluated as code")
    if "nc" in model and not _count(model["nc"], MAX_NC):
        raise UserError(f"{where}: 'nc' must be a positive integer up to {MAX_NC}, got {str(model['nc'])[:40]!r}")
    for key in ("depth_multiple", "width_multiple"):
        if key in model and not (is_number(model[key]) and 0 < model[key] <= MAX_MULTIPLE):
            raise UserError(f"{where}: '{key}' must be a number in (0, {MAX_MULTIPLE}]")
    if "max_channels" in model and not (is_number(model["max_channels"]) and model["max_channels"] > 0):
        raise UserError(f"{where}: 'max_channels' must be a positive number")
    scales = model.get("scales")
    if scales is not None and not (isinstance(scales, dict) and all(
            isinstance(v, list) and len(v) == 3 and all(is_number(x) and x > 0 for x in v)
            and v[0] <= MAX_MULTIPLE and v[1] <= MAX_MULTIPLE for v in scales.values())):
        raise UserError(f"{where}: 'scales' must map scale names to [depth, width, max_channels] positive numbers "
                        f"(depth and width up to {MAX_MULTIPLE})")
    scale = model.get("scale")
    if scale and not (isinstance(scale, str) and (not scales or scale in scales)):
        raise UserError(f"{where}: 'scale' {str(scale)[:40]!r} is not one of its 'scales'")
    for key, ok in (("channels", lambda v: _count(v, 16)), ("reg_max", lambda v: _count(v, 64)),
                    ("end2end", lambda v: isinstance(v, bool))):
        if model.get(key) is not None and not ok(model[key]):
            raise UserError(f"{where}: '{key}' has a value of the wrong type or out of range: {str(model[key])[:40]!r}")


def _check_layer(row, i: int, where: str) -> None:
    from .space import ALLOWED_MODULES

    if not isinstance(row, list) or len(row) != 4:
        raise UserError(f"{where}: layer {i} must be [from, repeats, module, args]")
    src, repeats, module, args = row
    if not (_index(src) or (isinstance(src, list) and src and all(_index(f) for f in src))):
        raise UserError(f"{where}: layer {i}: 'from' must be a layer index or a list of them, got {str(src)[:40]!r}")
    if not _count(repeats, 64):
        raise UserError(f"{where}: layer {i}: repeats must be an integer in [1, 64], got {str(repeats)[:40]!r}")
    if not isinstance(module, str) or module not in ALLOWED_MODULES | STRUCTURAL:
        raise UserError(f"{where}: layer {i} names module {str(module)[:60]!r}, which is not an allowed "
                        "Ultralytics detection module")
    bound = MAX_NC if module == "Detect" else MAX_ARG
    if not isinstance(args, list) or not all(_plain_arg(a, bound) for a in args):
        raise UserError(f"{where}: layer {i}: args must be a list of numbers up to {bound}, booleans, null or "
                        "short names")


def _index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -1000 < v < 1000


def _plain_arg(a, bound: float) -> bool:
    """A layer argument Ultralytics reads without surprises: a finite number within +-``bound``, bool, null, or a
    short plain name (``nearest``, ``nc``; parse_model reads strings with ``ast.literal_eval``), or a list of them."""
    if isinstance(a, list):
        return all(_plain_arg(x, bound) for x in a)
    if isinstance(a, str):
        return len(a) <= 32 and a.replace("_", "").isalnum()
    return a is None or isinstance(a, bool) or (is_number(a) and abs(a) <= bound)


def check_args(kwargs: dict, command: str | None = None) -> None:
    """Ultralytics' own argument names and types, checked up front, plus image size, split and device: one line
    instead of Ultralytics' error and CLI help. With ``command`` (predict, val, train, export), also the ranges the
    command line checks (:func:`checks.mode_args`), so the Python API refuses what the CLI refuses."""
    if command is not None:
        from .checks import mode_args

        mode_args(kwargs, command)
    ultra.check_args(kwargs)
    check_imgsz(kwargs.get("imgsz"))
    if kwargs.get("split") is not None and kwargs["split"] not in ("train", "val", "test"):
        raise UserError(f"split must be train, val or test, got {str(kwargs['split'])[:40]!r}")
    _check_device(kwargs.get("device"))


def check_imgsz(imgsz, label: str = "imgsz") -> None:
    """An image size Ultralytics can allocate: a whole number (or [h, w]) in [1, 16384]; None is the default."""
    sizes = imgsz if isinstance(imgsz, (list, tuple)) else [imgsz]
    if imgsz is not None and not (1 <= len(sizes) <= 2 and all(_count(v, 16384) for v in sizes)):
        raise UserError(f"{label} must be a positive whole number (or [h, w]) up to 16384, got {str(imgsz)[:40]}")


def _check_device(device) -> None:
    import torch

    text = str(device).strip().lower().replace("cuda:", "") if device is not None else ""
    if text in ("", "cpu", "mps", "mps:0", "none"):
        return
    ids = text.replace(" ", "").split(",")
    if not all(i.isdigit() or i == "-1" for i in ids):
        raise UserError(f"unknown device '{device}': use cpu, 0, 0,1 or cuda:0")
    if max(int(i) for i in ids) >= torch.cuda.device_count():
        raise UserError(f"device '{device}' is not available: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s); use device=cpu")


def toposort_onnx(path: str | Path) -> None:
    """Re-order an ONNX graph's nodes topologically, in place (Kahn's algorithm; stable for sorted graphs)."""
    import onnx

    from .fsutil import atomic_write_bytes

    model = onnx.load(str(path))
    graph = model.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progressed = [n for n in pending if all(i in ready for i in n.input)]
        if not progressed:
            raise UserError(f"{path}: ONNX graph has a cycle or a dangling input; cannot sort it")
        for n in progressed:
            ordered.append(n)
            ready.update(n.output)
        pending = [n for n in pending if all(n is not p for p in progressed)]
    del graph.node[:]
    graph.node.extend(ordered)
    atomic_write_bytes(path, model.SerializeToString())


def _checked_data(data, split: str | None = None) -> str:
    """The checked copy of a data YAML (default: the bundled coco8, as Ultralytics' default); ``split`` must be in it."""
    from .data import load_data_yaml, safe_data_yaml

    path = safe_data_yaml(str(data) if data else "coco8.yaml")
    if split and not load_data_yaml(path).get(split):
        raise UserError(f"split={split} is not in data YAML {data}: add a '{split}:' folder or use split=val")
    return str(path)


def _cfg_file(cfg) -> dict:
    """An Ultralytics ``cfg=`` override file, read safely (only to find its ``data``)."""
    import yaml

    if not cfg:
        return {}
    try:
        loaded = safe_load(read_text(Path(str(cfg)), "cfg file"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"cfg file {cfg} cannot be read as YAML: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"cfg file {cfg} must be a mapping of Ultralytics arguments")
    return loaded


def _check_source(source) -> None:
    if not isinstance(source, (str, Path)) or not str(source) or str(source).isnumeric():
        return  # arrays, tensors, images, webcams: Ultralytics checks them
    text = str(source)
    if "://" in text or any(c in text for c in "*?[") or text.startswith("screen"):
        return
    if not Path(text).expanduser().exists():
        raise UserError(f"source {text} not found: give an image, a folder, a video, a glob or a URL")


def _check_model_file(value, key: str) -> None:
    """A model file an argument names (``pretrained=``, ``distill_model=``), checked as ``model=`` is."""
    if isinstance(value, bool) or not isinstance(value, (str, Path)):
        return
    path = Path(str(value))
    if path.suffix == ".pt":
        ultra.load_checkpoint(path)
    elif path.suffix in (".yaml", ".yml"):
        check_model_yaml(path)
    else:
        raise UserError(f"{key}={str(value)[:80]} must be a .pt checkpoint or a model .yaml")


# what Ultralytics' trainer takes from the command line rather than the checkpoint on resume (trainer.check_resume)
RESUME_OVERRIDES = {"imgsz", "batch", "device", "close_mosaic", "augmentations", "save_period", "workers", "cache",
                    "patience", "time", "freeze", "val", "plots", "channels_last", "distill_model", "save_dir", "data",
                    "model", "mode", "resume", "pretrained"}


def _resume_settings(nas, kwargs: dict) -> dict:
    """A resumed training's checkpoint checked like a ``model=`` one, the arguments Ultralytics takes from its
    ``train_args`` checked like command-line ones, and its output folder decided here (:func:`_resume_dir`), never
    taken from the checkpoint's ``save_dir``/``project``/``name``."""
    resume = kwargs["resume"]
    if resume is True:
        ckpt, path = nas.ckpt, nas.ckpt_path
        if not (ckpt and ckpt.get("epoch", -1) >= 0 and ckpt.get("optimizer") is not None):
            return {}  # not resumable: Ultralytics starts a new training, with the command line's arguments
    else:
        path = resume
        ckpt = ultra.load_checkpoint(Path(str(resume)))
        if not (ckpt.get("epoch", -1) >= 0 and ckpt.get("optimizer") is not None):
            raise UserError(f"resume={resume}: not a resumable training checkpoint (finished, or no optimizer state)")
    known = set(vars(ultra.hyperparameters()))
    args = {k: v for k, v in (ckpt.get("train_args") or {}).items()
            if k in known and not (k in RESUME_OVERRIDES and kwargs.get(k) is not None)}
    try:
        check_args(args)
    except UserError as e:
        raise UserError(f"resume checkpoint {path}: its train_args: {e}") from None
    if kwargs.get("distill_model") is None:
        _check_model_file(args.get("distill_model"), "distill_model (in the resume checkpoint)")
    out = {"save_dir": _resume_dir(Path(str(path)), kwargs.get("save_dir"))}
    if resume is not True and not kwargs.get("data"):
        out["data"] = args.get("data")
    return out


def _resume_dir(checkpoint: Path, save_dir) -> str:
    """The folder a resumed training writes to: ``save_dir=`` when given, else the training run that holds the
    checkpoint (``<run>/weights/last.pt`` next to ``<run>/args.yaml``) and holds no symbolic link."""
    from .rundir import first_link

    if save_dir:
        return str(Path(str(save_dir)).expanduser().resolve())
    path = Path(os.path.abspath(checkpoint))
    run = path.parent.parent
    if path.parent.name != "weights" or not (run / "args.yaml").is_file():
        raise UserError(f"resume=True continues the training run that holds {checkpoint}, but it is not in a run's "
                        "weights/ folder next to args.yaml: give save_dir=FOLDER for the resumed run, or train "
                        "without resume")
    if link := first_link(run):
        raise UserError(f"resume=True would write through the symbolic link {link} in run {run}: remove it, or give "
                        "save_dir=FOLDER")
    return str(run.resolve())


EXPORT_ALIASES = {"tensorrt", "trt", "mlmodel", "mlpackage", "mlprogram", "apple", "ios", "huawei", "cann", "om",
                  "vitis", "vitisai", "versal", "tflite", "tfjs"}


def _check_format(fmt) -> None:
    import difflib

    formats = ultra.export_formats()
    if not isinstance(fmt, str) or (fmt.lower() not in set(formats) | EXPORT_ALIASES
                                    and not difflib.get_close_matches(fmt.lower(), formats, n=1, cutoff=0.6)):
        raise UserError(f"unknown export format={str(fmt)[:40]}: choose from {', '.join(formats)}")


class NAS(ultra.DetectionTask):
    """A detector found by ultranas (``found_n.pt``) or any rendered design (``model.yaml``), trainable from scratch.

    Examples:
        >>> model = NAS("found_n.pt")
        >>> model.predict("image.jpg")
        >>> model.nas_info["genotype"]
    """

    def __init__(self, model: str | Path = "found_n.pt", task: str = "detect", verbose: bool = False):
        path = Path(str(model))
        if path.suffix == ".pt":
            ultra.load_checkpoint(path)  # one clear line for missing, corrupt, unsafe or non-detection files
        elif path.suffix in (".yaml", ".yml"):
            check_model_yaml(path)
        elif path.suffix not in (".onnx", ".torchscript", ".engine") and not path.is_dir():
            raise UserError(f"unsupported model file {path}: give a .pt checkpoint or a model .yaml")
        if task != "detect":
            raise UserError(f"NAS models are detectors; task '{task}' is not supported")
        super().__init__(model=str(model), task=task, verbose=verbose)

    def predict(self, source=None, stream: bool = False, predictor=None, **kwargs):
        """Ultralytics' predictor, after one-line checks of the arguments and the source."""
        check_args(kwargs, "predict")
        _check_source(source)
        if kwargs.get("data"):
            kwargs["data"] = _checked_data(kwargs["data"])
        return super().predict(source, stream, predictor, **kwargs)

    def val(self, validator=None, **kwargs):
        """Ultralytics' validator on the checked copy of the data YAML (a ``download:`` in it is never run)."""
        check_args(kwargs, "val")
        kwargs["data"] = _checked_data(kwargs.get("data") or self.overrides.get("data"), kwargs.get("split") or "val")
        return super().val(validator, **kwargs)

    def train(self, trainer=None, **kwargs):
        """Ultralytics' trainer on the checked copy of the data YAML (a ``download:`` in it is never run); a resumed
        training writes to its own run folder, never to one its checkpoint names (:func:`_resume_settings`)."""
        check_args(kwargs, "train")
        cfg = _cfg_file(kwargs.get("cfg"))  # Ultralytics reads its settings too: checked as the command line's
        try:
            check_args(cfg)
        except UserError as e:
            raise UserError(f"cfg file {kwargs['cfg']}: {e}") from None
        given = {**cfg, **kwargs}
        for key in ("pretrained", "distill_model"):
            _check_model_file(given.get(key), key)
        if given.get("resume"):
            kwargs.update(_resume_settings(self, given))
        data = kwargs.get("data") or cfg.get("data") or self.overrides.get("data")
        kwargs["data"] = _checked_data(data)
        if isinstance(getattr(self.model, "yaml", None), dict):  # a head for the data's classes, not the old count
            ultra.head_takes_data_nc(self.model.yaml)
        return super().train(trainer, **kwargs)

    def export(self, **kwargs):
        """Ultralytics' exporter; end-to-end heads export NMS-free; TensorRT (``format="engine"``) fails with one clear line where it cannot run."""
        import importlib.util

        import torch

        _check_format(kwargs.get("format", "torchscript"))
        check_args(kwargs, "export")
        if kwargs.get("data") or str(kwargs.get("quantize", "")).lower() in ("8", "int8", "w8a16", "w8a8") \
                or kwargs.get("int8"):
            kwargs["data"] = _checked_data(kwargs.get("data"))  # INT8 calibration images
        if str(kwargs.get("format", "")).lower() in ("engine", "tensorrt", "trt"):
            if importlib.util.find_spec("tensorrt") is None:
                raise UserError("format=engine needs the 'tensorrt' package (pip install tensorrt) and an NVIDIA GPU; "
                                "export format=onnx instead and build the engine with trtexec where TensorRT exists")
            if not torch.cuda.is_available():
                raise UserError("format=engine needs a CUDA GPU; none is visible (device=cpu cannot build engines)")
        if ultra.is_end2end(self.model) and "nms" not in kwargs:
            kwargs["nms"] = False  # keep the YOLO26-style one-to-one head: the export is NMS-free
        from .runtime import no_telemetry

        with no_telemetry():  # OpenVINO's converter would send usage telemetry
            path = super().export(**kwargs)
        if str(kwargs.get("format", "")).lower() == "onnx" and kwargs.get("half"):
            toposort_onnx(path)  # the CPU fp16 converter appends its input casts last; TensorRT parses in order
        return path

    @property
    def nas_info(self) -> dict | None:
        """The ``ultranas`` entry of the checkpoint: space, genotype, hash, objectives, source run."""
        ckpt = getattr(self, "ckpt", None) or {}
        return ckpt.get("ultranas")
