"""Weight inheritance: every design starts from the user's pretrained checkpoints of hand-designed points.

Each ``--pretrained`` checkpoint must hold a point of the space (``yolo11n.pt`` is the point ``yolo11n``). A design
takes, from the checkpoint that gives it the most, every weight whose layer corresponds: layers are matched by their
role in the rendered design (``P4.block:C3k2``, ``N3.down:Conv``, the head's branch per pyramid level), as the
supernet matches them (:mod:`ultranas.supernet`). Within a layer both models are laid onto one virtual tensor as wide
as the wider of the two (:func:`~ultranas.supernet._layout.trace_slices`: the first channels, per equal part where an
output is cut in parts, concatenations at their offsets), so that

- an identical layer is copied whole;
- a narrower layer takes the first channels (OFA's rule), a wider one gets the checkpoint's channels in its first
  ones and keeps its own initialisation in the rest;
- a stage with fewer repeats keeps the first blocks, one with more keeps its own extra blocks;
- another block type, a new P2 path or a new head branch keeps its own initialisation; another input size changes
  nothing;
- the class convolutions are taken only where the class names are the same (Ultralytics keeps them for the same
  class count).

A layer whose block differs from the checkpoint's at the same place (or that it lacks) keeps its own
initialisation, and its output is laid out as the first channels of the wider of the two, so what reads it (a
concatenation, the next stage) stays in line with the checkpoint. Where no consistent layout exists at all (seen on
designs that differ from the checkpoint in most blocks), each tensor of the same shape is copied and the rest keeps its
initialisation. The share inherited is the share of the design's parameters (elements) that came from the checkpoint.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from . import ultra
from .errors import UserError

_BRANCH = re.compile(r"^((?:one2one_)?cv[23])\.(\d+)\.(.*)$")
_CLASSES = re.compile(r"^(?:one2one_)?cv3\.L\d+\.2\.")  # the last conv of a class branch: one output per class
SHARED_HEAD = ("cv2.", "one2one_cv2.", "dfl.")  # box branch and DFL: the same modules in both head layouts


def _levels(g: dict) -> list[int]:
    lo, hi = g.get("levels", "P3-P5").replace("P", "").split("-")
    return list(range(int(lo), int(hi) + 1))


def tensor_keys(space, g: dict, nc: int, model=None) -> tuple[dict, dict[str, tuple], list[str]]:
    """The design's model dict; for each of its tensors the key of the weights it holds: (layer role, name in the
    layer), the head's branches named by pyramid level; and each layer's role (``P4.block:C3k2``, ``up``)."""
    from .supernet._supernet import rendered_roles

    g = space.complete(g)
    model_dict, roles = rendered_roles(space, g, nc)
    model = ultra.build_model(model_dict, nc=nc) if model is None else model  # the design's, if built already
    levels, keys = _levels(g), {}
    for name in _named(model):
        _, layer, rest = name.split(".", 2)
        role = roles[int(layer)]
        if role.startswith("detect:"):  # one head per type (and layout): its branches are matched level by level
            role = role.split("@")[0] + ("-v8" if role.endswith("-v8") else "")
            if role.endswith("-v8") and rest.startswith(SHARED_HEAD):
                role = role.removesuffix("-v8")
            if m := _BRANCH.match(rest):
                rest = f"{m[1]}.L{levels[int(m[2])]}.{m[3]}"
        keys[name] = (role, rest)
    return model_dict, keys, roles


def _named(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and float buffers (not ``num_batches_tracked``) by name."""
    from .supernet._layout import named_tensors

    return {n: t for n, t in named_tensors(model).items() if t.is_floating_point()}


@dataclass
class Source:
    """One pretrained checkpoint as a point of the space: its file, the point's name and genotype, its weights."""

    path: Path
    point: str
    genotype: dict
    names: list[str]  # its class names
    model: torch.nn.Module
    keys: dict[str, tuple]  # tensor name -> key
    roles: list[str]  # each layer's role
    widths: list[int]  # each layer's output channels
    slots: dict[int, set]  # where each layer's output is read (:func:`_slots`)


