"""``ultranas data``: a dataset's profile at the deploy size, and COCO subsets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import checks
from .errors import UserError


def data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("profile", "coco-subset"),
                   help="profile: images, boxes and object sizes at --imgsz per split; coco-subset: a COCO sample")
    p.add_argument("--data", default=None, help="profile: the data YAML")
    p.add_argument("--imgsz", type=int, default=640, help="profile: the deploy input size, px (default 640)")
    p.add_argument("--json", default=None, help="profile: also write the profile to this JSON file")
    p.add_argument("--coco-root", default=None, help="coco-subset: a local COCO download (annotations/, train2017/)")
    p.add_argument("--split", default="train2017")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--val-split", default="val2017")
    p.add_argument("--val-n", type=int, default=None, help="validation images (default n/10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="coco-subset: the folder to write")


def cmd_data(a) -> None:
    if a.action == "profile":
        return _data_profile(a)
    for flag, value in (("--coco-root", a.coco_root), ("--out", a.out)):
        if value is None:
            raise UserError(f"data coco-subset needs {flag}")
    from .coco import coco_subset

    checks.positive_int("--n", a.n, checks.MAX_IMAGES)
    if a.val_n is not None:
        checks.positive_int("--val-n", a.val_n, checks.MAX_IMAGES)
    checks.seed("--seed", a.seed)
    path = coco_subset(a.coco_root, split=a.split, n=a.n, seed=a.seed, out=a.out, val_split=a.val_split,
                       val_n=a.val_n)
    print(f"ultranas: wrote {path}")


def _data_profile(a) -> None:
    from .data_profile import format_profile, profile_data

    if a.data is None:
        raise UserError("data profile needs --data DATA_YAML")
    checks.pixels("--imgsz", a.imgsz)
    if a.json is not None:
        checks.text("--json", a.json)
        if Path(a.json).is_dir() or not Path(a.json).parent.is_dir():
            raise UserError(f"--json {a.json}: give a file name in an existing folder, such as profile.json")
    profile = profile_data(a.data, a.imgsz)
    print("\n".join(format_profile(profile)))
    if a.json is not None:
        from .fsutil import atomic_write_text

        try:
            atomic_write_text(a.json, json.dumps(profile, indent=1) + "\n")
        except OSError as e:
            raise UserError(f"cannot write --json {a.json}: {e.strerror or e}") from None
