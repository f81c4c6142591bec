"""DARTS over the block choice: a continuous relaxation, alternating weight and architecture steps, a latency penalty.

Widths and depths stay those of an anchor design (the search's reference point); at every block position of the
space (backbone stages and neck levels) the layer becomes a :class:`MixedBlock` holding each block the decision
allows at that width, whose output is their softmax(alpha)-weighted sum (Liu et al. 2019). Weight steps use one
half of the training images and SGD on the detection loss; architecture steps use the other half and Adam on
alpha, minimising ``loss per image + penalty * E[latency of the blocks] / latency of the anchor's blocks``, where a
block's latency comes from the per-layer latency table (:class:`~ultranas.objectives._lut.LatencyLUT`) on the
search's target at the deploy size (first-order DARTS, as the paper's cheaper variant). The result is discretised
(argmax alpha per position); if a latency limit is given and the design exceeds it, positions move to their next
faster block, least-preferred change first, until it fits (or no faster block is left: a warning).
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from torch import nn

from .. import cores, ultra
from ..estimation._device_data import DeviceAugment, DeviceDataset
from ..estimation._fast_train import param_groups, set_lr, warmup_steps
from ..estimation._short_train import compressed_schedule
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
        ``alpha`` (softmax per position), ``block_ms``, ``expected_ms`` and ``train_s``."""
        torch.manual_seed(seed)
        ds = DeviceDataset(data, imgsz, device, "train")
        hyp = ultra.hyperparameters(epochs=epochs, imgsz=imgsz, batch=batch, single_cls=ds.single_cls)
        model = ultra.prepare_for_training(self.build(), ds.nc, ds.names, hyp).to(ds.device).train()
        arch = [p for n, p in model.named_parameters() if n.endswith(".alpha")]
        for p in arch:
            p.requires_grad_(False)  # kept out of the weight optimizer's groups
        w_opt = torch.optim.SGD(param_groups(model, 0.02, 0.937, 5e-4))
        for p in arch:
            p.requires_grad_(True)
        a_opt = torch.optim.Adam(arch, lr=arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
        gen = torch.Generator(device=ds.device).manual_seed(seed)
        augment = DeviceAugment.from_hyp(ds, gen, hyp)
        perm = torch.randperm(len(ds), generator=gen, device=ds.device)
        halves = perm[: len(ds) // 2], perm[len(ds) // 2:]
        nb = max(1, len(halves[0]) // batch)
        sched = compressed_schedule(epochs, batch)
        nw, base = warmup_steps(sched, epochs, nb), self._anchor_ms()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=epochs * nb, desc="darts", unit="step", leave=False)
        t0 = time.perf_counter()
        for epoch in range(epochs):
            mosaic = 1.0 if epoch < epochs - sched["close_mosaic"] else 0.0
            orders = [h[torch.randperm(len(h), generator=gen, device=ds.device)] for h in halves]
            for i in range(nb):
                set_lr(w_opt, epoch * nb + i, epochs * nb, nw, 0.02, 0.01, 0.937, hyp)
                with cores.training():
                    self._weight_step(model, augment(orders[0][i * batch:(i + 1) * batch], mosaic), w_opt, arch)
                    self._arch_step(model, augment(orders[1][i * batch:(i + 1) * batch], mosaic), a_opt, base)
                if bar is not None:
                    bar.update()
            ultra.epoch_end(model)
        if bar is not None:
            bar.close()
        layer = self.layer
        return {"genotype": self.genotype(model), "train_s": round(time.perf_counter() - t0, 1),
                "alpha": {d: [round(v, 4) for v in model.model[layer[d]].alpha.detach().softmax(0).tolist()]
                          for d in self.positions},
                "choices": self.positions, "block_ms": {d: [round(v, 4) for v in ms] for d, ms in self.latency.items()},
                "expected_ms": round(float(self.expected_latency(model).detach()), 4), "anchor_block_ms": round(base, 4)}

    def _anchor_ms(self) -> float:
        return sum(ms[self.positions[d].index(self.anchor[d])] if self.anchor[d] in self.positions[d] else 0.0
                   for d, ms in self.latency.items()) or 1.0

    @staticmethod
    def _weight_step(model, batch, opt, arch) -> None:
        loss, _ = ultra.detection_loss(model, batch)
        loss.backward()
        for p in arch:
            p.grad = None
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def _arch_step(self, model, batch, opt, base: float) -> None:
        loss, _ = ultra.detection_loss(model, batch)
        loss = loss / len(batch["img"]) + self.penalty * self.expected_latency(model) / base
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError("DARTS: non-finite loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for p in model.parameters():
            p.grad = None