def load_source(path: str | Path, space) -> Source:
    """A ``--pretrained`` checkpoint, loaded without running code from it; refused in one line unless it holds a
    detection model that is a point of ``space`` (the nearest point named)."""
    from .space._render import genotype_from_model

    path = Path(path)
    ckpt = ultra.load_checkpoint(path)  # restricted unpickler; a classification or segmentation model is refused
    held = ckpt.get("ema") or ckpt["model"]
    where = f"--pretrained {path}"
    nc = int(getattr(held.model[-1], "nc", 0) or len(held.names))
    yaml = dict(held.yaml)
    if yaml.get("scales") and not yaml.get("scale"):  # older checkpoints: the scale is in the YAML file's name
        from ultralytics.nn.tasks import guess_model_scale

        yaml["scale"] = guess_model_scale(str(yaml.get("yaml_file", ""))) or None
    try:
        g = space.complete(genotype_from_model(space.spec, yaml, where=where))
    except UserError as e:
        raise UserError(f"{e}; the nearest point by parameters is {_nearest(space, held, nc)}") from None
    point = next((name for name, p in space.points.items() if space.design_hash(p, nc) == space.design_hash(g, nc)),
                 None)
    if point is None:
        raise UserError(f"{where} is a design of space {space.name} but none of its points (the nearest: "
                        f"{_nearest(space, held, nc, g)}): give checkpoints of hand-designed points, e.g. yolo11n.pt")
    model_dict, keys, roles = tensor_keys(space, g, nc)
    model = ultra.build_model(model_dict, nc=nc)
    try:
        model.load_state_dict(held.float().state_dict(), strict=True)
    except RuntimeError as e:
        raise UserError(f"{where}: its weights do not fit point {point} of space {space.name}: "
                        f"{str(e).splitlines()[0][:160]}") from None
    names = list(held.names.values()) if isinstance(held.names, dict) else list(held.names)
    return Source(path, point, g, names, model.eval(), keys, roles, _widths(model), _slots(model, roles, _levels(g)))


def _nearest(space, held: torch.nn.Module, nc: int, g: dict | None = None) -> str:
    """The point with the fewest decisions unlike ``g`` (a design of the space), else the closest in parameters."""
    if g is not None:
        return min(space.points, key=lambda name: sum(
            space.complete(space.points[name])[d] != g[d] for d in space.decisions if d not in ("input_scale", "imgsz")))
    n = ultra.count_params(held)
    sizes = {name: ultra.count_params(ultra.build_model(space.render(p, nc), nc=nc)) for name, p in space.points.items()}
    return min(sizes, key=lambda k: abs(sizes[k] - n))


def _grid(idx: list, shape: tuple) -> tuple:
    """Per-dimension indices (``None``: all) as broadcastable index tensors."""
    out = []
    for d, i in enumerate(idx):
        i = torch.arange(shape[d]) if i is None else i.cpu()
        out.append(i.view([-1 if k == d else 1 for k in range(len(shape))]))
    return tuple(out)


def _widths(model: torch.nn.Module) -> list[int]:
    """Each layer's output channels (one forward pass on a small probe)."""
    out, hooks = [], []
    for i, layer in enumerate(model.model):
        hooks.append(layer.register_forward_hook(lambda _m, _i, y, i=i: out.append((i, y.shape[1] if isinstance(
            y, torch.Tensor) else 0))))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return [w for _, w in sorted(out)]


def _inputs(model: torch.nn.Module, roles: list[str], i: int) -> list[int]:
    """The layers whose outputs layer ``i`` reads, through upsampling and concatenation."""
    f = model.model[i].f
    out = []
    for j in f if isinstance(f, list) else [f]:
        j = i - 1 if j == -1 else j
        out += _inputs(model, roles, j) if roles[j] in ("up", "cat") else [j]
    return out


def _slots(model: torch.nn.Module, roles: list[str], levels: list[int]) -> dict[int, set]:
    """Layer -> the places its output is read at: (the layer reading it, which input), the head by level."""
    out: dict[int, set] = {}
    for i, role in enumerate(roles):
        if role in ("up", "cat"):
            continue
        reader = "detect" if role.startswith("detect:") else role.split(":")[0]
        for k, j in enumerate(_inputs(model, roles, i)):
            out.setdefault(j, set()).add((reader, levels[k] if reader == "detect" else k))
    return out


