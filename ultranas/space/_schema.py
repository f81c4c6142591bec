"""Load and validate a search-space YAML (format: ``yaml_spaces/README.md``). Nothing in a space is evaluated."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import UserError
from ..safe_yaml import YAMLBudgetError, read_text, safe_load

# Ultralytics modules a space may name. Anything else is refused, so a space can never reach eval() or globals().
ALLOWED_MODULES = frozenset({
    "Conv", "GhostConv", "DWConv", "SCDown", "ADown", "AConv",
    "C1", "C2", "C2f", "C3", "C3x", "C3k2", "C3Ghost", "RepC3", "C2fCIB", "A2C2f", "C2PSA", "C2fPSA", "PSA",
    "ELAN1", "RepNCSPELAN4", "BottleneckCSP", "GhostBottleneck", "SPPF", "SPP", "SPPELAN",
})
PLACEHOLDERS = ("$c", "$h")  # output width, half of it
STAGES = ("P2", "P3", "P4", "P5")
NECK = ("N4", "N3", "N4out", "N5out")  # top-down P4, P3 output, bottom-up P4 and P5 outputs
LEVELS = ("P3-P5", "P2-P5", "P3-P4")  # the levels a design detects on (strides 8-32, 4-32, 8-16)
P2_NECK = ("N2", "N3out")  # with P2-P5: top-down P2 output, bottom-up P3 output (N3 is then top-down only)
VOCABULARIES = ("blocks", "downsample", "spp", "attention")
TOP_KEYS = {"name", "version", "description", *VOCABULARIES, "heads", "decisions", "points", "hand_scaled"}
SCALE_RANGE = (0.25, 4.0)  # input_scale choices: the design's input side / the deploy size (--imgsz)


@dataclass(frozen=True)
class BlockSpec:
    """One vocabulary entry: an Ultralytics module, its args (``$c``/``$h`` filled at render) and width rule."""

    name: str
    module: str | None
    args: tuple = ()
    width_multiple: int = 8

    def render_args(self, width: int) -> list:
        return [width if a == "$c" else width // 2 if a == "$h" else a for a in self.args]


@dataclass
class SpaceSpec:
    """A parsed space: vocabularies, decisions (flat ``name -> choices``), named points and the head options."""

    name: str
    version: int
    path: Path
    vocab: dict[str, dict[str, BlockSpec]]
    decisions: dict[str, tuple]
    points: dict[str, dict]
    heads: dict[str, dict]
    description: str = ""
    vocab_of: dict[str, str] = field(default_factory=dict)  # decision -> vocabulary it draws from
    hand_scaled: tuple = ()  # input scales every point is also offered at (as a hand-scaled baseline)


def _fail(path, key, what) -> UserError:
    return UserError(f"space {path}: key '{_clip(key)}' {what}")


def _clip(value, limit: int = 80) -> str:
    """A user's key or value as quoted in a message: at most ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _category(value) -> type:
    """The kind of a choice: bool, int (any integer type), str, or the value's own type."""
    for kind in (bool, numbers.Integral, str):
        if isinstance(value, kind):
            return kind
    return type(value)


def is_choice(value, choices) -> bool:
    """``value`` is one of ``choices``, kind included: ``1.0``, ``true`` and ``"1"`` are not the choice ``1``."""
    kind = _category(value)
    return any(kind is _category(c) and value == c for c in choices)


def _is_name(name) -> bool:
    """A vocabulary, head or point name: a non-empty one-line string."""
    return isinstance(name, str) and bool(name.strip()) and name.isprintable() and len(name) <= 100


def _is_scalar(v) -> bool:
    """A block argument: null, a bool, a finite number within +-4096, or ``$c``/``$h``."""
    if v is None or isinstance(v, bool):
        return True
    if isinstance(v, numbers.Real):
        return math.isfinite(v) and abs(v) <= 4096
    return isinstance(v, str) and v in PLACEHOLDERS


