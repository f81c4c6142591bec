"""The training loop the fast, supernet and DARTS trainers share: SGD epochs over a device-resident split.

The loop owns what they all train with: one augmentation stream (:class:`DeviceAugment`, seeded), the schedule of
:func:`compressed_schedule` (linear warmup over ~10 % of the run, linear decay to ``lrf``, mosaic closed for the
last ~25 %), the core lock around each step and the timing. A subclass says what a step computes
(:meth:`TrainLoop.train_step`) and, if it needs to, what starts and ends an epoch, resumes and saves. Callbacks are
Ultralytics': ``add_callback(event, fn)`` with ``fn(trainer)``; one may set ``trainer.stop`` to end training after
the current epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from .. import cores, ultra
from ._device_data import DeviceAugment, DeviceDataset
from ._short_train import compressed_schedule

EVENTS = ("on_train_start", "on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "on_fit_epoch_end",
          "on_train_end")


def param_groups(model: nn.Module, lr: float, momentum: float, decay: float) -> list[dict]:
    """Ultralytics' SGD groups: weights with decay, normalisation weights and biases without."""
    norm = tuple(v for k, v in nn.__dict__.items() if "Norm" in k)
    weights, norms, biases = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                (biases if "bias" in name else norms if isinstance(module, norm) else weights).append(p)
    common = {"lr": lr, "momentum": momentum, "nesterov": True}
    return [{"params": weights, **common, "weight_decay": decay, "param_group": "weight"},
            {"params": norms, **common, "weight_decay": 0.0, "param_group": "bn"},
            {"params": biases, **common, "weight_decay": 0.0, "param_group": "bias"}]


def set_lr(optimizer: torch.optim.Optimizer, ni: int, total: int, nw: int, lr0: float, lrf: float, momentum: float,
           hyp) -> None:
    """Step ``ni`` of ``total``: linear decay to ``lr0 * lrf``; during the ``nw`` warmup steps bias lr falls from
    ``hyp.warmup_bias_lr``, the rest rise from 0, momentum rises from ``hyp.warmup_momentum``."""
    target = lr0 * ((1 - ni / total) * (1 - lrf) + lrf)
    for g in optimizer.param_groups:
        if ni < nw:
            start = hyp.warmup_bias_lr if g["param_group"] == "bias" else 0.0
            g["lr"] = start + (target - start) * ni / nw
            g["momentum"] = hyp.warmup_momentum + (momentum - hyp.warmup_momentum) * ni / nw
        else:
            g["lr"], g["momentum"] = target, momentum


def schedule_steps(n_images: int, batch: int, epochs: int) -> tuple[int, int, int]:
    """(batches per epoch, warmup steps, epochs with mosaic open) of :func:`compressed_schedule` over ``n_images``;
    a 1-image tail batch is dropped (it would break BatchNorm)."""
    sched = compressed_schedule(epochs, batch)
    nb = math.ceil(n_images / batch) - (n_images % batch == 1)
    return nb, warmup_steps(sched, epochs, nb), epochs - sched["close_mosaic"]


def warmup_steps(sched: dict, epochs: int, nb: int) -> int:
    """Warmup steps of a ``compressed_schedule`` with ``nb`` batches per epoch (never the whole run)."""
    return round(min(sched["warmup_epochs"], max(epochs - 1, 0)) * nb)


