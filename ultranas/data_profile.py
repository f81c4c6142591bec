"""A dataset's profile at the deploy size: images and boxes per split and class, object sizes in pixels as the model
sees them (letterboxed to ``imgsz``), empty images and suspicious labels.

Object size decides what a detector can see: a box of 6 px falls inside one cell of the stride-8 (P3) level, the
finest of the usual P3-P5 heads, while a stride-4 (P2) level or a larger input gives it several. The profile is what
``ultranas data profile`` prints and what a search prints first.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .data import check_dataset, load_data_yaml, split_files_checked, splits
from .dataset_files import label_rows

SIZE_EDGES = (8, 16, 32)  # px at the deploy size: under a P3 cell, two cells, four cells
TINY_PX = 2.0  # a box under 2 px at the deploy size is a labelling slip more often than an object
SMALL_SHARE = 0.3  # small objects "dominate" when this share of boxes is under 16 px
LARGE_PX = 64  # objects are "large" when the median box side is at least this at the deploy size
RUN_IMAGES = 2000  # a search profiles this many images per split at most (spread evenly)


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image as Ultralytics reads it (EXIF rotation applied), from its header only; None for
    a file that does not open as an image (Ultralytics skips those too)."""
    from PIL import Image

    from . import ultra

    try:
        with Image.open(path) as im:
            return tuple(int(v) for v in ultra.exif_size(im))
    except Exception:  # unidentified, truncated, a decompression bomb: not an image to measure
        return None


def profile_split(images: list[Path], nc: int, imgsz: int, max_images: int | None = None) -> dict:
    """Counts and object sizes of one split's images (their YOLO label files beside them, under ``labels/``); with
    ``max_images``, of that many images spread evenly over the split."""
    from . import ultra

    sample = images[::max(1, math.ceil(len(images) / max_images))] if max_images else images
    sides, classes = [], np.zeros(nc, dtype=np.int64)
    empty = missing = tiny = duplicates = unreadable = 0
    per_image = []
    for image, label in zip(sample, ultra.img2label_paths([str(p) for p in sample]), strict=True):
        label = Path(label)
        rows = [values for _, values in label_rows(label)] if label.is_file() else []
        missing += not label.is_file()
        empty += not rows
        per_image.append(len(rows))
        if not rows:
            continue
        size = _image_size(image)
        if size is None:
            unreadable += 1
            continue
        w, h = size
        scale = imgsz / max(w, h)  # letterboxed: the longer side becomes imgsz
        duplicates += len(rows) - len({tuple(r) for r in rows})
        for cls, _, _, bw, bh in rows:
            side = math.sqrt(bw * w * scale * bh * h * scale)
            sides.append(side)
            classes[int(cls)] += 1
            tiny += side < TINY_PX
    sizes = np.asarray(sides, dtype=np.float64)
    out = {"images": len(images), "profiled_images": len(sample), "empty_images": empty, "missing_labels": missing, "boxes": int(sizes.size),
           "boxes_per_class": classes.tolist(), "max_boxes_per_image": max(per_image, default=0),
           "tiny_boxes": int(tiny), "duplicate_boxes": int(duplicates), "unreadable_images": unreadable}
    if sizes.size:
        p10, p50, p90 = np.percentile(sizes, [10, 50, 90])
        out["size_px"] = {"p10": round(float(p10), 1), "median": round(float(p50), 1), "p90": round(float(p90), 1)}
        out["share_under_px"] = {str(e): round(float((sizes < e).mean()), 4) for e in SIZE_EDGES}
    return out


def profile_data(data, imgsz: int, max_images: int | None = None, checked: bool = False) -> dict:
    """The profile of every split of ``data`` at input size ``imgsz`` (``max_images`` per split at most); every file is
    checked first as a search checks it, unless ``checked`` (a search's own checked copy)."""
    path = Path(data) if checked else check_dataset(data)
    cfg = load_data_yaml(path)
    out = {"data": str(path), "imgsz": int(imgsz), "names": dict(cfg["names"]), "splits": {}}
    for split in splits(cfg):
        images, _ = split_files_checked(cfg, split, path)
        out["splits"][split] = profile_split(sorted(images), len(cfg["names"]), int(imgsz), max_images)
    out["reading"] = reading(out)
    return out


