"""Runners for the deploy runtimes users ship to on CPUs: OpenVINO (fp32 and NNCF INT8) and ncnn.

Each converts the prepared module through the converter Ultralytics' exporter uses (``ultra.openvino_model``,
``ultra.ncnn_files``), compiles it with a fixed thread count and returns a ``run()`` of one inference.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import torch

from .. import ultra


def _flat_numpy(args) -> list:
    return [t.numpy() for t in ultra.FlatInputs.flatten(args)]


def openvino_runner(int8: bool) -> Callable:
    """``run()`` of an OpenVINO CPU model: fp32 inference precision (no bf16 even where the CPU has it), one stream,
    latency hint, ``threads`` inference threads; ``int8``: NNCF post-training INT8 as ``export(int8=True)``."""

    def make(module: torch.nn.Module, args: tuple, threads: int) -> Callable[[], object]:
        import openvino as ov

        model = ultra.openvino_model(module, args, int8=int8)
        config = {"INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32", "ENABLE_HYPER_THREADING": False}
        request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
        feeds = _flat_numpy(args)
        return lambda: request.infer(feeds)
    return make


def ncnn_runner(module: torch.nn.Module, args: tuple, threads: int) -> Callable[[], object]:
    """``run()`` of the ncnn model PNNX converts ``module`` to: fp32 storage and arithmetic, ``threads`` threads."""
    import ncnn

    with tempfile.TemporaryDirectory() as folder:
        param, weights = ultra.ncnn_files(module, args, folder)
        net = ncnn.Net()
        net.opt.num_threads = int(threads)
        for fp16 in ("packed", "storage", "arithmetic"):  # fp32 throughout, as the other runtimes time it
            setattr(net.opt, f"use_fp16_{fp16}", False)
        if net.load_param(str(param)) or net.load_model(str(weights)):
            raise RuntimeError("ncnn could not load the PNNX conversion of this design")
    inputs = [ncnn.Mat(a[0]).clone() for a in _flat_numpy(args)]  # ncnn takes one image (C, H, W), batch 1
    names_in, names_out = net.input_names(), net.output_names()

    def run():
        ex = net.create_extractor()
        for name, mat in zip(names_in, inputs, strict=True):
            ex.input(name, mat)
        return [ex.extract(name)[1] for name in names_out]
    return run
