"""Training a supernet once: the sandwich rule with in-place distillation, resumable epoch by epoch.

Every step trains, on the same augmented batch, the largest subnet (the anchor design at its widest and deepest:
the teacher), the smallest one (random paths at the smallest widths and depths) and ``random_subnets`` designs drawn
from the space; the others also learn the teacher's class scores (BigNAS/OFA's sandwich rule and in-place
distillation). Gradients of all of them add up before one SGD step. Data, augmentation and the schedule are the fast
trainer's (device-resident split, batched augmentation, SGD lr0 0.02 with warmup and linear decay, mosaic closed
for the last ~25 %). A checkpoint is written after every epoch; a killed training resumes from the last one.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import cores, ultra
from ..estimation._device_data import DeviceAugment, DeviceDataset
from ..estimation._fast_train import param_groups, schedule_steps, set_lr
from ..fsutil import atomic_torch_save
from ._layout import NotShareable
from ._supernet import Supernet


def _scores(preds) -> torch.Tensor:
    """Class logits ``[B, nc, anchors]`` of a training-mode head output (one-to-many branch of an E2E head)."""
    return preds.get("one2many", preds)["scores"]


class SupernetTrainer:
    """Train ``supernet`` on ``data`` (a :class:`DeviceDataset` of the train split at the training size).

    Args:
        supernet: the shared weights (on ``data.device``).
        data: the decoded training split.
        epochs, batch, seed: the schedule (as the fast trainer's); ``seed`` also draws the subnets.
        lr0, lrf, momentum, weight_decay, mosaic: SGD and augmentation settings (the fast trainer's defaults).
        random_subnets: random designs per step besides the largest and the smallest.
        distill: weight of the distillation loss (0: none).
        checkpoint: file written after every epoch and resumed from when it exists with the same settings.
        progress: show a progress bar.
    """

    def __init__(self, supernet: Supernet, data: DeviceDataset, epochs: int = 30, batch: int = 16, seed: int = 0,
                 lr0: float = 0.02, lrf: float = 0.01, momentum: float = 0.937, weight_decay: float = 5e-4,
                 mosaic: float = 1.0, random_subnets: int = 2, distill: float = 1.0, checkpoint: Path | None = None,
                 progress: bool = True):
        self.supernet, self.data, self.epochs, self.batch, self.seed = supernet, data, int(epochs), int(batch), seed
        self.lr0, self.lrf, self.momentum, self.weight_decay, self.mosaic = lr0, lrf, momentum, weight_decay, mosaic
        self.random_subnets, self.distill, self.checkpoint, self.progress = random_subnets, distill, checkpoint, progress
        self.hyp = ultra.hyperparameters(epochs=self.epochs, imgsz=data.imgsz, batch=self.batch, lr0=lr0, lrf=lrf,
                                         momentum=momentum, weight_decay=weight_decay, single_cls=data.single_cls)
        self.settings = {"epochs": self.epochs, "batch": self.batch, "seed": seed, "imgsz": data.imgsz, "lr0": lr0,
                         "lrf": lrf, "momentum": momentum, "weight_decay": weight_decay, "mosaic": mosaic,
                         "random_subnets": random_subnets, "distill": distill, "images": len(data),
                         "data": str(data.data_yaml), "files": [str(f) for f in data.files[:3] + data.files[-3:]], "nc": data.nc,
                         "single_cls": data.single_cls, "space": supernet.space.name,
                         "store": sorted(supernet.store.keys()), "anchor": supernet.largest()}

    def _loss(self, g: dict, img: torch.Tensor, batch: dict) -> torch.Tensor:
        sub, _ = self.supernet.subnet(g)
        if getattr(sub, "args", None) is not self.hyp:
            ultra.prepare_for_training(sub, self.data.nc, self.data.names, self.hyp)
        sub.train()
        preds = self.supernet(g, img)
        loss, _ = ultra.detection_loss(sub, batch, preds)
        return loss, preds

    def _shareable(self, draw, tries: int = 50) -> dict:
        """A design from ``draw()`` that maps onto the supernet (grouped convolutions other than depthwise do not)."""
        for _ in range(tries):
            g = draw()
            try:
                self.supernet.subnet(g)
                return g
            except NotShareable:
                continue
        raise NotShareable(f"no design in {tries} draws maps onto the supernet (grouped convolutions?)")

    def step(self, batch: dict, rng: random.Random, optimizer: torch.optim.Optimizer) -> float:
        """One sandwich step; returns the summed loss of its subnets."""
        img, net = batch["img"], self.supernet
        loss, preds = self._loss(net.largest(), img, batch)
        loss.backward()
        total, soft = float(loss.detach()), _scores(preds).detach().sigmoid()
        students = [self._shareable(lambda: net.smallest(rng))]
        students += [self._shareable(lambda: net.space.sample(rng)) for _ in range(self.random_subnets)]
        for g in students:
            loss, preds = self._loss(g, img, batch)
            if self.distill:
                kd = F.binary_cross_entropy_with_logits(_scores(preds), soft, reduction="sum") / soft.sum().clamp(min=1)
                loss = loss + self.distill * self.hyp.cls * len(img) * kd  # the scale of Ultralytics' class loss
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(net.store.parameters(), max_norm=10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    def _resume(self, optimizer, gen) -> tuple[int, list, float]:
        if self.checkpoint is None or not Path(self.checkpoint).is_file():
            return 0, [], 0.0
        state = torch.load(self.checkpoint, map_location=self.data.device, weights_only=True)
        if state.get("settings") != self.settings:
            return 0, [], 0.0  # another supernet: train afresh (the file is overwritten after the first epoch)
        self.supernet.store.load_state_dict(state["store"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"].cpu())  # a generator's state is a CPU ByteTensor on every device
        return state["epoch"] + 1, state["losses"], state["train_s"]

    def train(self) -> dict:
        """Train (or finish a killed training); returns ``epochs``, ``losses`` (mean per epoch), ``train_s``,
        ``steps`` and ``resumed_at`` (the first epoch this call ran)."""
        net, dev = self.supernet, self.data.device
        optimizer = torch.optim.SGD(param_groups(net.store, self.lr0, self.momentum, self.weight_decay))
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        start, losses, train_s = self._resume(optimizer, gen)
        augment = DeviceAugment.from_hyp(self.data, gen, self.hyp)
        n = len(self.data)
        nb, nw, mosaic_epochs = schedule_steps(n, self.batch, self.epochs)
        bar = None
        if self.progress and start < self.epochs:
            from tqdm import tqdm

            bar = tqdm(total=self.epochs * nb, initial=start * nb, desc="supernet", unit="step", leave=False)
        for epoch in range(start, self.epochs):
            t0, rng, epoch_loss = time.perf_counter(), random.Random(f"{self.seed}:{epoch}"), 0.0
            mosaic = self.mosaic if epoch < mosaic_epochs else 0.0
            order = torch.randperm(n, generator=gen, device=dev)
            for i in range(nb):
                set_lr(optimizer, epoch * nb + i, nb * self.epochs, nw, self.lr0, self.lrf, self.momentum, self.hyp)
                batch = augment(order[i * self.batch:(i + 1) * self.batch], mosaic)
                with cores.training():
                    epoch_loss += self.step(batch, rng, optimizer)
                if bar is not None:
                    bar.update()
            for sub, _ in net._subnets.values():
                ultra.epoch_end(sub)
            losses.append(round(epoch_loss / nb, 4))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"supernet training diverged in epoch {epoch + 1}")
            train_s += time.perf_counter() - t0
            if self.checkpoint is not None:
                atomic_torch_save({"settings": self.settings, "epoch": epoch, "store": net.store.state_dict(),
                                   "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                                   "losses": losses, "train_s": train_s}, self.checkpoint)
        if bar is not None:
            bar.close()
        return {"epochs": self.epochs, "losses": losses, "train_s": round(train_s, 2), "steps": self.epochs * nb,
                "resumed_at": start}


def load_trained(supernet: Supernet, checkpoint: Path) -> dict:
    """Load the finished training in ``checkpoint`` into ``supernet``; returns its record (``losses``, ``train_s``)."""
    state = torch.load(checkpoint, map_location=supernet.device, weights_only=True)
    if state["epoch"] + 1 != state["settings"]["epochs"]:
        raise ValueError(f"{checkpoint}: supernet training stopped after epoch {state['epoch'] + 1}")
    supernet.store.load_state_dict(state["store"])
    return {"losses": state["losses"], "train_s": state["train_s"], "settings": state["settings"]}
