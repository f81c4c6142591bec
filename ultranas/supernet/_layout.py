"""Which supernet channels a subnet uses: channel layouts traced through one forward pass of the subnet.

A subnet is a real Ultralytics model built from its rendered YAML; its weights are slices of the supernet's.
:func:`trace_slices` runs the subnet once on a probe image under a ``TorchFunctionMode`` and follows, for every
tensor, which supernet channel each of its channels is (its *layout*):

- a convolution's output channels are the first ``k`` of the supernet's ``K`` (OFA's rule), or the first ``k/g`` of
  each of ``g`` equal parts when the output is later cut into ``g`` (C2f's ``cv1``, the block before ``ADown``);
  a depthwise convolution keeps its input's layout;
- batch norm, activations, pooling, upsampling and adds keep the layout; ``cat`` joins layouts at the supernet's
  offsets; ``chunk``/``split`` cut them;
- a layout is lost through reshapes (attention); a convolution reading a lost layout takes the first channels, which
  is right where heads keep their size (``C2PSA``, ``A2C2f``: 64 and 32 channels per head at every width).

Every subnet parameter and buffer then gets one index tensor per dimension into its supernet tensor.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_CONV = (F.conv2d, torch.conv2d)
_NORM = (F.batch_norm, torch.batch_norm)
_CUT = (torch.Tensor.chunk, torch.chunk, torch.Tensor.split, torch.split)


class NotShareable(ValueError):
    """A subnet whose channels cannot be mapped onto the supernet consistently."""


class _Layout:
    """Supernet channel ``idx[i]`` of a tensor's channel ``i``; ``size``: the supernet tensor's channels."""

    __slots__ = ("idx", "size", "origins")

    def __init__(self, idx: torch.Tensor, size: int, origins: frozenset):
        self.idx, self.size, self.origins = idx, size, origins  # origins: the convolutions that produced it


def _first(k: int, size: int, parts: int) -> torch.Tensor:
    """The first ``k / parts`` channels of each of ``parts`` equal parts of ``size``."""
    if k % parts or size % parts:
        raise NotShareable(f"{k} of {size} channels cannot be cut into {parts} equal parts")
    return torch.cat([j * (size // parts) + torch.arange(k // parts) for j in range(parts)])


def _dim(args: tuple, kwargs: dict, pos: int) -> int:
    return kwargs.get("dim", args[pos] if len(args) > pos else 0)


class _Tracer(TorchFunctionMode):
    """One traced forward: fills ``slices`` (tensor name -> per-dim indices) and ``cut`` (conv name -> parts)."""

    def __init__(self, names: dict[int, str], super_shapes: dict[str, tuple], parts: dict[str, int], strict: bool,
                 grow: dict[str, int] | None = None):
        super().__init__()
        self.names, self.super_shapes, self.parts, self.strict = names, super_shapes, parts, strict
        self.grow = grow  # given: a convolution reading more supernet channels than its weight notes how many
        self.layouts: dict[int, tuple[torch.Tensor, _Layout]] = {}
        self.slices: dict[str, list] = {}
        self.cut: dict[str, int] = {}

    def get(self, t) -> _Layout | None:
        hit = self.layouts.get(id(t)) if isinstance(t, torch.Tensor) else None
        return hit[1] if hit is not None and hit[0] is t else None

    def put(self, t, layout: _Layout) -> None:
        self.layouts[id(t)] = (t, layout)  # the tensor is kept alive, so its id is not reused

    def assign(self, tensor, idx: list) -> None:
        name = self.names.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        if name is not None:
            self.slices[name] = idx

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _CONV:
            self._conv(out, *args, **kwargs)
        elif func in _NORM:
            rest = list(args[3:5]) + [None] * (5 - len(args))
            self._norm(out, *args[:3], kwargs.get("weight", rest[0]), kwargs.get("bias", rest[1]))
        elif func is torch.cat:
            self._cat(out, args[0], _dim(args, kwargs, 1))
        elif func in _CUT:
            self._cut(out, args[0], _dim(args, kwargs, 2))
        elif isinstance(out, torch.Tensor) and out.ndim == 4:
            self._same(out, [*args, *kwargs.values()])
        return out

    def _conv(self, out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        name = self.names.get(id(weight))
        if name is None:
            return
        big, lay, k, c_in = self.super_shapes[name], self.get(x), weight.shape[0], x.shape[1]
        in_idx = lay.idx if lay is not None else torch.arange(c_in)
        if groups == 1:
            if lay is not None and lay.size > big[1]:  # fewer: a shallower stage reads fewer concatenated parts
                if self.grow is None:
                    raise NotShareable(f"{name}: reads {lay.size} supernet channels, its supernet weight {big[1]}")
                self.grow[name] = max(self.grow.get(name, 0), lay.size)
            out_idx, origins = _first(k, big[0], self.parts.get(name, 1)), frozenset([name])
            self.assign(weight, [out_idx, in_idx, None, None])
        elif groups == c_in == k and weight.shape[1] == 1:  # depthwise: channel i reads channel i
            out_idx, origins = in_idx, lay.origins if lay is not None else frozenset()
            self.assign(weight, [out_idx, None, None, None])
        else:
            raise NotShareable(f"{name}: a grouped convolution ({groups} groups) is not elastic")
        self.assign(bias, [out_idx])
        self.put(out, _Layout(out_idx, big[0], origins))

    def _norm(self, out, x, running_mean, running_var, weight=None, bias=None):
        lay = self.get(x) or _Layout(torch.arange(x.shape[1]), x.shape[1], frozenset())
        for t in (running_mean, running_var, weight, bias):
            self.assign(t, [lay.idx])
        self.put(out, lay)

    def _cat(self, out, tensors, dim):
        lays = [self.get(t) for t in tensors]
        if dim not in (1, -3) or any(lay is None for lay in lays):
            return
        idx, size = [], 0
        for lay in lays:
            idx.append(lay.idx + size)
            size += lay.size
        self.put(out, _Layout(torch.cat(idx), size, frozenset().union(*(lay.origins for lay in lays))))

    def _cut(self, pieces, x, dim):
        lay = self.get(x)
        if lay is None or dim not in (1, -3) or x.ndim != 4:
            return
        n = len(pieces)
        if len({p.shape[1] for p in pieces}) == 1:
            for origin in lay.origins:
                self.cut[origin] = max(self.cut.get(origin, 1), n)
        part, start = lay.size // n, 0
        for j, p in enumerate(pieces):
            sel = lay.idx[start:start + p.shape[1]] - j * part
            start += p.shape[1]
            if lay.size % n or not ((sel >= 0) & (sel < part)).all():
                if self.strict:
                    raise NotShareable("a chunk of a subnet tensor spans two parts of the supernet's")
                return
            self.put(p, _Layout(sel, part, lay.origins))

    def _same(self, out, args):
        lays = [lay for a in args if (lay := self.get(a)) is not None and a.ndim == 4 and a.shape[1] == out.shape[1]]
        if not lays:
            return
        if any(lay.size != lays[0].size or not torch.equal(lay.idx, lays[0].idx) for lay in lays):
            if self.strict:
                raise NotShareable("two inputs of one operation read different supernet channels")
            target = max(_parts(lay) for lay in lays)  # an add of a plain and a parted tensor (GhostBottleneck):
            for lay in lays:                             # lay the plain one's producers out in parts too
                have = _parts(lay)
                for origin in lay.origins if have < target else ():
                    self.cut[origin] = max(self.cut.get(origin, 1), self.parts.get(origin, 1) * target // have)
        self.put(out, _Layout(lays[0].idx, lays[0].size, frozenset().union(*(lay.origins for lay in lays))))


def _parts(lay: _Layout) -> int:
    """The number of equal parts whose first channels ``lay`` takes (1: plainly the first channels)."""
    k = len(lay.idx)
    for p in range(1, 9):
        if k % p == 0 and lay.size % p == 0 and torch.equal(lay.idx, _first(k, lay.size, p)):
            return p
    return 1


def named_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``model`` by name."""
    return dict(itertools.chain(model.named_parameters(), model.named_buffers()))