def reading(profile: dict) -> str:
    """One sentence on what the object sizes mean for the detector, from the training split (or the first one)."""
    split = main_split(profile)
    share = split.get("share_under_px")
    if not share:
        return "no labelled boxes: nothing to say about object sizes"
    under8, under16, median = share["8"], share["16"], split["size_px"]["median"]
    size = profile["imgsz"]
    if under16 >= SMALL_SHARE:
        return (f"small objects dominate: {under16:.0%} of boxes are under 16 px at {size} px ({under8:.0%} under 8 px, "
                "inside one cell of the stride-8 level): a stride-4 (P2) level or a larger input sees them better")
    if median >= LARGE_PX:
        return (f"objects are large (median {median:g} px at {size} px): a smaller input can trade pixels for "
                "capacity at the same latency")
    return f"objects are mid-sized (median {median:g} px at {size} px, {under16:.0%} under 16 px)"


def main_split(profile: dict) -> dict:
    """The split a profile's reading is about: train, or the first one."""
    return profile["splits"].get("train") or next(iter(profile["splits"].values()), {})


def small_objects(profile: dict | None) -> bool:
    """Whether small objects dominate the training split (or the first one) at the deploy size."""
    if not profile:
        return False
    split = main_split(profile)
    return split.get("share_under_px", {}).get("16", 0.0) >= SMALL_SHARE


def score_advice(profile: dict | None, cfg) -> str | None:
    """A warning where the search's settings are known to mislead on this data, or ``None``.

    Where small objects dominate, a loss-based score can misrank designs: Ultralytics' loss is normalised by the
    assigned targets' scores, so a design whose coarse levels barely overlap tiny boxes gets a small loss without
    finding them (``benchmarks/score_small_objects.py``: 9-20 px objects at 256 px, 12 fast-trainer epochs,
    ``loss_drop`` 0.91 for yolo11n and 0.78-0.85 for the P2 points, whose mAP50-95 was 0.74-0.76 vs 0.39). A proxy
    size that shrinks the objects under 8 px hides what the deploy size shows."""
    if not small_objects(profile):
        return None
    notes = []
    if cfg.estimator in ("short-train", "supernet") and cfg.score != "map":
        notes.append(f"--score {cfg.score} can misrank designs where small objects dominate (a design that misses "
                     "tiny objects can have the smaller loss; loss_drop ranked four designs against their mAP50-95 "
                     "with Kendall tau -0.67): use --score map")
    split = main_split(profile)
    median = split.get("size_px", {}).get("median", 0) * cfg.proxy_imgsz / profile["imgsz"]
    if cfg.estimator != "zero-cost" and cfg.proxy_imgsz < profile["imgsz"] and median < 8:
        notes.append(f"at --proxy-imgsz {cfg.proxy_imgsz} the median object is {median:.1f} px: candidates are "
                     "ranked on objects smaller than the deploy size shows (a larger --proxy-imgsz ranks them better)")
    return "warning: " + "; ".join(notes) if notes else None


def kept_points(cfg) -> set[str]:
    """Points a search must keep whatever the data: its references and its ``--latency-le`` point."""
    return {*(cfg.references or ()), *([cfg.latency_le] if cfg.latency_le else [])}


def large_objects(profile: dict | None) -> bool:
    """Whether the training split's (or the first split's) median object is at least ``LARGE_PX`` at the deploy size."""
    return bool(profile) and main_split(profile).get("size_px", {}).get("median", 0) >= LARGE_PX


def scale_suits(profile: dict | None, scale: float) -> bool:
    """Whether a hand-scaled point at input ``scale`` is worth a search's first trials on this data: larger inputs
    where small objects dominate, smaller ones where objects are large, either in between (or without a profile)."""
    if small_objects(profile):
        return scale >= 1.0
    return scale <= 1.0 if large_objects(profile) else True


