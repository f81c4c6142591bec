"""A one-shot supernet over a search space: every design's weights are slices of one set of shared tensors.

What is shared (documented in the README, "Weight sharing"):

- **elastic** decisions (integer choices: stem, widths, repeats) share weights: a narrower layer uses the first
  channels of the widest one (per equal part where its output is cut, :mod:`._layout`), a shallower stage the first
  blocks of the deepest one (OFA/BigNAS);
- **categorical** decisions (block, downsample, SPP, attention, head type) are separate paths: each choice at each
  position has its own weights, at the widest and deepest setting (SPOS).

A subnet is the design's own Ultralytics model, built from its rendered YAML; its forward pass runs that model with
weights gathered from the supernet (``torch.func.functional_call``), so gradients reach the shared tensors and the
extracted model is, by construction, the computation the supernet trained.
"""

from __future__ import annotations

import copy
import random
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from .. import ultra
from ..errors import UserError
from ..fsutil import atomic_torch_save, atomic_write_text
from ..space import SearchSpace
from ..space._render import render_rows
from ..space._schema import P2_NECK
from ._layout import NotShareable, gather, named_tensors, trace_slices

PARAMLESS_ROLES = ("up", "cat")
SHARED_HEAD = ("cv2.", "one2one_cv2.", "dfl.")  # box branch and DFL: the same modules in the v8 and v11 head layouts
V11_HEAD_BLOCKS = {"C3k2", "A2C2f", "C2fCIB"}  # Ultralytics builds the v11 Detect head when a model has one of them


def rendered_roles(space: SearchSpace, g: dict, nc: int) -> tuple[dict, list[str]]:
    """The design's model dict and each layer's role (``P3.block:C3k2``, ``detect:e2e``; ``-v8`` added to the head's
    role where Ultralytics builds the legacy head layout): layers with one role hold the same kind of weights."""
    roles: list[str] = []
    model_dict = render_rows(space.spec, g, nc, roles)
    if not any(row[2] in V11_HEAD_BLOCKS for row in model_dict["backbone"] + model_dict["head"]):
        roles[-1] += "-v8"  # the legacy Detect head: other modules than the v11 one
    return model_dict, roles


def _key(role: str) -> str:
    return role.replace(".", "_")  # a module name may not hold dots