def _restarts(sides: dict) -> dict[str, dict[int, int]]:
    """Per side, the layers whose output is laid out anew as the first channels of a common width: a layer whose
    block differs from the other model's at the same place (or that the other lacks), and a layer read where the
    other model reads a wider one (a place one side lacks: attention, the P2 path's downsampling), so that every
    reader sees its inputs at the same offsets in both models."""
    own = {}  # side -> layer -> the width its place has in both models
    for side, other in (("mine", "theirs"), ("theirs", "mine")):
        roles, widths = sides[side]["roles"], sides[side]["widths"]
        there = {r.split(":")[0]: (r, w) for r, w in zip(sides[other]["roles"], sides[other]["widths"])}
        own[side] = {i: (max(widths[i], there.get(r.split(":")[0], ("", 0))[1]),
                         there.get(r.split(":")[0], ("",))[0] == r)
                     for i, r in enumerate(roles[:-1]) if r not in ("up", "cat")}
    slot_width: dict = {}
    for side in own:
        for i, places in sides[side]["slots"].items():
            for place in places if i in own[side] else ():
                slot_width[place] = max(slot_width.get(place, 0), own[side][i][0])
    out = {}
    for side in own:
        out[side] = {}
        for i, (width, matched) in own[side].items():
            wide = max([width] + [slot_width[p] for p in sides[side]["slots"].get(i, ())])
            if not matched or wide != width:
                out[side][i] = wide
    return out


@torch.no_grad()
def transfer(model: torch.nn.Module, design: dict, keys: dict[str, tuple], roles: list[str], source: Source,
             names: list[str]) -> int:
    """Copy into ``model`` (built from ``design``, whose tensor keys and layer roles are ``keys``, ``roles``, for
    data with class ``names``) what corresponds in ``source``; returns the number of parameter elements copied."""
    from .supernet._layout import NotShareable, trace_slices

    mine, theirs = _named(model), _named(source.model)
    by_key = {k: n for n, k in source.keys.items()}
    shared = {n: by_key[k] for n, k in keys.items() if k in by_key and mine[n].ndim == theirs[by_key[k]].ndim}
    back = {s: n for n, s in shared.items()}
    sides = {"mine": {"roles": roles, "widths": _widths(model), "net": model},
             "theirs": {"roles": source.roles, "widths": source.widths, "net": source.model, "slots": source.slots}}
    sides["mine"]["slots"] = _slots(model, roles, _levels(design))  # the checkpoint's are computed once, on loading
    reset = _restarts(sides)
    virtual = {n: [max(a, b) for a, b in zip(mine[n].shape, theirs[s].shape)] for n, s in shared.items()}
    own = {("mine", n): list(t.shape) for n, t in mine.items() if n not in shared}
    own |= {("theirs", n): list(t.shape) for n, t in theirs.items() if n not in back}

    def shapes(side: str, tensors: dict, net) -> dict:
        key = (lambda n: n) if side == "mine" else (lambda n: back.get(n))
        return {n: tuple(virtual[key(n)] if key(n) in virtual else own[side, n]) for n in tensors} | _ints(net)

    try:
        for side, tensors, net in (("mine", mine, model), ("theirs", theirs, source.model)):  # inputs wider than
            grow: dict[str, int] = {}                                                        # either weight
            trace_slices(net, shapes(side, tensors, net), grow=grow, reset=reset[side])
            for n, need in grow.items():
                key = n if side == "mine" else back.get(n)
                target = virtual[key] if key in virtual else own[side, n]
                target[1] = max(target[1], need)
        mine_idx = trace_slices(model, shapes("mine", mine, model), reset=reset["mine"])
        theirs_idx = trace_slices(source.model, shapes("theirs", theirs, source.model), reset=reset["theirs"])
    except NotShareable:
        mine_idx = None
        fed = {side: {str(i): [v["widths"][j] for j in _inputs(v["net"], v["roles"], i)] if i else [3]
                      for i in range(len(v["roles"]))} for side, v in sides.items()}
    params, copied = {n for n, _ in model.named_parameters()}, 0
    for n, s in shared.items():
        dst, src = mine[n], theirs[s]
        if names != source.names and _CLASSES.match(keys[n][1]):
            continue  # other classes: the class outputs keep their own initialisation
        if mine_idx is None:  # no consistent layout: tensors of the same shape, in layers fed as in the checkpoint
            if dst.shape != src.shape or fed["mine"][n.split(".")[1]] != fed["theirs"][s.split(".")[1]]:
                continue
            dst.copy_(src)
            count = dst.numel()
        else:
            room = torch.full(virtual[n], float("nan"))
            room[_grid(theirs_idx[s], tuple(virtual[n]))] = src.detach().float().cpu()
            got = room[_grid(mine_idx[n], tuple(virtual[n]))]
            keep = ~torch.isnan(got)
            dst[keep.to(dst.device)] = got[keep].to(dst.device, dst.dtype)
            count = int(keep.sum())
        copied += count if n in params else 0
    return copied


