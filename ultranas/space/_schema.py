"""Load and validate a search-space YAML (format: ``yaml_spaces/README.md``). Nothing in a space is evaluated."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import UserError

# Ultralytics modules a space may name. Anything else is refused, so a space can never reach eval() or globals().
ALLOWED_MODULES = frozenset({
    "Conv", "GhostConv", "DWConv", "SCDown", "ADown", "AConv",
    "C1", "C2", "C2f", "C3", "C3x", "C3k2", "C3Ghost", "RepC3", "C2fCIB", "A2C2f", "C2PSA", "C2fPSA", "PSA",
    "ELAN1", "RepNCSPELAN4", "BottleneckCSP", "GhostBottleneck", "SPPF", "SPP", "SPPELAN",
})
PLACEHOLDERS = ("$c", "$h")  # output width, half of it
STAGES = ("P2", "P3", "P4", "P5")
NECK = ("N4", "N3", "N4out", "N5out")  # top-down P4, P3 output, bottom-up P4 and P5 outputs
VOCABULARIES = ("blocks", "downsample", "spp", "attention")
TOP_KEYS = {"name", "version", "description", *VOCABULARIES, "heads", "decisions", "points"}


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


def _fail(path, key, what) -> UserError:
    return UserError(f"space {path}: key '{key}' {what}")


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
        module, args, multiple = entry.get("module"), entry.get("args", []), entry.get("width_multiple", 8)
    elif isinstance(entry, list) and len(entry) == 2:
        (module, args), multiple = entry, 8
    else:
        raise _fail(path, key, "must be [Module, [args]] or {module:, args:, width_multiple:}")
    if not isinstance(module, str) or module not in ALLOWED_MODULES:
        raise _fail(path, key, f"names module '{module}', which is not allowed (allowed: {', '.join(sorted(ALLOWED_MODULES))})")
    if not isinstance(args, list) or not args or args[0] != "$c":
        raise _fail(path, key, "args must be a list starting with $c (the output width)")
    bad = [a for a in args if not _is_scalar(a)]
    if bad:
        raise _fail(path, key, f"has argument {bad[0]!r}: only numbers, true/false, null, $c and $h are allowed")
    if not isinstance(multiple, int) or multiple < 8 or multiple % 8:
        raise _fail(path, key, "width_multiple must be a multiple of 8")
    return BlockSpec(name, module, tuple(args), multiple)


def _flatten(prefix: str, node, out: dict) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = node


def _decision_vocab(name: str) -> str | None:
    leaf = name.rsplit(".", 1)[-1]
    return {"block": "blocks", "down": "downsample", "neck_down": "downsample", "spp": "spp", "attention": "attention"}.get(leaf)


REQUIRED = [f"{s}.{k}" for s in STAGES for k in ("down", "down_width", "block", "n", "width")] + [
    f"{n}.{k}" for n in NECK for k in ("block", "n", "width")] + ["stem", "spp", "attention", "attention_n", "neck_down", "head"]
INT_DECISIONS = ("down_width", "width", "stem", "n", "attention_n", "imgsz")


def load_space_file(path: str | Path) -> SpaceSpec:
    """Parse and validate a space; every problem is one line naming the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"space {path} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"space {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"space {path} is empty or not a mapping: see yaml_spaces/README.md for the format")
    for key in ("name", "decisions", *VOCABULARIES, "heads"):
        if key not in raw:
            raise _fail(path, key, "is missing")
    if unknown := sorted(str(k) for k in set(raw) - TOP_KEYS):
        raise _fail(path, unknown[0], "is not a space key (see yaml_spaces/README.md)")
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise _fail(path, "name", "must be a non-empty string")
    version = raw.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(path, "version", f"must be a positive integer, got {str(version)[:40]!r}")
    vocab = {}
    for v in VOCABULARIES:
        if not isinstance(raw[v], dict) or not raw[v]:
            raise _fail(path, v, "must be a non-empty mapping of name -> [Module, [args]]")
        vocab[v] = {str(n): _block(path, v, str(n), e) for n, e in raw[v].items()}
    heads = raw["heads"]
    if not isinstance(heads, dict) or not all(isinstance(h, dict) and set(h) <= {"reg_max", "end2end"} for h in heads.values()):
        raise _fail(path, "heads", "must map names to {reg_max: int, end2end: bool}")
    for hname, h in heads.items():
        reg_max = h.get("reg_max", 16)
        if isinstance(reg_max, bool) or not isinstance(reg_max, int) or not 1 <= reg_max <= 64:
            raise _fail(path, f"heads.{hname}.reg_max", f"must be an integer in [1, 64], got {str(reg_max)[:40]!r}")
        if not isinstance(h.get("end2end", False), bool):
            raise _fail(path, f"heads.{hname}.end2end", "must be true or false")
    flat: dict = {}
    if not isinstance(raw["decisions"], dict):
        raise _fail(path, "decisions", "must be a mapping")
    _flatten("", raw["decisions"], flat)
    decisions, vocab_of = {}, {}
    for name, choices in flat.items():
        if not isinstance(choices, list) or not choices:
            raise _fail(path, f"decisions.{name}", "must be a non-empty list of choices")
        if bad := [c for c in choices if not isinstance(c, (str, int, float))]:
            raise _fail(path, f"decisions.{name}", f"has choice {str(bad[0])[:40]!r}: choices are names or numbers")
        if len(set(map(repr, choices))) != len(choices):
            raise _fail(path, f"decisions.{name}", "lists a choice twice")
        leaf = name.rsplit(".", 1)[-1]
        if (voc := _decision_vocab(name)) is not None:
            unknown = [c for c in choices if c not in vocab[voc]]
            if unknown:
                raise _fail(path, f"decisions.{name}", f"names '{unknown[0]}', which is not in '{voc}'")
            vocab_of[name] = voc
        elif name == "head":
            if unknown := [c for c in choices if c not in heads]:
                raise _fail(path, "decisions.head", f"names '{unknown[0]}', which is not in 'heads'")
        elif leaf in INT_DECISIONS:
            lo, hi = (1, 16) if leaf in ("n", "attention_n") else (32, 4096) if leaf == "imgsz" else (8, 4096)
            step = 32 if leaf == "imgsz" else 1 if leaf in ("n", "attention_n") else 8
            bad = [c for c in choices if isinstance(c, bool) or not isinstance(c, int) or not lo <= c <= hi or c % step]
            if bad:
                raise _fail(path, f"decisions.{name}", f"has {bad[0]!r}: choices must be integers in [{lo}, {hi}], multiples of {step}")
        else:
            raise _fail(path, f"decisions.{name}", "is not a known decision (see yaml_spaces/README.md)")
        decisions[name] = tuple(choices)
    if missing := [k for k in REQUIRED if k not in decisions]:
        raise _fail(path, f"decisions.{missing[0]}", "is missing")
    points = {}
    if not isinstance(raw.get("points") or {}, dict):
        raise _fail(path, "points", "must map point names to designs (decision: choice)")
    for pname, node in (raw.get("points") or {}).items():
        if not isinstance(node, dict):
            raise _fail(path, f"points.{pname}", "must be a mapping of decision: choice")
        point: dict = {}
        _flatten("", node, point)
        for k, v in point.items():
            if k not in decisions:
                raise _fail(path, f"points.{pname}.{k}", "is not a decision of this space")
            if v not in decisions[k]:
                raise _fail(path, f"points.{pname}.{k}", f"= {v!r} is not one of its choices {list(decisions[k])}")
        if missing := [k for k in decisions if k not in point]:
            raise _fail(path, f"points.{pname}.{missing[0]}", "is missing")
        points[str(pname)] = point
    return SpaceSpec(str(raw["name"]), int(version), path, vocab, decisions, points, heads,
                     str(raw.get("description", "")), vocab_of)