class Supernet(nn.Module):
    """Shared weights for every design of ``space`` with ``nc`` classes.

    Args:
        space: the search space.
        nc: number of classes.
        anchor: the design whose widest, deepest form is the sandwich rule's largest subnet (the teacher).
        cache: subnets (built model + weight slices) kept, most recently used first.
    """

    def __init__(self, space: SearchSpace, nc: int, anchor: dict, cache: int = 16):
        super().__init__()
        self.space, self.nc, self.cache = space, nc, cache
        self.elastic = [d for d, c in space.decisions.items() if d != "imgsz"
                        and all(isinstance(v, int) and not isinstance(v, bool) for v in c)]
        self.anchor = dict(anchor)
        self.store = nn.ModuleDict()
        categorical = [d for d in space.decisions if d not in self.elastic]
        choices = space.decisions.get("levels", ())
        if "P2-P5" in choices and max(space.decisions["N3out.width"]) != max(space.decisions["N3.width"]):
            raise UserError("the supernet shares N4out between P3-P5 and P2-P5 designs, fed from N3 or N3out: their "
                            "widest widths must be equal (decisions N3.width and N3out.width)")
        levels = [{"levels": v} for v in choices] or [{}]
        base = next((lv for lv in levels if lv.get("levels") == "P3-P5"), levels[0])  # every block but the P2 path's
        others = [lv for lv in levels if lv is not base and (lv["levels"] == "P2-P5" or "P3-P5" not in choices)]
        p2 = max((len(c) for d, c in space.decisions.items() if d.split(".")[0] in P2_NECK), default=0)
        for k in range(max(len(space.decisions[d]) for d in categorical)):
            g = {d: c[k % len(c)] for d, c in space.decisions.items()}
            for lv in [base, *others]:  # the P2 path's own blocks cycle in fewer steps
                if lv is base or lv["levels"] != "P2-P5" or k < p2:
                    self._adopt(self.extreme({**g, **lv}, largest=True))
        blocks = space.spec.vocab["blocks"]
        for v11 in (False, True):  # each head type in both layouts Ultralytics builds (v8: no C3k2/A2C2f/C2fCIB)
            g = dict(self.anchor)
            for d in (d for d, vocab in space.spec.vocab_of.items() if vocab == "blocks"):
                pick = [c for c in space.decisions[d] if (blocks[c].module in V11_HEAD_BLOCKS) == v11]
                g[d] = pick[0] if pick else g[d]
            for head in space.decisions.get("head", [g.get("head")]):
                for lv in levels:
                    self._adopt(self.extreme({**g, "head": head, **lv}, largest=True))
        for name, p in self.store.named_parameters():
            p.requires_grad_(".dfl" not in name)  # DFL's fixed projection, as Ultralytics' trainer freezes it
        self._subnets: OrderedDict[str, tuple] = OrderedDict()

    # -- designs ------------------------------------------------------------------------------------------------
    def extreme(self, g: dict, largest: bool) -> dict:
        """``g`` with every elastic decision at its largest (or smallest) choice that the block's width rule allows."""
        out, blocks = dict(g), self.space.spec.vocab["blocks"]
        for d in self.elastic:
            block = out.get(d.replace(".width", ".block")) if d.endswith(".width") else None
            multiple = blocks[block].width_multiple if block in blocks else 1
            fits = [c for c in self.space.decisions[d] if c % multiple == 0] or list(self.space.decisions[d])
            out[d] = max(fits) if largest else min(fits)
        return out

    def largest(self) -> dict:
        return self.extreme(self.anchor, largest=True)

    def smallest(self, rng: random.Random) -> dict:
        """The smallest widths and depths, with random categorical choices (every path's smallest gets trained);
        every other draw only with blocks that make Ultralytics build the v8 head layout, which random designs
        almost never have (all 8 block positions would have to avoid C3k2, A2C2f and C2fCIB)."""
        g, blocks = self.space.sample(rng), self.space.spec.vocab["blocks"]
        if rng.random() < 0.5:
            for d in (d for d, vocab in self.space.spec.vocab_of.items() if vocab == "blocks"):
                v8 = [c for c in self.space.decisions[d] if blocks[c].module not in V11_HEAD_BLOCKS]
                g[d] = rng.choice(v8) if v8 else g[d]
        return self.extreme(g, largest=False)

    # -- building -----------------------------------------------------------------------------------------------
    def _render(self, g: dict) -> tuple[dict, list[str]]:
        return rendered_roles(self.space, g, self.nc)

    def _adopt(self, g: dict) -> None:
        """Add the layers of ``g`` (widest form) that the store lacks."""
        model_dict, roles = self._render(g)
        model = ultra.build_model(model_dict, nc=self.nc)
        for layer, role in zip(model.model, roles):
            if role not in PARAMLESS_ROLES and _key(role) not in self.store:
                self.store[_key(role)] = layer

    def subnet(self, g: dict) -> tuple[ultra.DetectionModel, list[tuple[str, str, list]]]:
        """The design's own model (built once, cached) and its plan: (its tensor, supernet tensor, indices)."""
        h = self.space.design_hash(g, self.nc)
        if h in self._subnets:
            self._subnets.move_to_end(h)
            return self._subnets[h]
        model_dict, roles = self._render(g)
        sub = ultra.build_model(model_dict, nc=self.nc).to(self.device)
        tensors = named_tensors(self)
        source, shapes = {}, {}
        for name in named_tensors(sub):
            _, layer, rest = name.split(".", 2)
            role = roles[int(layer)]
            if role.endswith("-v8") and rest.startswith(SHARED_HEAD):
                role = role.removesuffix("-v8")  # one box branch for both head layouts
            big = f"store.{_key(role)}.{rest}"
            if big not in tensors:
                raise NotShareable(f"{name} ({role}) has no supernet tensor {big}: deeper or new than the supernet")
            source[name], shapes[name] = big, tuple(tensors[big].shape)
        plan = [(n, source[n], [i if i is None else i.to(self.device) for i in idx])
                for n, idx in trace_slices(sub, shapes).items()]
        self._subnets[h] = (sub, plan)
        if len(self._subnets) > self.cache:
            self._subnets.popitem(last=False)
        return sub, plan

    @property
    def device(self) -> torch.device:
        return next(self.store.parameters()).device

    def weights(self, g: dict) -> dict[str, torch.Tensor]:
        """The design's tensors, gathered from the supernet (differentiable with respect to it)."""
        _, plan = self.subnet(g)
        tensors = named_tensors(self)
        return {n: gather(tensors[big], idx) for n, big, idx in plan}

    def forward(self, g: dict, img: torch.Tensor):
        """The design's forward pass on ``img`` with the supernet's weights (its own mode: train or eval)."""
        sub, _ = self.subnet(g)
        return torch.func.functional_call(sub, self.weights(g), (img,), strict=True)

    @torch.no_grad()
    def extract(self, g: dict) -> ultra.DetectionModel:
        """A standalone Ultralytics model of the design holding its inherited weights (batch norm statistics as
        stored: recalibrate before evaluating, :func:`recalibrate_bn`)."""
        sub, _ = self.subnet(g)
        model = copy.deepcopy(sub)
        model.load_state_dict({k: v.detach().clone() for k, v in self.weights(g).items()}, strict=True)
        return model

    def export(self, g: dict, folder: str | Path, model: nn.Module | None = None) -> tuple[Path, Path]:
        """Write the design as a plain rendered Ultralytics YAML (``model.yaml``) and its inherited weights
        (``inherited.pt``: a float32 state dict of that model; ``model``: the extracted model to save, e.g. after
        :func:`recalibrate_bn`, default :meth:`extract`)."""
        folder = Path(folder)
        model = self.extract(g) if model is None else model
        atomic_write_text(folder / "model.yaml", self.space.to_yaml(g, self.nc))
        state = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
        return folder / "model.yaml", atomic_torch_save(state, folder / "inherited.pt")


def load_inherited(model: nn.Module, weights: str | Path) -> nn.Module:
    """Load an ``inherited.pt`` (written by :meth:`Supernet.export`) into a model built from its ``model.yaml``."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches) -> nn.Module:
    """Batch-norm running statistics re-estimated as a plain average over ``batches`` (images, train-mode
    forward, no gradients): inherited weights come without statistics of their own (BigNAS/OFA)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for img in batches:
        model(img)
    for m, mom in zip(norms, saved):
        m.momentum = mom
    return model.eval()