def sgd_step(optimizer: torch.optim.Optimizer, params) -> None:
    """Clip the gradients of ``params`` at norm 10 (as Ultralytics), step, clear them."""
    torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainLoop:
    """Epochs of SGD steps on batches of ``data`` augmented on its device; subclasses implement :meth:`train_step`.

    Args:
        data: the decoded training split.
        epochs, batch: the schedule (warmup, decay and mosaic close scale with ``epochs``).
        seed: seeds the augmentation stream (the image order and every random transform).
        lr0, lrf, momentum, weight_decay: SGD settings (Ultralytics' meaning).
        mosaic: mosaic probability while mosaic is open.

    While :meth:`fit` runs, callbacks may read ``epoch`` (0-based), ``epochs``, ``start_epoch``, ``nb`` (batches
    per epoch), ``ni`` (steps since the schedule's start), ``batch_images`` (the step's image indices), ``seen``
    (images this call), ``train_s`` (seconds in steps) and set ``stop``; steps may use ``augment`` (the
    augmentation stream) and ``epoch_mosaic`` (this epoch's mosaic probability) for batches of their own.

    ``epoch_images``: the image indices an epoch shuffles and steps through (``None``, the default: every image of
    ``data``); set it before :meth:`fit` to train on part of the split.
    """

    def __init__(self, data: DeviceDataset, epochs: int, batch: int, seed: int, lr0: float, lrf: float,
                 momentum: float, weight_decay: float, mosaic: float):
        self.data, self.epochs, self.batch, self.seed = data, int(epochs), int(batch), int(seed)
        self.lr0, self.lrf, self.momentum, self.weight_decay, self.mosaic = lr0, lrf, momentum, weight_decay, mosaic
        self.hyp = ultra.hyperparameters(epochs=self.epochs, imgsz=int(data.imgsz), batch=self.batch, lr0=lr0,
                                         lrf=lrf, momentum=momentum, weight_decay=weight_decay,
                                         single_cls=data.single_cls)
        self.callbacks: dict[str, list[Callable]] = {e: [] for e in EVENTS}
        self.epoch = self.start_epoch = self.nb = self.ni = self.seen = 0
        self.train_s, self.stop = 0.0, False
        self.epoch_images: torch.Tensor | None = None
        self.epoch_mosaic = 0.0

    def add_callback(self, event: str, fn: Callable[[TrainLoop], None]) -> None:
        """Call ``fn(trainer)`` at ``event`` (one of :data:`EVENTS`)."""
        if event not in self.callbacks:
            raise ValueError(f"unknown event '{event}': choose from {', '.join(EVENTS)}")
        self.callbacks[event].append(fn)

    def run_callbacks(self, event: str) -> None:
        for fn in self.callbacks[event]:
            fn(self)

    # -- hooks ----------------------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> None:
        """One optimizer step on ``batch`` (an augmented batch dict)."""
        raise NotImplementedError

    def resume(self) -> int:
        """Restore an interrupted training (``self.gen`` included); returns the first epoch to run."""
        return 0

    def begin_epoch(self) -> None:
        """Before the first step of ``self.epoch``."""

    def end_epoch(self) -> None:
        """After the last step of ``self.epoch`` (loss bookkeeping, divergence)."""

    def save(self) -> None:
        """After ``on_train_epoch_end``: a checkpoint of the epoch."""

    # -- the loop -------------------------------------------------------------------------------------------------
    def fit(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Run the schedule (from the epoch :meth:`resume` returns); ``optimizers`` follow its LR and momentum."""
        dev, pool = self.data.device, self.epoch_images
        n = len(self.data) if pool is None else len(pool)
        self.gen = torch.Generator(device=dev).manual_seed(self.seed)
        self.nb, nw, mosaic_epochs = schedule_steps(n, self.batch, self.epochs)
        self.train_s, self.seen, self.stop = 0.0, 0, False
        self.start_epoch = self.resume()
        self.augment = augment = DeviceAugment.from_hyp(self.data, self.gen, self.hyp)
        self.run_callbacks("on_train_start")
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            self.begin_epoch()
            self.run_callbacks("on_train_epoch_start")
            self.epoch_mosaic = mosaic = self.mosaic if epoch < mosaic_epochs else 0.0
            _sync(dev)
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=self.gen, device=dev)
            if pool is not None:
                order = pool[order]
            for i in range(self.nb):
                self.ni = epoch * self.nb + i
                for optimizer in optimizers:
                    set_lr(optimizer, self.ni, self.nb * self.epochs, nw, self.lr0, self.lrf, self.momentum, self.hyp)
                self.batch_images = idx = order[i * self.batch:(i + 1) * self.batch]
                with cores.training():  # a sibling process timing a design waits for this step, and vice versa
                    self.train_step(augment(idx, mosaic))
                self.seen += len(idx)
                self.run_callbacks("on_train_batch_end")
            _sync(dev)
            self.train_s += time.perf_counter() - t0
            self.end_epoch()
            self.run_callbacks("on_train_epoch_end")
            self.save()
            self.run_callbacks("on_fit_epoch_end")
            if self.stop:
                break
        self.run_callbacks("on_train_end")


def add_progress_bar(trainer: TrainLoop, desc: str) -> None:
    """A tqdm bar (labelled ``desc``) over the steps still to run, as callbacks."""
    bars = []

    def start(t: TrainLoop) -> None:
        if t.start_epoch < t.epochs:
            from tqdm import tqdm

            bars.append(tqdm(total=t.epochs * t.nb, initial=t.start_epoch * t.nb, desc=desc, unit="step",
                             leave=False))

    def update(t: TrainLoop) -> None:
        if bars:
            bars[-1].update()

    def close(t: TrainLoop) -> None:
        if bars:
            bars.pop().close()

    trainer.add_callback("on_train_start", start)
    trainer.add_callback("on_train_batch_end", update)
    trainer.add_callback("on_train_end", close)
