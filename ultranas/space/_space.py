"""The search space: sample, mutate, crossover, validate, render and hash genotypes.

A genotype is a plain ``dict`` of decision -> choice. Its identity is :meth:`SearchSpace.design_hash`, the sha1 of
the rendered model (plus input size), so decisions that do not change the network do not make a new design.

Input size: a space sets it absolutely (``imgsz``, in px) or relative to the deploy size (``input_scale``: the side
is ``--imgsz`` x scale, rounded to a multiple of 32), so one latency budget can buy pixels or capacity. With
``hand_scaled``, every named point is also offered at those scales (``yolo11n@0.75x``): hand-designed baselines (a
search compares with its references' variants) a searched design must beat, or it only found the right resolution.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import random
from pathlib import Path

import yaml

from ..errors import UserError
from ..safe_yaml import read_text, safe_load
from ._render import genotype_from_model, render_rows
from ._schema import SCALE_RANGE, SpaceSpec, is_active, is_choice, load_space_file

SPACES_DIR = Path(__file__).resolve().parent.parent / "yaml_spaces"


class SearchSpace:
    """A validated space loaded from YAML (see ``yaml_spaces/README.md``)."""

    def __init__(self, spec: SpaceSpec):
        self.spec = spec
        self.name, self.version, self.path = spec.name, spec.version, spec.path
        self.decisions = spec.decisions
        for pname, point in spec.points.items():
            ok, reason = self.check(point)
            if not ok:
                raise UserError(f"space {spec.path}: point '{pname}' is not a valid design: {reason}")
        if clash := sorted(set(spec.points) & set(self.hand_scaled_points())):
            raise UserError(f"space {spec.path}: point '{clash[0]}' has the name of a hand-scaled point")

    # -- identity -------------------------------------------------------------------------------------------
    @property
    def points(self) -> dict[str, dict]:
        return copy.deepcopy(self.spec.points)

    def point(self, name: str) -> dict:
        """A named point, or a hand-scaled one (``yolo11n@0.75x``)."""
        if name not in self.spec.points:
            scaled = self.hand_scaled_points().get(name)
            if scaled is not None:
                return scaled
            base = name.rsplit("@", 1)[0]
            if base != name and base in self.spec.points:
                offered = ", ".join(f"{s:g}x" for s in self.spec.hand_scaled) or "none"
                raise UserError(f"'{name}' is not offered here: the hand-scaled points of this search are at {offered} "
                                "(a scale whose input side equals another's at this --imgsz and --proxy-imgsz, or "
                                "that the settings cannot compare, is left out)")
            raise UserError(f"space {self.name} has no point '{name}' (it has: {', '.join(self.spec.points) or 'none'})")
        return dict(self.spec.points[name])

    def size(self) -> int:
        """Number of genotypes (upper bound on distinct designs)."""
        return math.prod(len(c) for c in self.decisions.values())

    def imgsz(self, g: dict, default: int = 640) -> int:
        """The design's input side in px: its own ``imgsz``, or ``default`` (the deploy size) x its ``input_scale``."""
        if "imgsz" in g:
            return int(g["imgsz"])
        scale = g.get("input_scale", 1.0)
        return int(default) if scale == 1.0 else scaled_size(default, scale)

    def deploy_sizes(self, default: int) -> list[int]:
        """Every input side this space's designs can have at deploy size ``default``."""
        if "imgsz" in self.decisions:
            return sorted({int(s) for s in self.decisions["imgsz"]})
        return sorted({self.imgsz({"input_scale": s}, default) for s in self.decisions.get("input_scale", (1.0,))})

    def design_hash(self, g: dict, nc: int = 80) -> str:
        rows = render_rows(self.spec, g, nc)
        rows["head"][-1][3] = [nc]  # the head's width: hashes of one design differ by class count
        scale = g.get("input_scale", 1.0)  # at the deploy size: the hash of designs made before input_scale existed
        canonical = json.dumps([rows, g.get("imgsz")] + ([float(scale)] if scale != 1.0 else []), sort_keys=True,
                               default=str)
        return hashlib.sha1(canonical.encode()).hexdigest()[:12]

    def hand_scaled_points(self, names=None, imgsz: int | None = None) -> dict[str, dict]:
        """Named points at the space's ``hand_scaled`` input scales (``yolo11n@0.75x``), of ``names`` (default all).
        With the deploy size ``imgsz``: only scales that give another input side than the deploy size and than the
        smaller scales (at 64 px, 0.75x rounds back to 64 px and is not offered)."""
        sides, scales = {int(imgsz)} if imgsz else set(), []
        for s in self.spec.hand_scaled:
            side = self.imgsz({"input_scale": s}, imgsz or 640)
            if not imgsz or side not in sides:
                sides.add(side)
                scales.append(s)
        return {scaled_name(n, s): {**g, "input_scale": s} for n, g in self.spec.points.items()
                if names is None or n in names for s in scales}

    def baselines(self, imgsz: int | None = None) -> dict[str, dict]:
        """The hand-designed points and their hand-scaled variants (at deploy size ``imgsz``, if given): what a
        searched design is compared with."""
        return {**self.points, **self.hand_scaled_points(imgsz=imgsz)}

    def with_input_scales(self, scales) -> SearchSpace:
        """This space with its ``input_scale`` choices replaced by ``scales`` (1 among them; hand-scaled points
        outside them are dropped), e.g. ``(1.0,)`` for designs at the deploy size only."""
        scales = tuple(dict.fromkeys(float(s) for s in scales))
        if "input_scale" not in self.decisions:
            raise UserError(f"space {self.name} has no input_scale decision: --input-scales needs one")
        lo, hi = SCALE_RANGE
        if not scales or 1.0 not in scales or not all(lo <= s <= hi for s in scales):
            raise UserError(f"--input-scales must list 1 (the deploy size) and scales in [{lo:g}, {hi:g}], "
                            f"got {','.join(f'{s:g}' for s in scales)[:80]}")
        spec = dataclasses.replace(self.spec, decisions={**self.decisions, "input_scale": scales},
                                   hand_scaled=tuple(s for s in self.spec.hand_scaled if s in scales))
        return SearchSpace(spec)

    def nearest_point(self, g: dict, nc: int = 80) -> tuple[str | None, list[tuple[str, object, object]]]:
        """The named point closest to design ``g`` and how ``g`` differs from it: (name, [(decision, the point's
        choice or ``"unused"`` where the point has no such part, g's choice)]), only decisions that change the model;
        no differences: ``g`` is that point."""
        g, best = self.complete(g), (None, [])
        own = self.design_hash(g, nc)
        for name, p in self.spec.points.items():
            p = self.complete(p)
            point_hash = self.design_hash(p, nc)
            diffs = [(d, p[d] if self.design_hash({**p, d: g[d]}, nc) != point_hash else "unused", g[d])
                     for d in self.decisions
                     if p.get(d) != g.get(d) and self.design_hash({**g, d: p[d]}, nc) != own]
            if best[0] is None or len(diffs) < len(best[1]):
                best = (name, diffs)
        return best

    # -- validity -------------------------------------------------------------------------------------------
    def complete(self, g: dict) -> dict:
        """``g`` with what it may leave out filled in: ``levels`` (``P3-P5``, as designs before that decision) and the
        decisions its design does not use (their first choice). A design saved before a space gained them stays
        the same design (same hash)."""
        if set(g) >= set(self.decisions):
            return g
        out = dict(g)
        if "levels" in self.decisions and "levels" not in out and is_choice("P3-P5", self.decisions["levels"]):
            out["levels"] = "P3-P5"
        if "input_scale" in self.decisions and "input_scale" not in out and 1.0 in self.decisions["input_scale"]:
            out["input_scale"] = 1.0
        for d, choices in self.decisions.items():
            if d not in out and d not in ("levels", "input_scale") and not is_active(d, out):
                out[d] = choices[0]
        return out

    def check(self, g: dict) -> tuple[bool, str]:
        """Structural validity without building: every decision set to one of its choices, the widths of the blocks
        the design uses fit them."""
        g = self.complete(g)
        if set(g) != set(self.decisions):
            missing = sorted(set(self.decisions) - set(g), key=str) or sorted(set(g) - set(self.decisions), key=str)
            return False, f"decision set differs from the space at '{missing[0]}'"
        for k, v in g.items():
            if not is_choice(v, self.decisions[k]):
                return False, f"{k}={str(repr(v))[:40]} is not one of {list(self.decisions[k])}"
        for k, voc in self.spec.vocab_of.items():
            if voc != "blocks" or not is_active(k, g):
                continue
            prefix = k.rsplit(".", 1)[0]
            block, width = self.spec.vocab["blocks"][g[k]], g[f"{prefix}.width"]
            if width % block.width_multiple:
                return False, f"{prefix}: block {block.name} needs a width multiple of {block.width_multiple}, got {width}"
        return True, ""

    # -- operators ------------------------------------------------------------------------------------------
    def sample(self, rng: random.Random, tries: int = 1000) -> dict:
        for _ in range(tries):
            g = {k: rng.choice(c) for k, c in self.decisions.items()}
            if self.check(g)[0]:
                return g
        raise UserError(f"space {self.name}: no valid design found in {tries} samples; loosen width_multiple rules")

    def mutate(self, g: dict, rng: random.Random, k: int = 1, tries: int = 200) -> dict:
        """Change ``k`` decisions that have alternatives and shape the design, keeping the result valid."""
        g = self.complete(g)
        mutable = [d for d, c in self.decisions.items() if len(c) > 1 and is_active(d, g)]
        for _ in range(tries):
            child = dict(g)
            for d in rng.sample(mutable, min(k, len(mutable))):
                child[d] = rng.choice([c for c in self.decisions[d] if c != g[d]])
            if self.check(child)[0] and child != g:
                return child
        return dict(g)

    def size_decisions(self, prefixes: tuple[str, ...] = ("",)) -> list[str]:
        """The decisions that size a design (stem, widths, down-sampling widths, repeat counts), of the stages
        whose names start with one of ``prefixes``."""
        return [d for d in self.decisions if d.startswith(prefixes)
                and (d == "stem" or d.endswith((".width", ".down_width", ".n")))]

    def narrowed(self, g: dict, decisions: list[str] | None = None) -> list[tuple[str, dict]]:
        """Every valid design one step narrower or shallower than ``g``: one of ``decisions`` (default every size
        decision) set to its next smaller choice, as (decision, design) pairs."""
        g, out = self.complete(g), []
        for d in self.size_decisions() if decisions is None else decisions:
            smaller = [c for c in self.decisions[d] if c < g[d]]
            if is_active(d, g) and smaller and self.check(child := {**g, d: max(smaller)})[0]:
                out.append((d, child))
        return out

    def crossover(self, a: dict, b: dict, rng: random.Random, tries: int = 50) -> dict:
        """Uniform crossover per stage/level group, so each block keeps the width it was chosen with."""
        a, b = self.complete(a), self.complete(b)
        groups = sorted({k.split(".")[0] for k in self.decisions})
        for _ in range(tries):
            take = {grp: rng.random() < 0.5 for grp in groups}
            child = {k: (a if take[k.split(".")[0]] else b)[k] for k in self.decisions}
            if self.check(child)[0]:
                return child
        return dict(a)

    # -- rendering ------------------------------------------------------------------------------------------
    def render(self, g: dict, nc: int = 80) -> dict:
        g = self.complete(g)
        ok, reason = self.check(g)
        if not ok:
            raise UserError(f"design is not in space {self.name}: {reason}")
        return render_rows(self.spec, g, nc)

    def to_yaml(self, g: dict, nc: int = 80) -> str:
        header = (f"# ultranas design {self.design_hash(g, nc)} from space {self.name} v{self.version}\n"
                  f"# genotype: {json.dumps(g, sort_keys=True)}\n")
        return header + yaml.safe_dump(self.render(g, nc), sort_keys=False, default_flow_style=None, width=200)

    def from_model(self, model: dict | str | Path, imgsz: int | None = None) -> dict:
        """Genotype of a model YAML (dict or file, Ultralytics' own scaled files included) that lies in the space."""
        where = "model"
        if not isinstance(model, dict):
            where, model = str(model), load_model_yaml(model)
        g = genotype_from_model(self.spec, model, imgsz, where)
        ok, reason = self.check(g)
        if not ok:
            raise UserError(f"{where} is not in space {self.name}: {reason}")
        return g


