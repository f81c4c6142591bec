"""Input size as a search dimension: which input scales a search tries, and which of them its settings allow.

A design of a space with an ``input_scale`` decision runs at ``--imgsz`` x its scale (:meth:`SearchSpace.imgsz`):
its latency is timed at that size, it trains at ``--proxy-imgsz`` x the same scale while searching (and at the
re-rank size x the scale), and the final stage trains, judges and ships it at its own size. Estimators that score
every design at one size (the supernet, zero-cost proxies, DARTS) and a latency table profiled at one size cannot
tell sizes apart, so there the search keeps every design at the deploy size and says why.
"""

from __future__ import annotations

from .checks import MAX_IMGSZ
from .errors import UserError
from .space import SearchSpace, load_space


def one_size_reason(cfg) -> str | None:
    """Why this configuration can only compare designs at one input size, or ``None``."""
    if cfg.estimator == "supernet":
        return "the supernet scores every design at one input size"
    if cfg.estimator == "zero-cost":
        return "zero-cost proxies score every design at one input size"
    if cfg.strategy == "darts":
        return "DARTS searches blocks at one input size"
    if cfg.latency_lut:
        return "--latency-lut predicts latency at the one size it was profiled at"
    return None


def search_space(cfg) -> SearchSpace:
    """The space a search runs in: ``--space``, its input scales narrowed to ``--input-scales``, or to the deploy
    size alone where :func:`one_size_reason` says the settings cannot compare sizes; of scales that give one input
    side while searching or deploying, the one nearest 1 (:func:`same_size_scales`)."""
    return _plan(cfg)[0]


def _plan(cfg) -> tuple[SearchSpace, str | None]:
    """:func:`search_space` and the line that says which scales it leaves out and why (``None``: none)."""
    space = load_space(cfg.space)
    scales = space.decisions.get("input_scale", ())
    why = one_size_reason(cfg)
    if getattr(cfg, "input_scales", None) is not None:
        space = space.with_input_scales(cfg.input_scales)
        if why and len(space.decisions["input_scale"]) > 1:
            raise UserError(f"--input-scales {','.join(f'{s:g}' for s in cfg.input_scales)[:60]} needs designs "
                            f"scored at their own sizes, but {why}: use --input-scales 1")
    elif why and len(scales) > 1:
        return space.with_input_scales((1.0,)), f"every design runs at the deploy size ({cfg.imgsz} px): {why}"
    if not (dropped := same_size_scales(space, cfg.imgsz, cfg.proxy_imgsz)):
        return space, None
    over = any(space.imgsz({"input_scale": s}, cfg.imgsz) > MAX_IMGSZ for s in dropped)
    note = (f"input scales {', '.join(f'{s:g}' for s in dropped)} are left out: at --imgsz {cfg.imgsz} and "
            f"--proxy-imgsz {cfg.proxy_imgsz} they give the input side of another scale (sides are multiples of 32; "
            "a larger --proxy-imgsz tells more sizes apart)" + (f" or a side over {MAX_IMGSZ} px" if over else ""))
    return space.with_input_scales([s for s in space.decisions["input_scale"] if s not in dropped]), note


def same_size_scales(space: SearchSpace, imgsz: int, proxy_imgsz: int) -> list[float]:
    """The input scales a search at deploy size ``imgsz`` and proxy size ``proxy_imgsz`` leaves out: each gives the
    deploy or the training side of a kept scale (1, the hand-scaled ones, then those nearer 1), so it would be the
    same design at the same size, or a design timed at another size but scored at the same one; or a side over
    ``MAX_IMGSZ``."""
    kept, dropped = [], []
    hand = space.spec.hand_scaled  # of scales with one side, 1, then a hand-scaled one, then the nearest to 1
    for s in sorted(space.decisions.get("input_scale", ()), key=lambda s: (s != 1.0, s not in hand, abs(s - 1.0), s)):
        side = space.imgsz({"input_scale": s}, imgsz)
        train = train_size(proxy_imgsz, side, imgsz)
        if side > MAX_IMGSZ or any(side == k[0] or train == k[1] for k in kept):
            dropped.append(s)
        else:
            kept.append((side, train))
    return sorted(dropped)


def scale_note(cfg, space: SearchSpace | None = None) -> str | None:
    """One line on the input scales this search leaves out, and why (``None``: it searches them all); ``space``:
    the one the search runs in, when its study narrowed it."""
    mine, note = _plan(cfg)
    if space is not None and space.decisions.get("input_scale") != mine.decisions.get("input_scale"):
        return (f"this study searches input scales {', '.join(f'{s:g}' for s in space.decisions['input_scale'])}, "
                "those it started with")
    return note


def train_size(proxy_imgsz: int, imgsz: int, deploy_imgsz: int) -> int:
    """The training size of a design deployed at ``imgsz`` when designs at ``deploy_imgsz`` train at
    ``proxy_imgsz``: the same ratio, a multiple of 32 (at least 32)."""
    return max(32, round(proxy_imgsz * imgsz / deploy_imgsz / 32) * 32)
