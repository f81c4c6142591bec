"""Per-layer lookup-table latency predictor: a design's latency as a fitted map of the sum of its layers' times.

Each layer of a built ``DetectionModel`` is keyed by its structure (module classes, their settings and parameter
shapes) plus the input shapes it really sees, captured with forward hooks on one forward pass. Layers not yet in the
table are timed alone, once, on ``profile_target``, and the design's latency is predicted as
``scale * sum(layer times) + offset``, fitted by least relative squares against measured latencies of a few
calibration designs (:meth:`LatencyLUT.calibrate`).

``profile_target`` defaults to the target itself on CPU (for ``onnxruntime-cpu`` each layer is exported and run
alone through onnxruntime, about 50 ms per new layer) and to ``torch-cuda-fp16`` for GPU targets (a TensorRT engine
or a compile per layer would take seconds). Profiling with ``torch-cpu`` and mapping linearly to
``onnxruntime-cpu`` is faster but was measured at ~16 % MAPE (yolo space, imgsz 160), against ~6 % for per-layer
onnxruntime: eager PyTorch and onnxruntime rank layer types differently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .. import ultra
from ..errors import UserError
from ..fsutil import atomic_write_json
from ._targets import default_threads, get_target, host_fingerprint
from ._timing import example_input, fixed_threads, measure_latency, prepare_model, time_runs

_SIMPLE = (bool, int, float, str, type(None))
_SKIP_ATTRS = {"i", "f", "training", "shape", "np"}  # layer position and runtime caches do not change its cost


def _simple(v) -> bool:
    return isinstance(v, _SIMPLE) or (isinstance(v, (tuple, list)) and all(_simple(x) for x in v))


def layer_signature(layer: torch.nn.Module, inputs) -> str:
    """A 16-hex key of a layer's structure and its input shapes (not its position or weights)."""
    parts = []
    for name, m in layer.named_modules():
        attrs = {k: v for k, v in vars(m).items() if not k.startswith("_") and k not in _SKIP_ATTRS and _simple(v)}
        if "forward" in vars(m):  # fused / split forwards are instance attributes
            attrs["forward"] = getattr(m.forward, "__name__", "forward")
        params = [list(p.shape) for p in m.parameters(recurse=False)]
        parts.append([name, type(m).__name__, sorted(attrs.items()), params])
    parts.append(_shapes(inputs))
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _shapes(x):
    return [_shapes(t) for t in x] if isinstance(x, (list, tuple)) else list(x.shape)


def _detach(x):
    return [_detach(t) for t in x] if isinstance(x, (list, tuple)) else x.detach().clone()