def scaled_size(imgsz: int, scale: float) -> int:
    """``imgsz`` x ``scale`` rounded (half up) to a multiple of 32, at least 32."""
    return max(32, int(math.floor(imgsz * float(scale) / 32 + 0.5)) * 32)


def scaled_name(point: str, scale: float) -> str:
    """The name of ``point`` at input scale ``scale``: ``yolo11n@0.75x``."""
    return f"{point}@{float(scale):g}x"


def load_model_yaml(path: str | Path) -> dict:
    """Read a model YAML safely, applying Ultralytics' scale-from-file-name rule (``yolo11n.yaml`` -> ``yolo11.yaml``)."""
    path = Path(path)
    if not os.path.lexists(path):  # a bare name may be Ultralytics' own; a path that is not there is not found
        from .. import ultra

        if len(path.parts) > 1:
            raise UserError(f"model YAML not found: {path}")
        model = ultra.bundled_model_yaml(path)
        if model is None:
            raise UserError(f"model YAML not found: {path}")
        return model
    try:
        model = safe_load(read_text(path, "model YAML"))
    except yaml.YAMLError as e:
        raise UserError(f"model YAML {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(model, dict) or "backbone" not in model or "head" not in model:
        raise UserError(f"model YAML {path} needs 'backbone' and 'head' lists")
    return model


def list_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def _looks_like_path(text: str) -> bool:
    """A value the user meant as a file: it has a folder separator or a YAML suffix."""
    separators = {"/", os.sep, os.altsep} - {None}
    return any(s in text for s in separators) or text.lower().endswith((".yaml", ".yml"))


def _kind(path: Path) -> str | None:
    """"file", "folder" or None (nothing there, or a name no file can have: too long, a NUL byte)."""
    try:
        return "file" if path.is_file() else "folder" if path.is_dir() else None
    except (OSError, ValueError):
        return None


def space_path(space: str | os.PathLike) -> Path:
    """The YAML file of ``space``: a value that looks like a path (``/`` or a .yaml/.yml suffix) is that file, which
    must exist (never a bundled space of the same file name); a bare name is a file of that name if there is one,
    else a bundled space."""
    text = os.fspath(space) if isinstance(space, (str, os.PathLike)) else None
    bundled = ", ".join(list_spaces())
    if not isinstance(text, str) or not text:
        raise UserError(f"space must be a bundled name ({bundled}) or a YAML path, got {str(repr(space))[:80]}")
    path, shown = Path(text), text[:300]
    if isinstance(space, os.PathLike) or _looks_like_path(text):
        if (kind := _kind(path)) != "file":
            raise UserError(f"space file {shown} {'is a folder' if kind else 'not found'} (a bundled space is given "
                            f"by name: {bundled})")
        return path
    if _kind(path) == "file":
        return path
    if text in list_spaces():
        return SPACES_DIR / f"{text}.yaml"
    raise UserError(f"space not found: {shown} (bundled spaces: {bundled}, or give a YAML path)")


def load_space(space: str | os.PathLike = "yolo") -> SearchSpace:
    """A space by name (``yolo``, ``mobile``: bundled in ``yaml_spaces/``) or by path to a YAML file."""
    return SearchSpace(load_space_file(space_path(space)))
