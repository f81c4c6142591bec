"""Render a genotype to Ultralytics model rows, and read a model YAML back into a genotype where it lies in the space.

Rendered models carry absolute widths and repeats with an explicit identity scale (``scale: n``,
``scales: {n: .., s: ..}`` both identity), so Ultralytics never re-scales them; a file name that makes it guess
scale m, l or x (which would silently change C3k2 blocks) fails loudly with a KeyError instead.
"""

from __future__ import annotations

import math

from ..errors import UserError
from ._schema import STAGES, SpaceSpec, is_active, is_choice, levels_of

IDENTITY_SCALE = {"n": [1.0, 1.0, 65536], "s": [1.0, 1.0, 65536]}  # n, s: no re-scaling, whatever the name


def _row(frm, n: int, spec, width: int) -> list:
    return [frm, n, spec.module, spec.render_args(width)]


def render_rows(spec: SpaceSpec, g: dict, nc: int, roles: list | None = None) -> dict:
    """Model dict (Ultralytics YAML schema) for genotype ``g``; ``roles`` (if given) receives one ``role:choice``
    name per layer (``P3.block:C3k2``, ``N3.down:Conv``, ``up``, ``cat``, ``detect:e2e``), the supernet's keys."""
    v = spec.vocab
    roles = [] if roles is None else roles
    backbone = [[-1, 1, "Conv", [g["stem"], 3, 2]]]
    roles.append("stem:Conv")
    outputs = {}
    for s in STAGES:
        backbone.append(_row(-1, 1, v["downsample"][g[f"{s}.down"]], g[f"{s}.down_width"]))
        backbone.append(_row(-1, g[f"{s}.n"], v["blocks"][g[f"{s}.block"]], g[f"{s}.width"]))
        roles += [f"{s}.down:{g[f'{s}.down']}", f"{s}.block:{g[f'{s}.block']}"]
        outputs[s] = len(backbone) - 1
    p5 = g["P5.width"]
    backbone.append(_row(-1, 1, v["spp"][g["spp"]], p5))
    roles.append(f"spp:{g['spp']}")
    attention = v["attention"][g["attention"]]
    if attention.module is not None:
        backbone.append(_row(-1, g["attention_n"], attention, p5))
        roles.append(f"attention:{g['attention']}")
    top = len(backbone) - 1
    head, base = [], len(backbone)

    def add(row, role):
        head.append(row)
        roles.append(role)
        return base + len(head) - 1

    def block(level):
        return add(_row(-1, g[f"{level}.n"], v["blocks"][g[f"{level}.block"]], g[f"{level}.width"]),
                   f"{level}.block:{g[f'{level}.block']}")

    down, nd, levels = v["downsample"][g["neck_down"]], g["neck_down"], levels_of(g)
    up = ["nn.Upsample", [None, 2, "nearest"]]

    def top_down(level, skip):
        add([-1, 1, *up], "up")
        add([[-1, outputs[skip]], 1, "Concat", [1]], "cat")
        return block(level)

    def bottom_up(source, level, skip):
        add(_row(-1, 1, down, g[f"{source}.width"]), f"{source}.down:{nd}")
        add([[-1, skip], 1, "Concat", [1]], "cat")
        return block(level)

    n4 = top_down("N4", "P4")
    n3 = top_down("N3", "P3")
    outs = [n3]
    if levels == "P2-P5":  # as Ultralytics' p2 models: on down to stride 4, then up from there
        outs = [top_down("N2", "P2")]
        outs.append(bottom_up("N2", "N3out", n3))
    outs.append(bottom_up("N3out" if levels == "P2-P5" else "N3", "N4out", n4))
    if levels != "P3-P4":
        outs.append(bottom_up("N4out", "N5out", top))
    detect = f"detect:{g['head']}" + ("" if levels == "P3-P5" else f"@{levels}")  # a head per set of levels
    add([outs, 1, "Detect", ["nc"]], detect)  # as Ultralytics' YAMLs: the data's nc
    headcfg = spec.heads[g["head"]]
    return {
        "nc": nc, "scale": "n", "scales": dict(IDENTITY_SCALE),
        "reg_max": int(headcfg.get("reg_max", 16)), "end2end": bool(headcfg.get("end2end", False)),
        "backbone": backbone, "head": head,
    }


def _make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


def absolute_rows(model: dict) -> list[list]:
    """Rows of a model dict with its ``scales`` applied (widths and repeats as Ultralytics would build them)."""
    depth, width, max_ch = model.get("depth_multiple", 1.0), model.get("width_multiple", 1.0), float("inf")
    scales, scale = model.get("scales"), model.get("scale")
    if scales:
        scale = scale or next(iter(scales))
        if scale not in scales:
            raise UserError(f"model scale '{scale}' is not one of its scales {list(scales)}")
        depth, width, max_ch = scales[scale]
    rows = []
    for f, n, m, args in model.get("backbone", []) + model.get("head", []):
        args = list(args)
        n = max(round(n * depth), 1) if n > 1 else n
        if m not in ("Concat", "Detect") and not str(m).startswith("nn.") and args and isinstance(args[0], (int, float)):
            args[0] = _make_divisible(min(args[0], max_ch) * width, 8)
            if m == "C3k2" and scale in {"m", "l", "x"}:
                args[1:2] = [True]
        rows.append([f, n, m, args])
    return rows


