"""Training a supernet once: the sandwich rule with in-place distillation, resumable epoch by epoch.

Every step trains, on the same augmented batch, the largest subnet (the anchor design at its widest and deepest:
the teacher), the smallest one (random paths at the smallest widths and depths) and ``random_subnets`` designs drawn
from the space; the others also learn the teacher's class scores (BigNAS/OFA's sandwich rule and in-place
distillation). Gradients of all of them add up before one SGD step. The loop is the fast trainer's
(:class:`~ultranas.estimation._loop.TrainLoop`: device-resident split, batched augmentation, SGD lr0 0.02 with warmup
and linear decay, mosaic closed for the last ~25 %, callbacks). A checkpoint is written after every epoch; a killed
training resumes from the last one.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import ultra
from ..estimation._device_data import DeviceDataset
from ..estimation._loop import TrainLoop, add_progress_bar, param_groups, sgd_step
from ..fsutil import atomic_torch_save
from ._layout import NotShareable
from ._supernet import Supernet


def _scores(preds) -> torch.Tensor:
    """Class logits ``[B, nc, anchors]`` of a training-mode head output (one-to-many branch of an E2E head)."""
    return preds.get("one2many", preds)["scores"]


class SupernetTrainer(TrainLoop):
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

    Callbacks: :meth:`add_callback` (``losses``: mean loss per epoch so far).
    """

    def __init__(self, supernet: Supernet, data: DeviceDataset, epochs: int = 30, batch: int = 16, seed: int = 0,
                 lr0: float = 0.02, lrf: float = 0.01, momentum: float = 0.937, weight_decay: float = 5e-4,
                 mosaic: float = 1.0, random_subnets: int = 2, distill: float = 1.0, checkpoint: Path | None = None,
                 progress: bool = True):
        super().__init__(data, epochs, batch, seed, lr0, lrf, momentum, weight_decay, mosaic)
        self.supernet, self.random_subnets, self.distill = supernet, random_subnets, distill
        self.checkpoint, self.progress, self.losses = checkpoint, progress, []
        if progress:
            add_progress_bar(self, "supernet")
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
        sgd_step(optimizer, net.store.parameters())
        return total

    # -- the loop's hooks -----------------------------------------------------------------------------------------
    def resume(self) -> int:
        self.losses = []
        if self.checkpoint is None or not Path(self.checkpoint).is_file():
            return 0
        state = torch.load(self.checkpoint, map_location=self.data.device, weights_only=True)
        if state.get("settings") != self.settings:
            return 0  # another supernet: train afresh (the file is overwritten after the first epoch)
        self.supernet.store.load_state_dict(state["store"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"].cpu())  # a generator's state is a CPU ByteTensor on every device
        self.losses, self.train_s = state["losses"], state["train_s"]
        return state["epoch"] + 1

    def begin_epoch(self) -> None:
        self.rng, self.epoch_loss = random.Random(f"{self.seed}:{self.epoch}"), 0.0

    def train_step(self, batch: dict) -> None:
        self.epoch_loss += self.step(batch, self.rng, self.optimizer)

    def end_epoch(self) -> None:
        for sub, _ in self.supernet._subnets.values():
            ultra.epoch_end(sub)
        self.losses.append(round(self.epoch_loss / self.nb, 4))
        if not math.isfinite(self.losses[-1]):
            raise FloatingPointError(f"supernet training diverged in epoch {self.epoch + 1}")

    def save(self) -> None:
        if self.checkpoint is not None:
            atomic_torch_save({"settings": self.settings, "epoch": self.epoch, "store": self.supernet.store.state_dict(),
                               "optimizer": self.optimizer.state_dict(), "generator": self.gen.get_state(),
                               "losses": self.losses, "train_s": self.train_s}, self.checkpoint)

    def train(self) -> dict:
        """Train (or finish a killed training); returns ``epochs``, ``losses`` (mean per epoch), ``train_s``,
        ``steps`` and ``resumed_at`` (the first epoch this call ran)."""
        self.optimizer = torch.optim.SGD(param_groups(self.supernet.store, self.lr0, self.momentum, self.weight_decay))
        self.fit([self.optimizer])
        return {"epochs": self.epochs, "losses": self.losses, "train_s": round(self.train_s, 2),
                "steps": len(self.losses) * self.nb, "resumed_at": self.start_epoch}


def load_trained(supernet: Supernet, checkpoint: Path) -> dict:
    """Load the finished training in ``checkpoint`` into ``supernet``; returns its record (``losses``, ``train_s``)."""
    state = torch.load(checkpoint, map_location=supernet.device, weights_only=True)
    if state["epoch"] + 1 != state["settings"]["epochs"]:
        raise ValueError(f"{checkpoint}: supernet training stopped after epoch {state['epoch'] + 1}")
    supernet.store.load_state_dict(state["store"])
    return {"losses": state["losses"], "train_s": state["train_s"], "settings": state["settings"]}