def _block(path, vocab: str, name: str, entry) -> BlockSpec:
    key = f"{vocab}.{name}"
    if entry is None:
        if vocab != "attention":
            raise _fail(path, key, "is empty: give [Module, [args]]")
        return BlockSpec(name, None)
    if isinstance(entry, dict):
        if unknown := sorted(str(k) for k in set(entry) - BLOCK_KEYS):
            raise _fail(path, f"{key}.{unknown[0]}", f"is not a block key (one of {', '.join(sorted(BLOCK_KEYS))})")
        module, args, multiple = entry.get("module"), entry.get("args", []), entry.get("width_multiple", 8)
    elif isinstance(entry, list) and len(entry) == 2:
        (module, args), multiple = entry, 8
    else:
        raise _fail(path, key, "must be [Module, [args]] or {module:, args:, width_multiple:}")
    if not isinstance(module, str) or module not in ALLOWED_MODULES:
        raise _fail(path, key, f"names module '{_clip(module)}', which is not allowed (allowed: "
                               f"{', '.join(sorted(ALLOWED_MODULES))})")
    if not isinstance(args, list) or not args or args[0] != "$c":
        raise _fail(path, key, "args must be a list starting with $c (the output width)")
    bad = [a for a in args if not _is_scalar(a)]
    if bad:
        raise _fail(path, key, f"has argument {_clip(repr(bad[0]))}: only numbers, true/false, null, $c and $h are "
                               "allowed")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 8 or multiple % 8:
        raise _fail(path, key, "width_multiple must be a multiple of 8")
    return BlockSpec(name, module, tuple(args), multiple)


def _flatten(path, where: str, prefix: str, node, out: dict) -> None:
    """Nested mappings as dotted keys (``P3: {n: 1}`` is ``P3.n``); a key given twice (nested and dotted) is refused."""
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(path, where, f"{prefix}.{k}" if prefix else str(k), v, out)
    elif prefix in out:
        raise _fail(path, f"{where}.{prefix}", "is given twice (nested and dotted)")
    else:
        out[prefix] = node


def _decision_vocab(name: str) -> str | None:
    leaf = name.rsplit(".", 1)[-1]
    return {"block": "blocks", "down": "downsample", "neck_down": "downsample", "spp": "spp", "attention": "attention"}.get(leaf)


REQUIRED = [f"{s}.{k}" for s in STAGES for k in ("down", "down_width", "block", "n", "width")] + [
    f"{n}.{k}" for n in NECK for k in ("block", "n", "width")] + ["stem", "spp", "attention", "attention_n", "neck_down", "head"]
P2_DECISIONS = tuple(f"{n}.{k}" for n in P2_NECK for k in ("block", "n", "width"))
KNOWN_DECISIONS = frozenset({*REQUIRED, "imgsz", "input_scale", "levels", *P2_DECISIONS})


def levels_of(g: dict) -> str:
    """The detection levels of genotype ``g`` (``P3-P5`` where its space has no ``levels`` decision)."""
    return g.get("levels", "P3-P5")


def is_active(decision: str, g: dict) -> bool:
    """Whether ``decision`` shapes the design ``g`` renders to: the P2 path only with P2-P5, the P5 output block not
    with P3-P4. An inactive decision keeps a valid choice, but designs that differ only there are the same model."""
    prefix, levels = decision.split(".")[0], levels_of(g)
    return not ((prefix in P2_NECK and levels != "P2-P5") or (prefix == "N5out" and levels == "P3-P4"))
INT_DECISIONS = ("down_width", "width", "stem", "n", "attention_n", "imgsz")
BLOCK_KEYS = frozenset({"module", "args", "width_multiple"})