def points_first(points: dict[str, dict], profile: dict | None, keep=(), say: bool = False) -> list[tuple[str, dict]]:
    """The hand-designed points a search starts from and compares against, in order: where small objects dominate,
    those that detect on a stride-4 level (P2-P5) first, then those at a larger input (``input_scale`` > 1); else
    the others only (stride 4 costs compute that large objects do not repay), those at a smaller input first where
    objects are large, and the points named in ``keep`` (references, ``--latency-le``) always. With ``say``, one
    line tells which (when there is a profile)."""
    items = list(points.items())
    p2 = [(n, g) for n, g in items if g.get("levels") == "P2-P5"]
    scale = {n: g.get("input_scale", 1.0) for n, g in items}
    if small_objects(profile):
        if say and p2:
            print(f"ultranas: small objects dominate the data: the stride-4 (P2-P5) points "
                  f"{', '.join(n for n, _ in p2 if scale[n] == 1.0)} and the larger inputs are tried first", flush=True)
        return sorted(items, key=lambda kv: (kv[1].get("levels") != "P2-P5", scale[kv[0]] <= 1.0))
    if large_objects(profile):
        items = sorted(items, key=lambda kv: scale[kv[0]] >= 1.0)  # pixels traded for capacity first
        if say and any(s < 1.0 for s in scale.values()):
            print("ultranas: the objects are large: the points at a smaller input are tried first", flush=True)
    if not p2:
        return items
    if say and profile is not None:
        names = ", ".join(n for n, _ in p2 if scale[n] == 1.0)
        print(f"ultranas: few small objects in the data: the stride-4 points {names} are left "
              "out of the start and of the comparison", flush=True)
    return [(n, g) for n, g in items if g.get("levels") != "P2-P5" or n in keep or n.split("@")[0] in keep]


def format_profile(profile: dict) -> list[str]:
    """The profile as a few lines of text (one per split, then the class counts and the reading)."""
    lines = [f"data profile of {profile['data']} at {profile['imgsz']} px"]
    for split, p in profile["splits"].items():
        size = p.get("size_px")
        shares = p.get("share_under_px")
        sized = (f"size p10/median/p90 {size['p10']:g}/{size['median']:g}/{size['p90']:g} px, under 8/16/32 px "
                 + "/".join(f"{shares[str(e)]:.0%}" for e in SIZE_EDGES)) if size else "no boxes"
        flags = [f"{p[k]} {k.replace('_', ' ')}" for k in ("empty_images", "missing_labels", "tiny_boxes",
                                                          "duplicate_boxes", "unreadable_images") if p.get(k)]
        of = f" in {p['profiled_images']} of them" if p["profiled_images"] < p["images"] else ""
        lines.append(f"  {split:<5} {p['images']} images, {p['boxes']} boxes{of} (max {p['max_boxes_per_image']} per "
                     f"image); {sized}" + (f"; {', '.join(flags)}" if flags else ""))
    train = profile["splits"].get("train")
    if train and train["boxes"]:
        names = profile["names"]
        counts = sorted(((i, n) for i, n in enumerate(train["boxes_per_class"]) if n), key=lambda kv: -kv[1])
        shown = ", ".join(f"{names[i]} {n}" for i, n in counts[:8]) + (", ..." if len(counts) > 8 else "")
        absent = len(names) - len(counts)
        lines.append(f"  train boxes per class: {shown}" + (f" ({absent} classes have none)" if absent else ""))
    lines.append(f"  reading: {profile['reading']}")
    return lines


def announce_profile(data_yaml: Path, imgsz: int, run_dir: Path) -> dict | None:
    """A search's first lines: the profile of its checked data copy at the deploy size, kept as ``profile.json``."""
    from .fsutil import atomic_write_text

    try:
        profile = profile_data(data_yaml, imgsz, max_images=RUN_IMAGES, checked=True)
    except Exception as e:  # a profile informs; it never stops a search the checks let through
        print(f"ultranas: warning: no data profile: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return None
    print("\n".join(f"ultranas: {line}" for line in format_profile(profile)), flush=True)
    atomic_write_text(Path(run_dir) / "profile.json", json.dumps(profile, indent=1) + "\n")
    return profile
