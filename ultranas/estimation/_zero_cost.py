"""Zero-cost proxies: rank detector designs at initialisation, without training.

Each proxy is ``proxy(model, batch, seed=0) -> float`` (higher is better) on a freshly built ``DetectionModel`` and
one Ultralytics batch dict (``img`` float 0-1 BCHW, ``cls``, ``bboxes`` normalised xywh, ``batch_idx``). Proxies
that change weights work on a copy, so one model can be scored by several proxies. Described in ``docs/zero_cost.md``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .. import ultra
from ..data import load_data_yaml, resolve_data
from ..errors import UserError
from ..objectives._base import Candidate
from ..registry import Registry
from ._base import Estimator
from ._images import load_batches
from ._torch import seeded

ZERO_COST_PROXIES = Registry("zero-cost proxy")
MAE_SCALE_WEIGHTS = {4: 1.0, 8: 1.0, 16: 1.0, 32: 6.0}  # by stride: MAE-DET's {0, 0, 1, 1, 6} for C1..C5; P2 as P3
MAE_BATCH = 2  # Gaussian images per entropy forward: C*H*W values per image already pin the std down


def register_proxy(name: str) -> Callable:
    """Decorator: add ``fn(model, batch, seed=0) -> float`` (higher is better) to :data:`ZERO_COST_PROXIES` under
    ``name``; ``--proxy`` and ``calibrate --estimators zero-cost:<name>`` then accept it."""
    return lambda fn: ZERO_COST_PROXIES.register(name, fn)


register = register_proxy  # the former name (docs/zero_cost.md)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _finite(value: float, proxy: str, why: str) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"zero-cost proxy '{proxy}' gave {value}: {why}")
    return float(value)


# -- baselines ----------------------------------------------------------------------------------------------------
@register_proxy("params")
def params_proxy(model: nn.Module, batch: dict, seed: int = 0) -> float:
    """log(parameter count): the baseline every proxy must beat."""
    return _finite(math.log(max(ultra.count_params(model), 1)), "params", "model has no parameters")


@register_proxy("gflops")
def gflops_proxy(model: nn.Module, batch: dict, seed: int = 0) -> float:
    """log(GFLOPs) at the batch's image size (Ultralytics' own count)."""
    flops = ultra.gflops(model, int(batch["img"].shape[-1]))
    return _finite(math.log(flops) if flops > 0 else -math.inf, "gflops", "FLOP count failed (is thop installed?)")


# -- MAE-NAS entropy ----------------------------------------------------------------------------------------------
def _gaussian_bn_free(model: nn.Module) -> nn.Module:
    """A double-precision copy with N(0, 1) conv/linear weights, zero biases and every BatchNorm an identity."""
    net = copy.deepcopy(model).double().eval().requires_grad_(False)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, std=1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()  # running mean 0, var 1, weight 1, bias 0
            m.eps = 0.0  # -> exactly x
    return net


@register_proxy("mae_entropy")
def mae_entropy(model: nn.Module, batch: dict, seed: int = 0) -> float:
    """DAMO-YOLO MAE-NAS entropy of the feature maps Detect receives (Sun et al., ICML 2022, MAE-DET).

    Gaussian weights and input, BN removed; each layer's output is divided by its std and the log stds are
    accumulated along the network (MAE-NAS's block-normalised forward: stable in depth), rescaling the inputs of
    multi-input layers by their relative scales. Per scale: log(std) + log(channels), weighted 1, 1, 6 for P3-P5 (P2 as P3).
    """
    device = _device(model)
    with seeded(seed, device):
        net = _gaussian_bn_free(model)
        x = torch.randn(MAE_BATCH, 3, *batch["img"].shape[-2:], device=device, dtype=torch.float64)
    layers, outputs, log_std = net.model, [], []  # outputs at unit std; log_std: their true (unnormalised) scale
    with torch.no_grad():
        for layer in layers[:-1]:
            if not outputs:
                base = 0.0
            elif isinstance(layer.f, int):
                x, base = outputs[layer.f], log_std[layer.f]
            else:  # Concat and friends: restore the inputs' relative scales before mixing them
                base = max(log_std[j] for j in layer.f)
                x = [outputs[j] * math.exp(log_std[j] - base) for j in layer.f]
            x = layer(x)
            std = float(x.std())
            if not (math.isfinite(std) and std > 0):
                raise FloatingPointError(f"zero-cost proxy 'mae_entropy': layer {layer.i} ({layer.type}) output std {std}")
            outputs.append(x / std)
            log_std.append(base + math.log(std))
    levels = list(layers[-1].f)
    weights = [MAE_SCALE_WEIGHTS.get(int(s), 0.0) for s in model.stride]  # the head's levels, finest first
    score = sum(w * (log_std[j] + math.log(outputs[j].shape[1])) for w, j in zip(weights, levels, strict=True))
    return _finite(score, "mae_entropy", "feature variance collapsed or overflowed")


# -- SynFlow ------------------------------------------------------------------------------------------------------
@register_proxy("synflow")
def synflow(model: nn.Module, batch: dict, seed: int = 0) -> float:
    """log SynFlow (Tanaka et al., NeurIPS 2020): sum |theta * dR/dtheta|, R = sum of outputs on an all-ones input.

    Weights made positive, BN in eval mode (identity at init), float64 against overflow.
    """
    device = _device(model)
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    x = torch.ones(1, 3, *batch["img"].shape[-2:], device=device, dtype=torch.float64)
    ultra.head_output_sum(net(x)).backward()
    with torch.no_grad():
        total = sum(float((p * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None)
    if not (math.isfinite(total) and total > 0):
        raise FloatingPointError(f"zero-cost proxy 'synflow': saliency sum is {total} (float64 overflow or no gradient)")
    return math.log(total)


# -- ZiCo ---------------------------------------------------------------------------------------------------------
def split_batch(batch: dict, n: int) -> list[dict]:
    """Split an Ultralytics batch dict into ``n`` mini-batches by image, renumbering ``batch_idx``."""
    b = batch["img"].shape[0]
    if b < n:
        raise ValueError(f"a batch of {b} images cannot be split into {n} mini-batches")
    out, edges = [], [round(i * b / n) for i in range(n + 1)]
    for lo, hi in zip(edges, edges[1:], strict=False):
        keep = (batch["batch_idx"] >= lo) & (batch["batch_idx"] < hi)
        out.append({"img": batch["img"][lo:hi], "cls": batch["cls"][keep], "bboxes": batch["bboxes"][keep],
                    "batch_idx": batch["batch_idx"][keep] - lo})
    return out


@register_proxy("zico")
def zico(model: nn.Module, batch: dict, seed: int = 0, n_splits: int = 2) -> float:
    """ZiCo (Li et al., ICLR 2023): sum over conv/linear layers of log sum(mean|g| / std(g)) over mini-batches.

    Gradients of Ultralytics' own detection loss on ``n_splits`` mini-batches of the real batch (train mode).
    """
    device = _device(model)
    net = ultra.prepare_loss(copy.deepcopy(model)).train()
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]
    grads: list[list[torch.Tensor]] = [[] for _ in layers]
    with seeded(seed, device):
        for mini in split_batch(batch, n_splits):
            net.zero_grad(set_to_none=True)
            mini = {k: v.to(device) for k, v in mini.items()}
            loss, _ = ultra.detection_loss(net, mini)
            loss.backward()
            for g, m in zip(grads, layers, strict=True):
                g.append(m.weight.grad.detach().flatten().clone() if m.weight.grad is not None else None)
    score, counted = 0.0, 0
    for g in grads:
        if any(t is None for t in g):
            continue
        g = torch.stack(g).double()
        std, mean_abs = g.std(0, unbiased=False), g.abs().mean(0)
        nonzero = std > 0
        ratio = float((mean_abs[nonzero] / std[nonzero]).sum())
        if ratio > 0:
            score, counted = score + math.log(ratio), counted + 1
    if not counted:
        raise FloatingPointError("zero-cost proxy 'zico': gradients identical across mini-batches (same images?)")
    return _finite(score, "zico", "non-finite gradients from the detection loss")


# -- estimator ----------------------------------------------------------------------------------------------------
class ZeroCostEstimator(Estimator):
    """Score a design with one zero-cost proxy at initialisation (no training; ``fidelity`` is ignored).

    Args:
        data: data YAML (or ``coco8``); its train split supplies the real batch.
        proxy: a name in :data:`ZERO_COST_PROXIES`.
        imgsz: image size the proxy runs at (small: 64-128 keeps each proxy around a second on a CPU).
        batch_size: images in the real batch (ZiCo splits it into two mini-batches).
        seed: seeds weight initialisation, the batch draw and any random input.
        device: torch device for the proxy.
        seeds: several seeds (``--seeds``): the score is the mean over them (a fresh initialisation and batch
            each); replaces ``seed``.
    """

    name = "zero-cost"
    trains = False

    def __init__(self, data: str | Path, proxy: str = "mae_entropy", imgsz: int = 128, batch_size: int = 8,
                 seed: int = 0, device: str = "cpu", seeds: tuple[int, ...] | None = None):
        ZERO_COST_PROXIES.lookup(proxy)  # an unknown name: one line listing the proxies
        self.data = resolve_data(data)
        self.nc = len(load_data_yaml(self.data)["names"])
        self.proxy, self.imgsz, self.batch_size = proxy, int(imgsz), int(batch_size)
        self.seeds = tuple(int(s) for s in seeds) if seeds else (int(seed),)
        self.device = torch.device(device)

    def estimate(self, candidate: Candidate, fidelity: float = 1.0) -> dict:
        nc = candidate.model_dict.get("nc")
        if nc is not None and nc != self.nc:
            raise UserError(f"design {candidate.design_hash} has nc={nc} but {self.data} has {self.nc} classes")
        values, seconds = [], 0.0
        for seed in self.seeds:
            batch = load_batches(self.data, self.imgsz, self.batch_size, 1, seed)[0]
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with seeded(seed, self.device):
                model = ultra.build_model(candidate.model_dict).to(self.device)
            start = time.perf_counter()
            value = ZERO_COST_PROXIES[self.proxy](model, batch, seed=seed)
            seconds += time.perf_counter() - start
            values.append(_finite(value, self.proxy, f"design {candidate.design_hash}"))
        return {"score": float(sum(values) / len(values)), "proxy": self.proxy, "proxy_s": seconds}