@torch.no_grad()
def trace_slices(sub: torch.nn.Module, super_shapes: dict[str, tuple], imgsz: int = 32,
                 grow: dict[str, int] | None = None, reset: dict[int, int] | None = None) -> dict[str, list]:
    """Per-dimension indices (``None``: all) of every tensor of ``sub`` into the supernet tensor it is cut from.

    Args:
        sub: the subnet, an Ultralytics ``DetectionModel``.
        super_shapes: shape of the supernet tensor for each of ``sub``'s tensor names.
        imgsz: probe image side (a multiple of the largest stride).
        grow: given (a dict), nothing is returned: it receives, for each convolution that reads more supernet
            channels than its supernet weight has inputs, how many it reads (to widen ``super_shapes`` and trace
            again).
        reset: layer index -> width: that layer's output is laid out as the first channels of that many (its own
            layout inside is not followed out of it).

    Raises:
        NotShareable: where no consistent layout exists.
    """
    tensors = named_tensors(sub)
    names = {id(t): n for n, t in tensors.items()}
    probe = torch.zeros(1, 3, imgsz, imgsz, device=next(sub.parameters()).device)
    was_training, parts, current = sub.training, {}, []

    def restart(i: int):
        def hook(_module, _inputs, out):
            width = reset[i]
            current[-1].put(out, _Layout(torch.arange(out.shape[1]), width, frozenset()))
        return hook

    hooks = [sub.model[i].register_forward_hook(restart(i)) for i in reset or {}]
    sub.eval()
    try:
        for _ in range(6):  # find which outputs must be laid out in parts (cut later, or added to parted ones)
            with _Tracer(names, super_shapes, parts, strict=False, grow=grow) as tracer:
                current.append(tracer)
                sub(probe)
            found = {**parts, **{k: max(v, parts.get(k, 1)) for k, v in tracer.cut.items()}}
            if found == parts:
                break
            parts = found
        if grow is not None:
            return {}
        with _Tracer(names, super_shapes, parts, strict=True) as tracer:  # then one pass that must be consistent
            current.append(tracer)
            sub(probe)
    finally:
        sub.train(was_training)
        for h in hooks:
            h.remove()
    out = {}
    for name, t in tensors.items():
        idx, big = tracer.slices.get(name), tuple(super_shapes[name])
        if idx is None:
            if tuple(t.shape) != big:
                raise NotShareable(f"{name}: {tuple(t.shape)} is not traced and differs from the supernet's {big}")
            idx = [None] * t.ndim
        for d, i in enumerate(idx):
            if i is not None and (len(i) != t.shape[d] or int(i.max()) >= big[d]):
                raise NotShareable(f"{name}: dimension {d} maps {len(i)} channels into {big[d]}")
        out[name] = [None if i is not None and len(i) == big[d] and torch.equal(i, torch.arange(big[d])) else i
                     for d, i in enumerate(idx)]  # None: the whole dimension, nothing to gather
    return out


def gather(big: torch.Tensor, idx: list) -> torch.Tensor:
    """The slice of ``big`` that ``idx`` names (differentiable; ``big`` itself where no dimension is cut)."""
    for d, i in enumerate(idx):
        if i is not None:
            big = big.index_select(d, i.to(big.device))
    return big
