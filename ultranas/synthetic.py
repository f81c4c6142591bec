"""Synthetic detection set: coloured shapes on textured backgrounds, YOLO labels, deterministic by seed; object
sizes from large to a few pixels, with unlabelled look-alike clutter for harder small-object sets.

For fast, honest tests: a tiny model learns it on a 2-core CPU in about a minute, so tests can assert that
training *learns*. Real data stays the measure of quality.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (60, 60, 230), "green": (60, 200, 60), "blue": (230, 90, 40), "yellow": (40, 220, 230),
           "magenta": (220, 60, 220), "cyan": (230, 220, 40), "white": (235, 235, 235), "orange": (30, 140, 250)}  # BGR
DEFAULT_RADIUS = (0.08, 0.2)  # half an object's side as a share of the image side (object_size / 2)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    low = rng.integers(0, 255, size=(4, 4, 3)).astype(np.float32)
    smooth = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 18, size=(size, size, 3))
    return np.clip(smooth * 0.6 + 50 + noise, 0, 255).astype(np.uint8)


def _draw(img: np.ndarray, shape: str, cx: float, cy: float, r: float, color) -> None:
    if shape == "circle":
        cv2.circle(img, (int(cx), int(cy)), int(r), color, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(img, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), color, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)


def _clutter(rng: np.random.Generator, img: np.ndarray, n: int, radius: tuple[float, float]) -> None:
    """``n`` unlabelled distractors of the objects' sizes: rings and crosses in the objects' colours."""
    size = img.shape[0]
    for _ in range(n):
        r = max(1.0, rng.uniform(*radius) * size)
        cx, cy = rng.uniform(0, size, size=2)
        color = tuple(int(c) for c in rng.integers(150, 256, size=3))
        if rng.random() < 0.5:
            cv2.circle(img, (int(cx), int(cy)), int(r), color, max(1, int(r / 4)), cv2.LINE_AA)
        else:
            t = max(1, int(r / 3))
            cv2.line(img, (int(cx - r), int(cy)), (int(cx + r), int(cy)), color, t)
            cv2.line(img, (int(cx), int(cy - r)), (int(cx), int(cy + r)), color, t)


def _image(rng: np.random.Generator, size: int, max_objects: int, radius: tuple[float, float] = DEFAULT_RADIUS,
           clutter: int = 0, colours: int = 1):
    img = _background(rng, size)
    if clutter:
        _clutter(rng, img, int(rng.integers(0, clutter + 1)), radius)
    labels, boxes = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            r = rng.uniform(*radius) * size
            r = max(1.0, r) if radius != DEFAULT_RADIUS else r  # a few-pixel object is at least 2 px wide
            cx, cy = rng.uniform(r, size - r, size=2)
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(len(SHAPES) * colours))
        if colours > 1:  # a class is a shape in a colour family
            base = np.array(list(COLOURS.values())[cls // len(SHAPES)])
            color = tuple(int(c) for c in np.clip(base + rng.integers(-25, 26, size=3), 0, 255))
        else:
            color = tuple(int(c) for c in rng.integers(150, 256, size=3))
        _draw(img, SHAPES[cls % len(SHAPES)], cx, cy, r, color)
        boxes.append(box)
        labels.append(f"{cls} {cx / size:.6f} {cy / size:.6f} {2 * r / size:.6f} {2 * r / size:.6f}")
    return img, labels


def make_synthetic(out: str | Path, n_train: int = 96, n_val: int = 32, imgsz: int = 128, seed: int = 0,
                   max_objects: int = 3, n_test: int = 0, object_size: tuple[float, float] = (0.16, 0.4),
                   clutter: int = 0, colours: int = 1) -> Path:
    """Write the set under ``out`` (images/, labels/, data.yaml; a ``test`` split too when ``n_test`` > 0) and
    return the data YAML path. ``object_size``: the range of an object's side as a share of the image side (the
    default: large objects; ``(0.02, 0.06)`` at 256 px gives 5-15 px objects); ``clutter``: up to this many
    unlabelled distractors (rings, crosses) of the same sizes and colours per image; ``colours`` > 1 (up to 8): a
    class is a shape in one of that many colour families ("red circle"), ``3 * colours`` classes."""
    if not 1 <= colours <= len(COLOURS):
        raise ValueError(f"colours must be 1 to {len(COLOURS)}, got {colours}")
    if not 0 < object_size[0] <= object_size[1] <= 0.5:
        raise ValueError(f"object_size must be 0 < low <= high <= 0.5, got {object_size}")
    radius = (object_size[0] / 2, object_size[1] / 2)
    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if not n:
            continue
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, labels = _image(rng, imgsz, max_objects, radius, clutter, colours)
            cv2.imwrite(str(out / "images" / split / f"{i:05d}.png"), img)
            (out / "labels" / split / f"{i:05d}.txt").write_text("\n".join(labels) + "\n")
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
            **({"test": "images/test"} if n_test else {}), "names": dict(enumerate(
                SHAPES if colours == 1 else [f"{c} {s}" for c in list(COLOURS)[:colours] for s in SHAPES]))}
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
