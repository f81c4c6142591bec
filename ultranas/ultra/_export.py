"""Ultralytics' OpenVINO and ncnn converters, for timing a module as ``NAS.export`` would deploy it.

``NAS.export(format="openvino"|"ncnn")`` runs Ultralytics' exporter, which calls these same converters
(``torch2openvino`` with NNCF post-training INT8, ``torch2ncnn`` through PNNX) on the prepared model; the latency
targets call them on a prepared model or a single layer, so what is timed is what a user ships.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path

from ..runtime import no_telemetry, setup

setup()

import torch
from ultralytics.nn.modules import Detect

_CWD_LOCK = threading.Lock()  # PNNX writes debug files into the current folder: one conversion at a time


class FlatInputs(torch.nn.Module):
    """``module(*structure)`` called with flat tensors: converters trace positional tensors, layers take lists."""

    def __init__(self, module: torch.nn.Module, example):
        super().__init__()
        self.module, self.example = module, example

    @staticmethod
    def flatten(x) -> list[torch.Tensor]:
        return [t for a in x for t in FlatInputs.flatten(a)] if isinstance(x, (list, tuple)) else [x]

    def _rebuild(self, like, flat: list):
        if isinstance(like, (list, tuple)):
            return type(like)(self._rebuild(a, flat) for a in like)
        return flat.pop(0)

    def forward(self, *flat):
        return self.module(*self._rebuild(self.example, list(flat)))


def _prepared(module: torch.nn.Module, args: tuple) -> tuple[FlatInputs, tuple]:
    """The flat module and inputs, after two dry runs as Ultralytics' exporter does (the head caches its anchors,
    so the traced graph holds them as constants)."""
    flat, im = FlatInputs(module, args).eval(), tuple(FlatInputs.flatten(args))
    with torch.no_grad():
        for _ in range(2):
            flat(*im)
    return flat, im


@contextlib.contextmanager
def _quiet_fds():
    """Silence stdout/stderr at the file-descriptor level (PNNX and NNCF print from C++ and rich)."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        try:
            os.dup2(null.fileno(), 1), os.dup2(null.fileno(), 2)
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def _converting(what: str, quiet: bool = True):
    """A converter's block: OpenVINO's telemetry off, its output silenced (unless ``quiet`` is off), and a failure
    raised as ``RuntimeError`` (NNCF and OpenVINO raise their own types), so the design fails alone."""
    try:
        with no_telemetry(), _quiet_fds() if quiet else contextlib.nullcontext():
            yield
    except (KeyboardInterrupt, RuntimeError, MemoryError):
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise RuntimeError(f"{what} failed: {type(e).__name__}: {first}") from e


def openvino_model(module: torch.nn.Module, args: tuple, int8: bool = False, calibration: list | None = None):
    """An ``openvino.Model`` of ``module(*args)`` through Ultralytics' ``torch2openvino``; with ``int8``, quantised
    by NNCF (mixed preset, the Detect head's decoding kept in float as Ultralytics does) on ``calibration``: a list
    of input tuples like ``args`` (default: ``args`` itself; the graph, hence the latency, does not depend on it)."""
    import logging

    from ultralytics.utils.export.openvino import torch2openvino

    flat, im = _prepared(module, args)
    dataset = None
    if int8:
        with no_telemetry():  # NNCF builds its telemetry client (which writes ~/intel) at import
            import nncf

        logging.getLogger("nncf").setLevel(logging.ERROR)
        samples = [tuple(t.numpy() for t in FlatInputs.flatten(a)) for a in (calibration or [args])]
        dataset = nncf.Dataset(samples, lambda s: s if len(s) > 1 else s[0])
    is_detector = isinstance(module, Detect) or isinstance(getattr(module, "model", [None])[-1], Detect)
    with _converting("OpenVINO conversion"):
        return torch2openvino(flat, im if len(im) > 1 else im[0], quantize=8 if int8 else None,
                              calibration_dataset=dataset, int8_detect=is_detector)


def ncnn_files(module: torch.nn.Module, args: tuple, out_dir: str | Path) -> tuple[Path, Path]:
    """``(model.ncnn.param, model.ncnn.bin)`` of ``module(*args)`` in ``out_dir`` through Ultralytics' ``torch2ncnn``
    (PNNX, fp32 weights)."""
    from ultralytics.utils.export.ncnn import torch2ncnn

    out_dir = Path(out_dir).resolve()
    flat, im = _prepared(module, args)
    with _CWD_LOCK, tempfile.TemporaryDirectory() as scratch, _converting("ncnn conversion"):
        old = os.getcwd()
        os.chdir(scratch)  # PNNX's debug files land here, not in the user's folder
        try:
            torch2ncnn(flat, im if len(im) > 1 else im[0], out_dir, quantize=None)
        finally:
            os.chdir(old)
    return out_dir / "model.ncnn.param", out_dir / "model.ncnn.bin"


def int8_openvino_metrics(weights: str | Path, data: str | Path, imgsz: int, calib_fraction: float = 1.0,
                          val_batch: int = 16, single_cls: bool = False, verbose: bool = False) -> dict:
    """mAP50-95 of a trained checkpoint in fp32 (PyTorch) and as shipped in INT8 (``export(format="openvino",
    int8=True)``: NNCF calibrated on ``calib_fraction`` of the *training* split, then Ultralytics' validator on the
    OpenVINO model, which Ultralytics runs at the CPU's default precision: bf16 for the float parts on AMX CPUs),
    both on the val split at ``imgsz`` with the same square letterbox (``rect=False``: the static INT8 model only
    takes that). Everything is written in a temporary folder.

    Returns ``int8_fp32_map``, ``int8_fp32_map50`` (the same weights in fp32), ``int8_map``, ``int8_map50``,
    ``int8_drop`` (fp32 - INT8 mAP50-95) and the seconds spent (``int8_s``)."""
    import shutil
    import time

    from ._train import DetectionTask, box_metrics, ultralytics_verbosity

    t0 = time.time()
    common = dict(data=str(data), imgsz=int(imgsz), device="cpu", plots=False, workers=0, split="val",
                  verbose=verbose, conf=0.001, rect=False, single_cls=bool(single_cls))
    with tempfile.TemporaryDirectory() as tmp, ultralytics_verbosity(verbose), \
            _converting("INT8 export and validation", quiet=not verbose):
        local = Path(tmp) / "model.pt"
        shutil.copy(weights, local)
        fp32 = box_metrics(DetectionTask(local).val(batch=val_batch, project=tmp, name="fp32", **common))
        exported = DetectionTask(local).export(format="openvino", int8=True, data=str(data), imgsz=int(imgsz),
                                               split="train", fraction=float(calib_fraction), batch=1, device="cpu")
        int8 = box_metrics(DetectionTask(exported).val(batch=1, project=tmp, name="int8", **common))
    return {"int8_fp32_map": fp32["map"], "int8_fp32_map50": fp32["map50"], "int8_map": int8["map"],
            "int8_map50": int8["map50"], "int8_drop": fp32["map"] - int8["map"], "int8_s": round(time.time() - t0, 2)}
