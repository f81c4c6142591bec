"""DARTS over the block choice: a continuous relaxation, alternating weight and architecture steps, a latency penalty.

Widths and depths stay those of an anchor design (the search's reference point); at every block position of the
space (backbone stages and neck levels) the layer becomes a :class:`MixedBlock` holding each block the decision
allows at that width, whose output is their softmax(alpha)-weighted sum (Liu et al. 2019). Weight steps use one
half of the training images and SGD on the detection loss; architecture steps use the other half and Adam on
alpha, minimising ``loss per image + penalty * E[latency of the blocks] / latency of the anchor's blocks``, where a
block's latency comes from the per-layer latency table (:class:`~ultranas.objectives._lut.LatencyLUT`) on the
search's target at the deploy size (first-order DARTS, as the paper's cheaper variant). The steps run in the shared
training loop (:class:`~ultranas.estimation._loop.TrainLoop`: its schedule, augmentation, core lock and callbacks).
The result is discretised (argmax alpha per position); if a latency limit is given and the design exceeds it,
positions move to their next faster block, least-preferred change first, until it fits (or no faster block is left:
a warning).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import nn

from .. import ultra
from ..errors import UserError
from ..estimation._device_data import DeviceDataset
from ..estimation._loop import EVENTS, TrainLoop, add_progress_bar, param_groups, schedule_steps, sgd_step
from ..space import SearchSpace
from ..space._render import render_rows
from ..space._schema import is_active


class MixedBlock(nn.Module):
    """The softmax(alpha)-weighted sum of candidate blocks with the same input and output."""

    def __init__(self, ops: list[nn.Module], like: nn.Module):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.alpha = nn.Parameter(torch.zeros(len(ops)))
        self.f, self.i, self.type, self.np = like.f, like.i, "MixedBlock", like.np  # what Ultralytics' forward reads

    def forward(self, x):
        w = self.alpha.softmax(0)
        return sum(wi * op(x) for wi, op in zip(w, self.ops))


class DartsSearch:
    """A block-choice DARTS over ``space`` around ``anchor``.

    Args:
        space: the search space; ``anchor``: genotype whose widths, depths and other choices are kept.
        nc: classes of the data.
        lut: a :class:`LatencyLUT` for the block latencies (target and deploy size).
        penalty: weight of the latency term.
        limit: a design the result must not be slower than (both predicted by ``lut``), or ``None``.
    """

    def __init__(self, space: SearchSpace, anchor: dict, nc: int, lut, penalty: float = 1.0,
                 limit: dict | None = None):
        self.space, self.anchor, self.nc, self.lut, self.penalty = space, dict(anchor), nc, lut, penalty
        self.latency_limit_ms = lut.predict(space.render(limit, nc)) if limit is not None else None
        blocks = space.spec.vocab["blocks"]
        self.positions = {}  # decision -> the choices that fit the anchor's width there
        for d, vocab in space.spec.vocab_of.items():
            if vocab == "blocks" and is_active(d, anchor):  # the anchor's own layers: its levels' blocks
                width = anchor[d.replace(".block", ".width")]
                fits = [c for c in space.decisions[d] if width % blocks[c].width_multiple == 0]
                if len(fits) > 1:
                    self.positions[d] = fits
        self.layer = self._layer_of()  # decision -> its layer index in the rendered model
        self.latency = self._block_latencies()
        self.callbacks: list[tuple[str, Callable]] = []

    def add_callback(self, event: str, fn: Callable[[DartsLoop], None]) -> None:
        """Call ``fn(loop)`` at ``event`` of every later :meth:`run`'s training loop (a :class:`DartsLoop`)."""
        if event not in EVENTS:
            raise ValueError(f"unknown event '{event}': choose from {', '.join(EVENTS)}")
        self.callbacks.append((event, fn))

    def _variant(self, k: int) -> dict:
        return {**self.anchor, **{d: c[k % len(c)] for d, c in self.positions.items()}}

    def _layer_of(self) -> dict[str, int]:
        roles: list[str] = []
        render_rows(self.space.spec, self.anchor, self.nc, roles)
        return {d: next(i for i, r in enumerate(roles) if r.startswith(f"{d}:")) for d in self.positions}

    def _block_latencies(self) -> dict[str, list[float]]:
        """ms of each candidate block at each position, from the latency table (one design per choice index)."""
        layer, out = self.layer, {d: [0.0] * len(c) for d, c in self.positions.items()}
        for k in range(max(map(len, self.positions.values()), default=0)):
            times = self.lut.layer_times(self.space.render(self._variant(k), self.nc))
            for d, choices in self.positions.items():
                if k < len(choices):
                    out[d][k] = times[layer[d]]
        return out

    def build(self) -> nn.Module:
        """The anchor's model with a :class:`MixedBlock` at every searched position."""
        model = ultra.build_model(self.space.render(self.anchor, self.nc), nc=self.nc)
        layer = self.layer
        variants = [ultra.build_model(self.space.render(self._variant(k), self.nc), nc=self.nc)
                    for k in range(max(map(len, self.positions.values()), default=0))]
        for d, choices in self.positions.items():
            i = layer[d]
            model.model[i] = MixedBlock([variants[k].model[i] for k in range(len(choices))], model.model[i])
        return model

    def expected_latency(self, model: nn.Module) -> torch.Tensor:
        layer = self.layer
        return sum((model.model[layer[d]].alpha.softmax(0) * torch.tensor(ms, device=model.model[layer[d]].alpha.device))
                   .sum() for d, ms in self.latency.items())

    def genotype(self, model: nn.Module) -> dict:
        """Argmax alpha per position; then, under a latency limit, the least-preferred moves to faster blocks."""
        layer = self.layer
        alpha = {d: model.model[layer[d]].alpha.detach().softmax(0).tolist() for d in self.positions}
        g = {**self.anchor, **{d: c[max(range(len(c)), key=alpha[d].__getitem__)] for d, c in self.positions.items()}}
        while self.latency_limit_ms is not None and self.lut.predict(self.space.render(g, self.nc)) > \
                self.latency_limit_ms:
            moves = []
            for d, choices in self.positions.items():
                k, ms = choices.index(g[d]), self.latency[d]
                for j in range(len(choices)):
                    if ms[j] < ms[k]:
                        moves.append((alpha[d][k] - alpha[d][j], -(ms[k] - ms[j]), d, choices[j]))
            if not moves:
                warnings.warn(f"DARTS: no faster block left; the design stays over the {self.latency_limit_ms:.3f} ms "
                              "limit", stacklevel=2)
                break
            _, _, d, choice = min(moves)
            g[d] = choice
        return g

    def run(self, data: str, imgsz: int, epochs: int, batch: int, device: str = "cpu", seed: int = 0,
            arch_lr: float = 3e-2, progress: bool = True) -> dict:
        """Search on ``data``'s training split (halves: weights / architecture); returns ``genotype``,
        ``alpha`` (softmax per position), ``choices``, ``block_ms``, ``expected_ms``, ``anchor_block_ms``,
        ``train_s`` (seconds in steps), ``epochs`` (run; a callback may stop early) and ``losses`` (mean detection
        loss of the weight steps per epoch, as Ultralytics logs it)."""
        torch.manual_seed(seed)
        ds = DeviceDataset(data, imgsz, device, "train")
        loop = DartsLoop(self, self.build(), ds, epochs, batch, seed, arch_lr)
        if progress:
            add_progress_bar(loop, "darts")
        for event, fn in self.callbacks:
            loop.add_callback(event, fn)
        loop.fit([loop.weight_optimizer])
        model, layer = loop.model, self.layer
        return {"genotype": self.genotype(model), "train_s": round(loop.train_s, 1),
                "alpha": {d: [round(v, 4) for v in model.model[layer[d]].alpha.detach().softmax(0).tolist()]
                          for d in self.positions},
                "choices": self.positions, "block_ms": {d: [round(v, 4) for v in ms] for d, ms in self.latency.items()},
                "expected_ms": round(float(self.expected_latency(model).detach()), 4),
                "anchor_block_ms": round(loop.anchor_ms, 4), "epochs": len(loop.losses), "losses": loop.losses}

    def anchor_ms(self) -> float:
        """ms of the anchor's own blocks at the searched positions (the latency term's scale; 1.0 if none)."""
        return sum(ms[self.positions[d].index(self.anchor[d])] if self.anchor[d] in self.positions[d] else 0.0
                   for d, ms in self.latency.items()) or 1.0


