"""``NAS``: a searched design as an Ultralytics model — predict, val, train, export, like ``YOLO``."""

from __future__ import annotations

import math
from pathlib import Path

from . import ultra
from .errors import UserError

SAFE_ACTIVATIONS = {None, "nn.SiLU()", "nn.ReLU()", "nn.ReLU6()", "nn.Hardswish()", "nn.LeakyReLU(0.1)", "nn.GELU()"}
STRUCTURAL = {"Concat", "Detect", "nn.Upsample"}


def _bad(path, what) -> UserError:
    return UserError(f"model YAML {path}: {what}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_model_yaml(path: Path) -> None:
    """Refuse a model YAML that names modules outside the allow-list, an activation that is not plain, or values of
    the wrong type (each problem one line naming the file and the key or layer)."""
    from .space import ALLOWED_MODULES, load_model_yaml

    path = Path(path)
    if path.is_dir():
        raise UserError(f"model YAML {path} is a folder, not a file")
    try:
        model = load_model_yaml(path)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"model YAML {path} cannot be read: {str(e).splitlines()[0][:120]}") from None
    act = model.get("activation")
    if not isinstance(act, (str, type(None))) or act not in SAFE_ACTIVATIONS:
        raise UserError(f"{path}: activation {str(act)[:60]!r} is not allowed (use one of "
                        f"{', '.join(sorted(a for a in SAFE_ACTIVATIONS if a))}); it would be evaluated as code")
    if "nc" in model and not (isinstance(model["nc"], int) and not isinstance(model["nc"], bool) and model["nc"] >= 1):
        raise _bad(path, f"'nc' must be a positive integer, got {str(model['nc'])[:40]!r}")
    for key in ("depth_multiple", "width_multiple", "max_channels"):
        if key in model and not (_number(model[key]) and model[key] > 0):
            raise _bad(path, f"'{key}' must be a positive number")
    scales = model.get("scales")
    if scales is not None and not (isinstance(scales, dict) and all(
            isinstance(v, list) and len(v) == 3 and all(_number(x) and x > 0 for x in v) for v in scales.values())):
        raise _bad(path, "'scales' must map scale names to [depth, width, max_channels] positive numbers")
    for part in ("backbone", "head"):
        if not isinstance(model[part], list):
            raise _bad(path, f"'{part}' must be a list of layers [from, repeats, module, args]")
    for i, row in enumerate(model["backbone"] + model["head"]):
        if not isinstance(row, list) or len(row) != 4:
            raise UserError(f"{path}: layer {i} must be [from, repeats, module, args]")
        src, repeats, module, args = row
        if not (_index(src) or (isinstance(src, list) and src and all(_index(f) for f in src))):
            raise _bad(path, f"layer {i}: 'from' must be a layer index or a list of them, got {str(src)[:40]!r}")
        if not (isinstance(repeats, int) and not isinstance(repeats, bool) and 1 <= repeats <= 64):
            raise _bad(path, f"layer {i}: repeats must be an integer in [1, 64], got {str(repeats)[:40]!r}")
        if not isinstance(module, str) or module not in ALLOWED_MODULES | STRUCTURAL:
            raise UserError(f"{path}: layer {i} names module {str(module)[:60]!r}, which is not an allowed "
                            "Ultralytics detection module")
        if not isinstance(args, list) or not all(_plain_arg(a) for a in args):
            raise _bad(path, f"layer {i}: args must be a list of numbers, booleans, null or short names")


def _index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -1000 < v < 1000


def _plain_arg(a) -> bool:
    """A layer argument Ultralytics reads without surprises: a finite number, bool, null, or a short plain name
    (``nearest``, ``nc``; parse_model reads strings with ``ast.literal_eval``, never ``eval``), or a list of them."""
    if isinstance(a, list):
        return all(_plain_arg(x) for x in a)
    if isinstance(a, str):
        return len(a) <= 32 and a.replace("_", "").isalnum()
    return a is None or isinstance(a, bool) or _number(a)


def check_args(kwargs: dict) -> None:
    """Ultralytics' own argument names and types, checked up front, plus image size, split and device: one line
    instead of Ultralytics' error and CLI help."""
    ultra.check_args(kwargs)
    imgsz = kwargs.get("imgsz")
    sizes = imgsz if isinstance(imgsz, list) else [imgsz]
    if imgsz is not None and not (1 <= len(sizes) <= 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in sizes)):
        raise UserError(f"imgsz must be a positive whole number (or [h, w]) up to 16384, got {str(imgsz)[:40]}")
    if kwargs.get("split") is not None and kwargs["split"] not in ("train", "val", "test"):
        raise UserError(f"split must be train, val or test, got {str(kwargs['split'])[:40]!r}")
    _check_device(kwargs.get("device"))


def _check_device(device) -> None:
    import torch

    text = str(device).strip().lower().replace("cuda:", "") if device is not None else ""
    if text in ("", "cpu", "mps", "none"):
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
        loaded = yaml.safe_load(Path(str(cfg)).read_bytes().decode("utf-8"))
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
        check_args(kwargs)
        _check_source(source)
        if kwargs.get("data"):
            kwargs["data"] = _checked_data(kwargs["data"])
        return super().predict(source, stream, predictor, **kwargs)

    def val(self, validator=None, **kwargs):
        """Ultralytics' validator on the checked copy of the data YAML (a ``download:`` in it is never run)."""
        check_args(kwargs)
        kwargs["data"] = _checked_data(kwargs.get("data") or self.overrides.get("data"), kwargs.get("split") or "val")
        return super().val(validator, **kwargs)

    def train(self, trainer=None, **kwargs):
        """Ultralytics' trainer on the checked copy of the data YAML (a ``download:`` in it is never run)."""
        check_args(kwargs)
        data = kwargs.get("data") or _cfg_file(kwargs.get("cfg")).get("data") or self.overrides.get("data")
        kwargs["data"] = _checked_data(data)
        return super().train(trainer, **kwargs)

    def export(self, **kwargs):
        """Ultralytics' exporter; end-to-end heads export NMS-free; TensorRT (``format="engine"``) fails with one clear line where it cannot run."""
        import importlib.util

        import torch

        _check_format(kwargs.get("format", "torchscript"))
        check_args(kwargs)
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