def _match(spec: SpaceSpec, decision: str, row, where: str) -> str:
    vocab = spec.vocab[spec.vocab_of[decision]]
    for name in spec.decisions[decision]:
        block = vocab[name]
        if block.module == row[2] and block.render_args(row[3][0]) == row[3]:
            return name
    raise UserError(f"{where}: row {row[2]} {row[3]} matches no choice of decision '{decision}' in space {spec.name}")


def genotype_from_model(spec: SpaceSpec, model: dict, imgsz: int | None = None, where: str = "model") -> dict:
    """Inverse of :func:`render_rows` for models that lie in the space; one clear error where it does not."""
    rows = absolute_rows(model)
    g: dict = {}
    it = iter(enumerate(rows))

    def nxt():
        try:
            return next(it)[1]
        except StopIteration:
            raise UserError(f"{where}: has fewer layers than designs of space {spec.name}") from None

    g["stem"] = nxt()[3][0]
    for s in STAGES:
        d, b = nxt(), nxt()
        g[f"{s}.down"], g[f"{s}.down_width"] = _match(spec, f"{s}.down", d, where), d[3][0]
        g[f"{s}.block"], g[f"{s}.width"], g[f"{s}.n"] = _match(spec, f"{s}.block", b, where), b[3][0], b[1]
    g["spp"] = _match(spec, "spp", nxt(), where)
    row = nxt()
    if row[2] == "nn.Upsample":
        empty = [n for n in spec.decisions["attention"] if spec.vocab["attention"][n].module is None]
        if not empty:
            raise UserError(f"{where}: has no attention layer, which every design of space {spec.name} has")
        g["attention"], g["attention_n"] = empty[0], spec.decisions["attention_n"][0]
    else:
        g["attention"], g["attention_n"] = _match(spec, "attention", row, where), row[1]
        nxt()
    def block(level):
        b = nxt()
        g[f"{level}.block"], g[f"{level}.width"], g[f"{level}.n"] = _match(spec, f"{level}.block", b, where), b[3][0], b[1]

    def down(row):
        name = _match(spec, "neck_down", row, where)
        if g.setdefault("neck_down", name) != name:
            raise UserError(f"{where}: its neck downsamplings differ; space {spec.name} uses one for all")

    nxt()  # Concat P4
    block("N4")
    nxt(), nxt()  # Upsample, Concat P3
    block("N3")
    levels, row = "P3-P5", nxt()
    if row[2] == "nn.Upsample":  # on down to P2, and up from there
        levels = "P2-P5"
        if "N2.block" not in spec.decisions:
            raise UserError(f"{where}: detects on levels P2-P5, which space {spec.name} does not offer")
        nxt()  # Concat P2
        block("N2")
        down(nxt())
        nxt()  # Concat N3
        block("N3out")
        row = nxt()
    down(row)
    nxt()  # Concat N4
    block("N4out")
    row = nxt()
    if row[2] == "Detect":
        levels = "P3-P4" if levels == "P3-P5" else "P2-P4"
    else:
        down(row)
        nxt()  # Concat top
        block("N5out")
        row = nxt()
    if row[2] != "Detect" or next(it, None) is not None:
        raise UserError(f"{where}: its head is not where designs of space {spec.name} have it")
    if not is_choice(levels, spec.decisions.get("levels", ("P3-P5",))):
        raise UserError(f"{where}: detects on levels {levels}, which space {spec.name} does not offer")
    if "levels" in spec.decisions:
        g["levels"] = levels
    for d, choices in spec.decisions.items():
        if d not in g and not is_active(d, g):
            g[d] = choices[0]  # shapes nothing in this design
    reg_max, e2e = model.get("reg_max", 16), bool(model.get("end2end", False))
    heads = [h for h in spec.decisions["head"] if spec.heads[h].get("reg_max", 16) == reg_max and bool(spec.heads[h].get("end2end", False)) == e2e]
    if not heads:
        raise UserError(f"{where}: head reg_max={reg_max} end2end={e2e} is not a head of space {spec.name}")
    g["head"] = heads[0]
    if "imgsz" in spec.decisions:
        g["imgsz"] = imgsz if imgsz is not None else spec.decisions["imgsz"][0]
    if "input_scale" in spec.decisions:
        g["input_scale"] = 1.0  # a model file is read as a design at the deploy size
    return g
