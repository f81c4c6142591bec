"""``NAS``: a searched design as an Ultralytics model — predict, val, train, export, like ``YOLO``."""

from __future__ import annotations

from pathlib import Path

from . import runtime  # noqa: F401
from .errors import UserError

from ultralytics.engine.model import Model  # noqa: E402
from ultralytics.models import yolo  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402


SAFE_ACTIVATIONS = {None, "nn.SiLU()", "nn.ReLU()", "nn.ReLU6()", "nn.Hardswish()", "nn.LeakyReLU(0.1)", "nn.GELU()"}
STRUCTURAL = {"Concat", "Detect", "nn.Upsample"}


def check_model_yaml(path: Path) -> None:
    """Refuse a model YAML that names modules outside the allow-list or an activation that is not plain."""
    from .space import ALLOWED_MODULES, load_model_yaml

    model = load_model_yaml(path)
    act = model.get("activation")
    if act not in SAFE_ACTIVATIONS:
        raise UserError(f"{path}: activation {str(act)[:60]!r} is not allowed (use one of "
                        f"{', '.join(sorted(a for a in SAFE_ACTIVATIONS if a))}); it would be evaluated as code")
    for i, row in enumerate(model.get("backbone", []) + model.get("head", [])):
        if not isinstance(row, list) or len(row) != 4:
            raise UserError(f"{path}: layer {i} must be [from, repeats, module, args]")
        if row[2] not in ALLOWED_MODULES | STRUCTURAL:
            raise UserError(f"{path}: layer {i} names module {str(row[2])[:60]!r}, which is not an allowed "
                            "Ultralytics detection module")


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


class NAS(Model):
    """A detector found by ultranas (``found_n.pt``) or any rendered design (``model.yaml``), trainable from scratch.

    Examples:
        >>> model = NAS("found_n.pt")
        >>> model.predict("image.jpg")
        >>> model.nas_info["genotype"]
    """

    def __init__(self, model: str | Path = "found_n.pt", task: str = "detect", verbose: bool = False):
        path = Path(str(model))
        if path.suffix == ".pt":
            from .ultra import load_checkpoint

            load_checkpoint(path)  # one clear line for missing, corrupt, unsafe or non-detection files
        elif path.suffix in (".yaml", ".yml"):
            check_model_yaml(path)
        elif path.suffix not in (".onnx", ".torchscript", ".engine") and not path.is_dir():
            raise UserError(f"unsupported model file {path}: give a .pt checkpoint or a model .yaml")
        if task != "detect":
            raise UserError(f"NAS models are detectors; task '{task}' is not supported")
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

    def export(self, **kwargs):
        """Ultralytics' exporter; end-to-end heads export NMS-free; TensorRT (``format="engine"``) fails with one clear line where it cannot run."""
        import importlib.util

        import torch

        if str(kwargs.get("format", "")).lower() in ("engine", "tensorrt", "trt"):
            if importlib.util.find_spec("tensorrt") is None:
                raise UserError("format=engine needs the 'tensorrt' package (pip install tensorrt) and an NVIDIA GPU; "
                                "export format=onnx instead and build the engine with trtexec where TensorRT exists")
            if not torch.cuda.is_available():
                raise UserError("format=engine needs a CUDA GPU; none is visible (device=cpu cannot build engines)")
        head = self.model.model[-1] if hasattr(self.model, "model") else None
        if getattr(head, "one2one_cv2", None) is not None and "nms" not in kwargs:
            kwargs["nms"] = False  # keep the YOLO26-style one-to-one head: the export is NMS-free
        path = super().export(**kwargs)
        if str(kwargs.get("format", "")).lower() == "onnx" and kwargs.get("half"):
            toposort_onnx(path)  # the CPU fp16 converter appends its input casts last; TensorRT parses in order
        return path

    @property
    def nas_info(self) -> dict | None:
        """The ``ultranas`` entry of the checkpoint: space, genotype, hash, objectives, source run."""
        ckpt = getattr(self, "ckpt", None) or {}
        return ckpt.get("ultranas")