class LatencyLUT:
    """Latency predictor from a per-layer lookup table for one target, input size, batch and thread count.

    Args:
        target: the latency target predicted (see ``TARGETS``).
        imgsz: input size of the designs.
        threads: CPU threads while profiling and measuring; default ``default_threads()``.
        profile_target: where single layers are timed (see the module docstring).
        batch: images per call.
    """

    version = 1

    def __init__(self, target: str | None = None, imgsz: int = 640, threads: int | None = None,
                 profile_target: str | None = None, batch: int = 1, warmup: int = 3, repeats: int = 15):
        tgt = get_target(target)
        self.target, self.imgsz, self.batch = tgt.name, int(imgsz), int(batch)
        self.threads = int(threads or default_threads())
        self.profile_target = get_target(profile_target or (tgt.name if tgt.device == "cpu" else
                                                            "torch-cuda-fp16")).name
        self.warmup, self.repeats = warmup, repeats
        self.table: dict[str, dict] = {}
        self.scale, self.offset = 1.0, 0.0
        self.calibration: dict = {}
        self.profiled = 0  # layers timed by this instance (the rest came from the table)

    # -- layers -------------------------------------------------------------------------------------------------
    def _layers(self, model_dict: dict) -> list[tuple[str, torch.nn.Module, object]]:
        """(signature, layer, captured input) for every layer of the design, from one hooked forward pass."""
        ptgt = get_target(self.profile_target)
        model = prepare_model(model_dict, ptgt)
        x = example_input(self.imgsz, self.batch)
        if ptgt.device == "cuda":
            model, x = model.to("cuda").half(), x.to("cuda").half()
        layers = list(model.model)
        sigs: list[str | None] = [None] * len(layers)
        seen: list[object] = [None] * len(layers)

        def hook(i):
            def fn(module, args):
                seen[i] = _detach(args[0])
                sigs[i] = layer_signature(module, seen[i])
            return fn

        handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(layers)]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
        ultra.reset_head_cache(model)  # forget what the hooked pass cached, so profiling starts where a run does
        return [(s, m, inp) for s, m, inp in zip(sigs, layers, seen, strict=True) if s is not None]

    def _profile(self, layer: torch.nn.Module, inp) -> float:
        run = get_target(self.profile_target).runner(layer, (inp,), self.threads)
        first, _ = time_runs(run, self.warmup, 3)
        inner = max(1, min(50, int(0.5 / max(min(first), 1e-3))))  # samples of >= ~0.5 ms for timer precision
        return float(np.median(time_runs(run, 0, self.repeats, max_time_s=1.0, inner=inner)[0]))

    def layer_times(self, model_dict: dict) -> list[float]:
        """Each layer's time in ms (profiling the layers not yet in the table)."""
        with fixed_threads(self.threads):
            layers = self._layers(model_dict)
            for sig, layer, inp in layers:
                if sig not in self.table:
                    self.table[sig] = {"ms": self._profile(layer, inp), "type": type(layer).__name__,
                                       "in": _shapes(inp)}
                    self.profiled += 1
        return [self.table[sig]["ms"] for sig, _, _ in layers]

    def layer_sum(self, model_dict: dict) -> float:
        return float(sum(self.layer_times(model_dict)))

    def predict(self, model_dict: dict) -> float:
        """Predicted median latency in ms on the target: ``scale * layer_sum + offset``."""
        return self.scale * self.layer_sum(model_dict) + self.offset

    # -- calibration --------------------------------------------------------------------------------------------
    def calibrate(self, model_dicts: list[dict], measured: list[float] | None = None, **measure_kw) -> dict:
        """Fit ``scale`` and ``offset`` to the target's latency of ``model_dicts`` (measured here unless given).

        Least squares on relative error, so the fit minimizes percentage error. Scale and offset are both fitted
        only when the designs' layer sums span at least 1.5x; designs too alike to tell them apart fit the offset
        alone (layers profiled on the target itself) or the scale alone (profiled elsewhere).
        Returns the fit and its MAPE on the calibration designs.
        """
        if not model_dicts:
            raise UserError("latency LUT calibration needs at least one design")
        if measured is None:
            measured = [measure_latency(md, self.imgsz, self.target, threads=self.threads, batch=self.batch,
                                        **measure_kw)["median_ms"] for md in model_dicts]
        sums = np.array([self.layer_sum(md) for md in model_dicts])
        y = np.asarray(measured, dtype=float)
        w = 1.0 / y  # relative error weights
        if len(y) >= 2 and sums.max() >= 1.5 * sums.min():
            (scale, offset), *_ = np.linalg.lstsq(np.stack([sums * w, w], axis=1), np.ones_like(y), rcond=None)
        elif self.profile_target == self.target:
            scale, offset = 1.0, np.sum(w * w * (y - sums)) / np.sum(w * w)
        else:
            scale, offset = np.sum(w * w * sums * y) / np.sum(w * w * sums * sums), 0.0
        self.scale, self.offset = float(scale), float(offset)
        pred = self.scale * sums + self.offset
        self.calibration = {"designs": len(y), "scale": self.scale, "offset": self.offset,
                            "mape": float(np.mean(np.abs(pred - y) / y))}
        return dict(self.calibration)

    # -- persistence --------------------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"target": self.target, "profile_target": self.profile_target, "imgsz": self.imgsz,
                "batch": self.batch, "threads": self.threads, "host": host_fingerprint()["id"]}

    def to_dict(self) -> dict:
        return {"version": self.version, **self._meta(), "scale": self.scale, "offset": self.offset,
                "calibration": self.calibration, "layers": self.table}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, check_host: bool = True) -> LatencyLUT:
        """A saved table; refused (UserError) if it was made on another host, unless ``check_host=False``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"latency table {path} cannot be read: {e}") from None
        if not isinstance(data, dict) or data.get("version") != cls.version or not isinstance(data.get("layers"), dict):
            raise UserError(f"{path} is not an ultranas latency table (version {cls.version})")
        lut = cls(data["target"], data["imgsz"], data["threads"], data["profile_target"], data["batch"])
        if check_host and data.get("host") != host_fingerprint()["id"]:
            raise UserError(f"latency table {path} was profiled on another host ({data.get('host')}); "
                            "profile again here, or load with check_host=False")
        lut.table = data["layers"]
        lut.scale, lut.offset = float(data["scale"]), float(data["offset"])
        lut.calibration = data.get("calibration", {})
        return lut
