"""A split's images letterboxed to a square with their YOLO labels: what the zero-cost proxies' real batches and
the fast trainer's device-resident dataset are made of (no augmentation here)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data import _label_dir, list_images, load_data_yaml, resolve_data
from ..dataset_files import label_rows
from ..errors import UserError

_BATCH_CACHE: dict[tuple, list[dict]] = {}


def letterbox(img: np.ndarray, labels: np.ndarray, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize the long side to ``imgsz``, pad to a square with grey (114), and move normalised xywh labels along."""
    h, w = img.shape[:2]
    r = imgsz / max(h, w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    left, top = (imgsz - nw) // 2, (imgsz - nh) // 2
    out = np.full((imgsz, imgsz, 3), 114, dtype=np.uint8)
    out[top:top + nh, left:left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    labels = labels.copy()
    labels[:, [1, 3]] *= nw / imgsz
    labels[:, [2, 4]] *= nh / imgsz
    labels[:, 1] += left / imgsz
    labels[:, 2] += top / imgsz
    return out, labels


def read_labels(path: Path) -> np.ndarray:
    """(n, 5) cls, x, y, w, h normalised; polygon rows become their bounding boxes; no file means no objects.
    Read and parsed as the data check does (:func:`ultranas.dataset_files.label_rows`): a FIFO, a word or a
    nan/inf fails as one line naming the file and line."""
    rows = []
    if os.path.lexists(path):
        for _, v in label_rows(path):
            if len(v) == 5:
                rows.append(v)
            elif len(v) > 5 and len(v) % 2:
                xs, ys = v[1::2], v[2::2]
                rows.append([v[0], (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs),
                             max(ys) - min(ys)])
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def split_files(data_yaml: str | Path, split: str) -> tuple[Path, list[Path]]:
    """(the split's image folder, its images sorted) from a data YAML."""
    cfg = load_data_yaml(Path(data_yaml))
    image_dir = (cfg["_root"] / cfg[split]).resolve()
    return image_dir, list_images(image_dir)


def letterboxed(image_dir: Path, files: list[Path], imgsz: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(BGR image letterboxed to ``imgsz``, its labels moved along) for each of ``files`` under ``image_dir``."""
    label_dir = _label_dir(image_dir)
    for file in files:
        img = cv2.imread(str(file))
        if img is None:
            raise UserError(f"cannot read image {file}")
        yield letterbox(img, read_labels(label_dir / file.relative_to(image_dir).with_suffix(".txt")), imgsz)


def collate(imgs: list[np.ndarray], labels: list[np.ndarray]) -> dict:
    """Ultralytics' batch dict (``img`` RGB float 0-1 BCHW, ``cls``, ``bboxes``, ``batch_idx``) from BGR images."""
    img = torch.from_numpy(np.ascontiguousarray(np.stack(imgs)[..., ::-1].transpose(0, 3, 1, 2))).float() / 255
    lab = np.concatenate(labels, 0)
    idx = np.concatenate([np.full(len(x), i, dtype=np.float32) for i, x in enumerate(labels)])
    return {"img": img, "cls": torch.from_numpy(lab[:, :1]), "bboxes": torch.from_numpy(lab[:, 1:]),
            "batch_idx": torch.from_numpy(idx)}


def load_batches(data_yaml: str | Path, imgsz: int = 128, batch_size: int = 8, n_batches: int = 1,
                 seed: int = 0) -> list[dict]:
    """Ultralytics batch dicts from the train split: letterboxed to ``imgsz``, no augmentation, cached by args.

    Images are drawn in a seeded shuffle; a batch holds at most as many images as the split (coco8: 4), and
    batches cycle through the split when it holds fewer than ``batch_size * n_batches``.
    Every call returns fresh tensors (the cache keeps its own).
    """
    path = resolve_data(data_yaml)
    key = (str(path), int(imgsz), int(batch_size), int(n_batches), int(seed))
    if key not in _BATCH_CACHE:
        image_dir, images = split_files(path, "train")
        if not images:
            raise UserError(f"no train images in {image_dir} (from {path})")
        random.Random(seed).shuffle(images)
        size = min(batch_size, len(images))  # distinct images within a batch, so mini-batches differ
        picks = [[images[(b * size + i) % len(images)] for i in range(size)] for b in range(n_batches)]
        _BATCH_CACHE[key] = [collate(*zip(*letterboxed(image_dir, files, imgsz))) for files in picks]
    return [{k: v.clone() for k, v in b.items()} for b in _BATCH_CACHE[key]]