def _read(path: Path) -> dict:
    try:
        raw = safe_load(read_text(path, "space"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"space {path} cannot be read: {e}") from None
    except YAMLBudgetError as e:
        raise UserError(f"space {path} {e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"space {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"space {path} is empty or not a mapping: see yaml_spaces/README.md for the format")
    return raw


def _check_top(path, raw: dict) -> int:
    """The top-level keys, name, version and description; returns the version."""
    if unknown := sorted(str(k) for k in set(raw) - TOP_KEYS):
        raise _fail(path, unknown[0], "is not a space key (see yaml_spaces/README.md)")
    for key in ("name", "decisions", *VOCABULARIES, "heads"):
        if key not in raw:
            raise _fail(path, key, "is missing")
    if not _is_name(raw["name"]):
        raise _fail(path, "name", "must be a non-empty one-line string")
    if not isinstance(raw.get("description") or "", str):
        raise _fail(path, "description", "must be text")
    version = raw.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(path, "version", f"must be a positive integer, got {_clip(repr(version), 40)}")
    return version


def _vocabularies(path, raw: dict) -> dict[str, dict[str, BlockSpec]]:
    vocab = {}
    for v in VOCABULARIES:
        if not isinstance(raw[v], dict) or not raw[v]:
            raise _fail(path, v, "must be a non-empty mapping of name -> [Module, [args]]")
        if bad := [n for n in raw[v] if not _is_name(n)]:
            raise _fail(path, f"{v}.{bad[0]}", "is not a name: names are one-line strings")
        vocab[v] = {n: _block(path, v, n, e) for n, e in raw[v].items()}
    return vocab


def _heads(path, heads) -> dict[str, dict]:
    if not isinstance(heads, dict) or not heads or not all(
            _is_name(n) and isinstance(h, dict) and set(h) <= {"reg_max", "end2end"} for n, h in heads.items()):
        raise _fail(path, "heads", "must map names to {reg_max: int, end2end: bool}")
    for hname, h in heads.items():
        reg_max = h.get("reg_max", 16)
        if isinstance(reg_max, bool) or not isinstance(reg_max, int) or not 1 <= reg_max <= 64:
            raise _fail(path, f"heads.{hname}.reg_max", f"must be an integer in [1, 64], got {_clip(repr(reg_max), 40)}")
        if not isinstance(h.get("end2end", False), bool):
            raise _fail(path, f"heads.{hname}.end2end", "must be true or false")
    return heads


def _choices_problem(name: str, choices: list, vocab: dict, heads: dict) -> str | None:
    """What is wrong with the choices of decision ``name`` (a known one), or None."""
    leaf = name.rsplit(".", 1)[-1]
    if name == "levels":
        unknown = [c for c in choices if c not in LEVELS]
        return f"has {_clip(repr(unknown[0]), 40)}: levels are {', '.join(LEVELS)}" if unknown else None
    if name == "input_scale":
        lo, hi = SCALE_RANGE
        bad = [c for c in choices if isinstance(c, bool) or not isinstance(c, numbers.Real) or not lo <= c <= hi]
        if bad:
            return f"has {_clip(repr(bad[0]), 40)}: input scales are numbers in [{lo:g}, {hi:g}]"
        return None if 1 in choices else "must list 1 (the deploy size, where the points run)"
    if (voc := _decision_vocab(name)) is not None or name == "head":
        names, where = (vocab[voc], voc) if voc else (heads, "heads")
        unknown = [c for c in choices if not isinstance(c, str) or c not in names]
        return f"names {_clip(repr(unknown[0]), 40)}, which is not in '{where}'" if unknown else None
    lo, hi = (1, 16) if leaf in ("n", "attention_n") else (32, 4096) if leaf == "imgsz" else (8, 4096)
    step = 32 if leaf == "imgsz" else 1 if leaf in ("n", "attention_n") else 8
    bad = [c for c in choices if isinstance(c, bool) or not isinstance(c, int) or not lo <= c <= hi or c % step]
    if bad:
        return f"has {_clip(repr(bad[0]), 40)}: choices must be integers in [{lo}, {hi}], multiples of {step}"
    return None


def _decisions(path, node, vocab: dict, heads: dict) -> tuple[dict[str, tuple], dict[str, str]]:
    if not isinstance(node, dict):
        raise _fail(path, "decisions", "must be a mapping")
    flat: dict = {}
    _flatten(path, "decisions", "", node, flat)
    decisions, vocab_of = {}, {}
    for name, choices in flat.items():
        if name not in KNOWN_DECISIONS:
            raise _fail(path, f"decisions.{name}", "is not a known decision (see yaml_spaces/README.md)")
        if not isinstance(choices, list) or not choices:
            raise _fail(path, f"decisions.{name}", "must be a non-empty list of choices")
        if bad := [c for c in choices if isinstance(c, (dict, list)) or c is None]:
            raise _fail(path, f"decisions.{name}", f"has choice {_clip(repr(bad[0]), 40)}: choices are names or numbers")
        if problem := _choices_problem(name, choices, vocab, heads):
            raise _fail(path, f"decisions.{name}", problem)
        if len(set(choices)) != len(choices):
            raise _fail(path, f"decisions.{name}", "lists a choice twice")
        if (voc := _decision_vocab(name)) is not None:
            vocab_of[name] = voc
        decisions[name] = tuple(float(c) for c in choices) if name == "input_scale" else tuple(choices)
    if "imgsz" in decisions and "input_scale" in decisions:
        raise _fail(path, "decisions.input_scale", "and decisions.imgsz both set the input size: keep one")
    if missing := [k for k in REQUIRED if k not in decisions]:
        raise _fail(path, f"decisions.{missing[0]}", "is missing")
    p2 = "P2-P5" in decisions.get("levels", ())
    if p2 and (missing := [k for k in P2_DECISIONS if k not in decisions]):
        raise _fail(path, f"decisions.{missing[0]}", "is missing: levels P2-P5 need N2 and N3out")
    if not p2 and (extra := [k for k in P2_DECISIONS if k in decisions]):
        raise _fail(path, f"decisions.{extra[0]}", "shapes only P2-P5 designs: add P2-P5 to levels or remove it")
    return decisions, vocab_of


def _point_problem(value, choices: tuple) -> str | None:
    """What is wrong with a point's ``value`` for a decision with ``choices`` (None: it is one of them)."""
    if is_choice(value, choices):
        return None
    shown = f"= {_clip(repr(value), 40)} is not one of its choices {list(choices)}"
    near = [c for c in choices if c == value or str(c) == str(value)]
    return f"{shown}: write it as {near[0]!r}" if near else shown


def _points(path, node, decisions: dict) -> dict[str, dict]:
    if not isinstance(node or {}, dict):
        raise _fail(path, "points", "must map point names to designs (decision: choice)")
    points = {}
    for pname, design in (node or {}).items():
        if not _is_name(pname):
            raise _fail(path, f"points.{pname}", "is not a name: point names are one-line strings")
        if not isinstance(design, dict):
            raise _fail(path, f"points.{pname}", "must be a mapping of decision: choice")
        point: dict = {}
        _flatten(path, f"points.{pname}", "", design, point)
        if isinstance(point.get("input_scale"), numbers.Real) and not isinstance(point["input_scale"], bool):
            point["input_scale"] = float(point["input_scale"])
        for k, v in point.items():
            if k not in decisions:
                raise _fail(path, f"points.{pname}.{k}", "is not a decision of this space")
            if problem := _point_problem(v, decisions[k]):
                raise _fail(path, f"points.{pname}.{k}", problem)
        if "levels" in decisions and "levels" not in point and is_choice("P3-P5", decisions["levels"]):
            point["levels"] = "P3-P5"  # a point without the key is the usual P3-P5 design
        if point.setdefault("input_scale", 1.0) != 1.0 if "input_scale" in decisions else False:
            raise _fail(path, f"points.{pname}.input_scale", "must be 1: points run at the deploy size (hand_scaled "
                                                           "offers them at other scales)")
        if missing := [k for k in decisions if k not in point and (k == "levels" or is_active(k, point))]:
            raise _fail(path, f"points.{pname}.{missing[0]}", "is missing")
        points[pname] = {k: point.get(k, decisions[k][0]) for k in decisions}  # inactive: the first choice
    return points


def load_space_file(path: str | Path) -> SpaceSpec:
    """Parse and validate a space; every problem is one line naming the file and the key. A space that loads has
    only known keys, and its points set every decision to one of its choices (type included)."""
    path = Path(path)
    raw = _read(path)
    version = _check_top(path, raw)
    vocab = _vocabularies(path, raw)
    heads = _heads(path, raw["heads"])
    decisions, vocab_of = _decisions(path, raw["decisions"], vocab, heads)
    points = _points(path, raw.get("points"), decisions)
    return SpaceSpec(raw["name"], version, path, vocab, decisions, points, heads, raw.get("description") or "",
                     vocab_of, _hand_scaled(path, raw.get("hand_scaled"), decisions))


def _hand_scaled(path, node, decisions: dict) -> tuple:
    """The input scales every point is also offered at: choices of ``input_scale`` other than 1."""
    if node is None:
        return ()
    scales = decisions.get("input_scale")
    if scales is None:
        raise _fail(path, "hand_scaled", "needs the decision input_scale")
    if not isinstance(node, list) or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in node):
        raise _fail(path, "hand_scaled", "must be a list of input scales, e.g. [0.75, 1.25]")
    if bad := [v for v in node if float(v) not in scales or float(v) == 1.0]:
        raise _fail(path, "hand_scaled", f"has {_clip(repr(bad[0]), 40)}: each must be a choice of input_scale "
                                         f"other than 1 ({[c for c in scales if c != 1.0]})")
    return tuple(dict.fromkeys(float(v) for v in node))