def _ints(model: torch.nn.Module) -> dict[str, tuple]:
    from .supernet._layout import named_tensors

    return {n: tuple(t.shape) for n, t in named_tensors(model).items() if not t.is_floating_point()}


class Inheritance:
    """The user's pretrained checkpoints (``--pretrained``) and what each design inherits from them.

    Args:
        paths: Ultralytics checkpoints of points of ``space``.
        space: the search space.
    """

    def __init__(self, paths: list[str], space):
        self.space = space
        self.sources = [load_source(p, space) for p in paths]
        h = hashlib.sha1()
        for p in paths:
            h.update(Path(p).read_bytes())
        self.ident = h.hexdigest()[:12]  # the weights' identity: caches of fine-tuned results key on it

    def apply(self, model: torch.nn.Module, g: dict, names: list[str]) -> dict:
        """Load into ``model`` (built from ``g`` for data with class ``names``) the weights of the checkpoint that
        gives it the largest share; returns ``{"inherited_from": point, "inherited": share of parameters}``."""
        _, keys, roles = tensor_keys(self.space, g, len(names), model)
        fresh = {n: t.detach().clone() for n, t in _named(model).items()} if len(self.sources) > 1 else {}
        best = None
        for src in self.sources:
            copied = transfer(model, g, keys, roles, src, names)
            if best is None or copied > best[0]:
                best = (copied, src)
            with torch.no_grad():  # the next checkpoint starts from the design's own initialisation again
                for n, t in _named(model).items() if fresh else ():
                    t.copy_(fresh[n])
        if fresh:
            transfer(model, g, keys, roles, best[1], names)
        return {"inherited_from": best[1].point, "inherited": round(best[0] / ultra.count_params(model), 4)}

    def initializer(self, g: dict, names: list[str], facts: dict):
        """A function that loads the design's inherited weights into a model built from it (the fast trainer's
        ``inits``) and notes in ``facts`` what it took."""
        return lambda model: facts.update(self.apply(model, g, names))

    def checkpoint(self, model_dict: dict, g: dict, names: list[str], path: Path, seed: int) -> tuple[Path, dict]:
        """The design's inherited weights as a checkpoint for Ultralytics' ``pretrained=`` (what it does not inherit
        initialised with ``seed``, as a training from scratch with that seed), and what it inherited."""
        from .estimation._torch import seeded

        with seeded(seed):
            model = ultra.build_model({**model_dict, "nc": len(names)}, nc=len(names))
        info = self.apply(model, g, names)
        path.parent.mkdir(parents=True, exist_ok=True)
        return ultra.save_trained(model, path), info

    def describe(self) -> str:
        return ", ".join(f"{s.point} ({s.path.name})" for s in self.sources)

    def without_own(self, references: list[str]) -> list[str]:
        """The references no checkpoint is of: they start from what they inherit from the others."""
        return [r for r in references if r not in {s.point for s in self.sources}]