class DartsLoop(TrainLoop):
    """First-order DARTS on the shared loop: each step is an SGD step of the weights on a batch of one half of the
    training split, then an Adam step of the architecture weights (alpha) on a batch of the other half.

    Args:
        search: the :class:`DartsSearch` (positions, block latencies, penalty).
        model: its relaxed model (:meth:`DartsSearch.build`), prepared for training here.
        data: the decoded training split; ``epochs``, ``batch``, ``seed``: the loop's schedule and streams.
        arch_lr: Adam's learning rate on alpha.

    Callbacks may read ``model``, ``arch`` (the alpha parameters), ``epoch_images`` and ``arch_images`` (the two
    halves), ``arch_batch_images`` (the architecture step's images) and ``losses`` (mean weight-step loss per
    epoch).
    """

    def __init__(self, search: DartsSearch, model: nn.Module, data: DeviceDataset, epochs: int, batch: int,
                 seed: int, arch_lr: float = 3e-2):
        if schedule_steps(len(data) // 2, batch, epochs)[0] == 0:
            raise UserError(f"--strategy darts: {len(data)} training images give no batch of {batch} in each half "
                            "of the split it trains on; lower --batch or use another strategy")
        super().__init__(data, epochs, batch, seed, lr0=0.02, lrf=0.01, momentum=0.937, weight_decay=5e-4, mosaic=1.0)
        self.search, self.losses = search, []
        self.model = ultra.prepare_for_training(model, data.nc, data.names, self.hyp).to(data.device).train()
        self.arch = [p for n, p in self.model.named_parameters() if n.endswith(".alpha")]
        for p in self.arch:
            p.requires_grad_(False)  # kept out of the weight optimizer's groups
        self.weight_optimizer = torch.optim.SGD(param_groups(self.model, self.lr0, self.momentum, self.weight_decay))
        for p in self.arch:
            p.requires_grad_(True)
        self.arch_optimizer = torch.optim.Adam(self.arch, lr=arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
        split = torch.Generator(device=data.device).manual_seed(self.seed)
        perm = torch.randperm(len(data), generator=split, device=data.device)
        self.epoch_images, self.arch_images = perm[: len(data) // 2], perm[len(data) // 2:]
        self.anchor_ms = search.anchor_ms()

    def begin_epoch(self) -> None:
        self.arch_order = self.arch_images[torch.randperm(len(self.arch_images), generator=self.gen,
                                                          device=self.data.device)]
        self.epoch_loss = None

    def train_step(self, batch: dict) -> None:
        self.weight_step(batch)
        i = self.ni - self.epoch * self.nb
        self.arch_batch_images = idx = self.arch_order[i * self.batch:(i + 1) * self.batch]
        self.arch_step(self.augment(idx, self.epoch_mosaic))
        self.seen += len(idx)

    def end_epoch(self) -> None:
        ultra.epoch_end(self.model)
        self.losses.append(round(float(self.epoch_loss) / self.nb, 4))
        if not math.isfinite(self.losses[-1]):
            raise FloatingPointError(f"DARTS: weight training diverged in epoch {self.epoch + 1}")

    def weight_step(self, batch: dict) -> None:
        """SGD on the weights (alpha's gradient dropped), clipped as Ultralytics."""
        loss, items = ultra.detection_loss(self.model, batch)
        loss.backward()
        for p in self.arch:
            p.grad = None
        sgd_step(self.weight_optimizer, self.model.parameters())
        self.epoch_loss = items if self.epoch_loss is None else self.epoch_loss + items

    def arch_step(self, batch: dict) -> None:
        """Adam on alpha: ``loss per image + penalty * E[block latency] / the anchor's block latency``."""
        search, model = self.search, self.model
        loss, _ = ultra.detection_loss(model, batch)
        loss = loss / len(batch["img"]) + search.penalty * search.expected_latency(model) / self.anchor_ms
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError("DARTS: non-finite loss")
        self.arch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.arch_optimizer.step()
        for p in model.parameters():
            p.grad = None
