"""Latency targets by name: where a design is timed (CPU: torch, ONNX Runtime, OpenVINO fp32/INT8, ncnn; CUDA,
TensorRT), and the host fingerprint.

Add a target with :func:`register_target` (a :class:`LatencyTarget` with a new name); ``--latency-target`` and its
help are read from :data:`TARGETS`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import torch

from .. import ultra
from ..errors import UserError
from ..registry import Registry
from ._runtimes import ncnn_runner, openvino_runner


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith(("model name", "hardware")))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _fingerprint() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "available_cores": cores, "machine": platform.machine(),
            "torch": torch.__version__, "onnxruntime": _version("onnxruntime"), "tensorrt": _version("tensorrt"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    info["id"] = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:10]
    return json.dumps(info)


def host_fingerprint() -> dict:
    """CPU model, cores, GPU, torch/onnxruntime/tensorrt versions, and ``id``: a short hash of all of them."""
    return json.loads(_fingerprint())


def default_threads() -> int:
    """Threads used when none are given: 1, the most repeatable on a busy machine and comparable across hosts."""
    return 1


DEPLOY_PACKAGES = ("openvino", "nncf", "ncnn", "pnnx")  # the 'deploy' extra


# -- targets ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyTarget:
    """A deployment target: what it needs, and how to make a ``run()`` for a module and its inputs."""

    name: str
    description: str
    device: str  # "cpu" or "cuda"
    export: bool  # prepare the model as for export (C2f split forward, Detect export mode)
    half: bool  # cast model and input to fp16
    needs: tuple[str, ...]  # packages to import, and "cuda"
    runner: Callable[[torch.nn.Module, tuple, int], Callable[[], object]]

    def check(self) -> None:
        """Raise one clear ``UserError`` if this machine cannot run the target."""
        for need in self.needs:
            if need == "cuda" and not torch.cuda.is_available():
                raise UserError(f"latency target '{self.name}' needs a CUDA GPU, and torch sees none on this "
                                "machine; use --latency-target onnxruntime-cpu or torch-cpu")
            if need != "cuda" and importlib.util.find_spec(need) is None:
                how = "pip install 'ultranas[deploy]'" if need in DEPLOY_PACKAGES else f"pip install {need}"
                raise UserError(f"latency target '{self.name}' needs the {need} package, which is not installed "
                                f"({how}); use --latency-target onnxruntime-cpu or torch-cpu instead")


def onnx_bytes(module: torch.nn.Module, args: tuple, opset: int = 17) -> tuple[bytes, list[str]]:
    """Static-shape ONNX of ``module(*args)`` in memory (TorchScript exporter); returns (model, input names)."""
    names = [f"in{i}" for i in range(len(ultra.FlatInputs.flatten(args)))]
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, opset_version=opset, dynamo=False, do_constant_folding=True,
                          input_names=names)
    return buf.getvalue(), names


def _torch_runner(module: torch.nn.Module, args: tuple, threads: int) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return module(*args)
    return run


def _ort_runner(module: torch.nn.Module, args: tuple, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    model, names = onnx_bytes(module, args)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own errors (Fail, InvalidGraph ...) are not RuntimeErrors: the design's
        raise RuntimeError(f"onnxruntime cannot load the design: {str(e).strip()[:300]}") from e
    wanted = {i.name for i in session.get_inputs()}
    feeds = {n: t.numpy() for n, t in zip(names, ultra.FlatInputs.flatten(args), strict=True) if n in wanted}  # unused inputs are pruned

    def run():
        try:
            return session.run(None, feeds)
        except Exception as e:
            raise RuntimeError(f"onnxruntime cannot run the design: {str(e).strip()[:300]}") from e
    return run


def _cuda_runner(compiled: bool) -> Callable:
    def make(module: torch.nn.Module, args: tuple, threads: int) -> Callable[[], object]:
        fn = torch.compile(module, mode="reduce-overhead") if compiled else module

        def run():
            with torch.no_grad():
                out = fn(*args)
            torch.cuda.synchronize()
            return out
        return run
    return make


def _trt_runner(module: torch.nn.Module, args: tuple, threads: int) -> Callable[[], object]:
    """Build an fp16 TensorRT engine from the ONNX export and run it on CUDA buffers (not tested in CI: no GPU)."""
    import numpy as np
    import tensorrt as trt

    model, names = onnx_bytes(module, args)  # fp32 graph; the FP16 builder flag picks half-precision kernels
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        raise RuntimeError(f"TensorRT could not parse the ONNX export: {parser.get_error(0)}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build an engine for this design")
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    inputs = dict(zip(names, ultra.FlatInputs.flatten(args), strict=True))
    buffers = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        buf = inputs[name].to("cuda", dtype) if name in inputs else torch.empty(
            tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, buf.data_ptr())
        buffers.append(buf)
    stream = torch.cuda.Stream()

    def run():
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return buffers
    return run


TARGETS = Registry("latency target", group="latency_targets")


def register_target(target: LatencyTarget) -> LatencyTarget:
    """Add ``target`` to :data:`TARGETS` under ``target.name`` (which must be new)."""
    return TARGETS.register(target.name, target)


for _target in (
    LatencyTarget("torch-cpu", "eager PyTorch on CPU, Conv+BN fused, fp32", "cpu", False, False, (), _torch_runner),
    LatencyTarget("onnxruntime-cpu", "ONNX (opset 17, static shape) on onnxruntime's CPU provider, fp32", "cpu",
                  True, False, ("onnxruntime",), _ort_runner),
    LatencyTarget("openvino-cpu", "OpenVINO on CPU (Ultralytics' converter), fp32 precision, latency hint", "cpu",
                  True, False, ("openvino",), openvino_runner(False)),
    LatencyTarget("openvino-cpu-int8", "OpenVINO on CPU, NNCF post-training INT8 as export(int8=True)", "cpu",
                  True, False, ("openvino", "nncf"), openvino_runner(True)),
    LatencyTarget("ncnn-cpu", "ncnn on CPU through PNNX (Ultralytics' converter), fp32, batch 1", "cpu", True,
                  False, ("ncnn", "pnnx"), ncnn_runner),
    LatencyTarget("torch-cuda-fp16", "eager PyTorch on the GPU, fused, fp16", "cuda", False, True, ("cuda",),
                  _cuda_runner(False)),
    LatencyTarget("torch-cuda-fp16-compiled", "torch.compile (reduce-overhead) on the GPU, fused, fp16", "cuda",
                  False, True, ("cuda",), _cuda_runner(True)),
    LatencyTarget("tensorrt", "TensorRT fp16 engine built from the ONNX export", "cuda", True, False,
                  ("tensorrt", "cuda"), _trt_runner),
):
    register_target(_target)


@cache
def runtime_tag(name: str) -> str:
    """``@<package versions>`` for targets that run on a deploy runtime (OpenVINO, NNCF, ncnn, PNNX), so their cached
    timings follow the runtime's version; empty for the others (whose versions are in the host fingerprint)."""
    needs = [n for n in TARGETS.lookup(name).needs if n in DEPLOY_PACKAGES]
    return "@" + ",".join(f"{n}{_version(n)}" for n in needs) if needs else ""


def default_target() -> str:
    """``torch-cuda-fp16`` where torch sees a GPU, else ``onnxruntime-cpu``."""
    return "torch-cuda-fp16" if torch.cuda.is_available() else "onnxruntime-cpu"


def get_target(name: str | None = None) -> LatencyTarget:
    """The target called ``name`` (default: :func:`default_target`), checked to be usable on this machine."""
    target = TARGETS.lookup(name or default_target())
    target.check()
    return target
