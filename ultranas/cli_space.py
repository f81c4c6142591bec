"""``ultranas space``: show a search space, sample designs from it, render one to an Ultralytics model YAML."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import checks
from .errors import UserError


def space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("show", "sample", "render"))
    p.add_argument("space")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--point", default=None)
    p.add_argument("--genotype", default=None, help="JSON genotype to render")
    p.add_argument("--nc", type=int, default=80)
    p.add_argument("-o", "--output", default=None)



def _check_space_flags(a) -> None:
    """``space``'s flags, whichever action they go with: counts, a seed, a class count, one design, a file to write."""
    checks.positive_int("--n", a.n, checks.MAX_SAMPLES)
    checks.seed("--seed", a.seed)
    checks.positive_int("--nc", a.nc, checks.MAX_NC)
    if a.point is not None and a.genotype is not None:
        raise UserError("space render takes --point NAME or --genotype JSON, not both")
    if a.output is not None:
        checks.text("-o/--output", a.output)
        if Path(a.output).is_dir():
            raise UserError(f"-o {a.output} is a folder; give a file name such as design.yaml")


def cmd_space(a) -> None:
    import random

    from .space import load_space

    _check_space_flags(a)
    space = load_space(a.space)
    if a.action == "show":
        print(f"space {space.name} v{space.version} ({space.path})")
        for d, c in space.decisions.items():
            print(f"  {d:<16} {list(c)}")
        print(f"  points: {', '.join(space.points) or 'none'}")
        if space.spec.hand_scaled:
            print(f"  hand-scaled: every point also at input scales {', '.join(f'{s:g}' for s in space.spec.hand_scaled)}"
                  f" (e.g. {next(iter(space.hand_scaled_points()), '')})")
        print(f"  distinct genotypes: {space.size():,} (designs with invalid width/block pairs excluded at sampling)")
    elif a.action == "sample":
        rng = random.Random(a.seed)
        for _ in range(a.n):
            g = space.sample(rng)
            print(json.dumps({"hash": space.design_hash(g), "genotype": g}))
    elif a.action == "render":
        g = space.point(a.point) if a.point else _genotype_arg(a.genotype)
        ok, reason = space.check(g)
        if not ok:
            raise UserError(f"--genotype is not a design of space {space.name}: {reason}")
        text = space.to_yaml(g, a.nc)
        if a.output:
            from .fsutil import atomic_write_text

            try:
                atomic_write_text(a.output, text)
            except OSError as e:
                raise UserError(f"cannot write -o {a.output}: {e.strerror or e}") from None
            print(f"ultranas: wrote {a.output}")
        else:
            print(text)


def _genotype_arg(text: str | None) -> dict:
    if not text:
        raise UserError("space render needs --point NAME or --genotype JSON")
    try:
        g = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--genotype is not valid JSON: {e}") from None
    except RecursionError:
        raise UserError("--genotype is nested too deeply; give a flat object of decision -> choice") from None
    if not isinstance(g, dict):
        raise UserError("--genotype must be a JSON object of decision -> choice")
    return g
