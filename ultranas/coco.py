"""COCO tools: class-balanced subsets of a local COCO download, YOLO labels -> COCO JSON, and the official
pycocotools evaluation of a model beside Ultralytics' own mAP."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
from collections import defaultdict
from pathlib import Path

import yaml
from PIL import Image

from .data import IMAGE_SUFFIXES, _label_dir, load_data_yaml
from .errors import UserError
from .fsutil import atomic_write_json, atomic_write_text


def _coco(path: Path):
    from pycocotools.coco import COCO

    if not path.is_file():
        raise UserError(f"COCO annotations not found: {path}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _image_dir(coco_root: Path, split: str) -> Path:
    for d in (coco_root / split, coco_root / "images" / split):
        if d.is_dir():
            return d
    raise UserError(f"COCO images for {split} not found under {coco_root} (expected {split}/ or images/{split}/)")


def balanced_image_ids(coco, n: int, seed: int) -> list[int]:
    """``n`` images chosen round-robin over categories, rarest first, so every class is represented."""
    rng = random.Random(seed)
    by_cat = {}
    for cat in sorted(coco.getCatIds()):
        ids = sorted({a["image_id"] for a in coco.loadAnns(coco.getAnnIds(catIds=[cat], iscrowd=False))})
        rng.shuffle(ids)
        by_cat[cat] = ids
    order = sorted(by_cat, key=lambda c: (len(by_cat[c]), c))
    chosen, seen, cursor = [], set(), defaultdict(int)
    while len(chosen) < n and any(cursor[c] < len(by_cat[c]) for c in order):
        for cat in order:
            while cursor[cat] < len(by_cat[cat]) and by_cat[cat][cursor[cat]] in seen:
                cursor[cat] += 1
            if cursor[cat] < len(by_cat[cat]) and len(chosen) < n:
                image_id = by_cat[cat][cursor[cat]]
                chosen.append(image_id)
                seen.add(image_id)
    return sorted(chosen)


def _write_split(coco, image_ids: list[int], image_dir: Path, out: Path, split: str, cat_index: dict) -> None:
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for img in coco.loadImgs(image_ids):
        src = image_dir / img["file_name"]
        if not src.is_file():
            raise UserError(f"image {src} listed in the annotations is missing")
        dst = out / "images" / split / img["file_name"]
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        w, h = img["width"], img["height"]
        lines = []
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]], iscrowd=False)):
            x, y, bw, bh = a["bbox"]
            if bw <= 0 or bh <= 0:
                continue
            lines.append(f"{cat_index[a['category_id']]} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} "
                         f"{bw / w:.6f} {bh / h:.6f}")
        atomic_write_text(out / "labels" / split / (Path(img["file_name"]).stem + ".txt"), "\n".join(lines) + "\n")


def coco_subset(coco_root: str | Path, split: str = "train2017", n: int = 5000, seed: int = 0, out: str | Path = "coco_subset",
                val_split: str | None = "val2017", val_n: int | None = None) -> Path:
    """Write a class-balanced, reproducible subset as YOLO images/labels plus ``data.yaml``; returns its path."""
    coco_root, out = Path(coco_root), Path(out)
    if n <= 0:
        raise UserError(f"--n must be positive, got {n}")
    train = _coco(coco_root / "annotations" / f"instances_{split}.json")
    cats = sorted(train.getCatIds())
    cat_index = {c: i for i, c in enumerate(cats)}
    names = {i: train.loadCats([c])[0]["name"] for c, i in cat_index.items()}
    _write_split(train, balanced_image_ids(train, n, seed), _image_dir(coco_root, split), out, "train", cat_index)
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/train", "names": names}
    val_json = coco_root / "annotations" / f"instances_{val_split}.json" if val_split else None
    if val_json is not None and val_json.is_file():
        val = _coco(val_json)
        ids = balanced_image_ids(val, val_n or max(n // 10, 1), seed)
        _write_split(val, ids, _image_dir(coco_root, val_split), out, "val", cat_index)
        data["val"] = "images/val"
    atomic_write_text(out / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"


def yolo_to_coco(data_yaml: str | Path, split: str = "val", out: str | Path | None = None) -> dict:
    """COCO-format ground truth (category ids = class index + 1) from a YOLO split."""
    cfg = load_data_yaml(Path(data_yaml))
    image_dir = (cfg["_root"] / cfg[split]).resolve()
    label_dir = _label_dir(image_dir)
    images, annotations = [], []
    for i, path in enumerate(sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES), 1):
        with Image.open(path) as im:
            w, h = im.size
        images.append({"id": i, "file_name": path.name, "width": w, "height": h})
        label = label_dir / path.relative_to(image_dir).with_suffix(".txt")
        for line in label.read_text().splitlines() if label.is_file() else []:
            if not line.strip():
                continue
            c, x, y, bw, bh = (float(v) for v in line.split()[:5])
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c) + 1, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": k + 1, "name": v} for k, v in cfg["names"].items()]}
    if out:
        atomic_write_json(out, gt)
    return gt


def coco_eval(model, data: str | Path, imgsz: int = 640, split: str = "val", gt_json: str | Path | None = None,
              device: str = "cpu", batch: int = 16, max_dets: int = 100) -> dict:
    """pycocotools COCOeval of ``model`` (a ``NAS``/``YOLO``) beside Ultralytics' own mAP on the same split.

    ``max_dets=100`` is the official COCO setting; Ultralytics keeps up to 300 detections per image, so
    ``max_dets=300`` isolates the remaining differences (interpolation, matching).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = Path(data)
    gt_dict = json.loads(Path(gt_json).read_text()) if gt_json else yolo_to_coco(data, split)
    by_name = {img["file_name"]: img["id"] for img in gt_dict["images"]}
    cfg = load_data_yaml(data)
    image_dir = (cfg["_root"] / cfg[split]).resolve()
    detections = []
    for r in model.predict(str(image_dir), imgsz=imgsz, conf=0.001, iou=0.7, max_det=300, device=device,
                           verbose=False, stream=True):
        image_id = by_name.get(Path(r.path).name)
        if image_id is None:
            continue
        for (x1, y1, x2, y2), score, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
            detections.append({"image_id": image_id, "category_id": int(cls) + 1, "score": float(score),
                               "bbox": [x1, y1, x2 - x1, y2 - y1]})
    ours = model.val(data=str(data), imgsz=imgsz, split=split, device=device, batch=batch, plots=False,
                     verbose=False)
    result = {"ultralytics_map": float(ours.box.map), "ultralytics_map50": float(ours.box.map50),
              "cocoeval_map": 0.0, "cocoeval_map50": 0.0, "detections": len(detections)}
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = gt_dict
            gt.createIndex()
            ev = COCOeval(gt, gt.loadRes(detections), "bbox")
            ev.params.maxDets = [1, 10, max_dets]
            ev.evaluate()
            ev.accumulate()
        precision = ev.eval["precision"][:, :, :, 0, -1]  # [iou, recall, class] at area 'all', max_dets

        def mean(p):
            return float(p[p > -1].mean()) if (p > -1).any() else 0.0

        result.update(cocoeval_map=mean(precision), cocoeval_map50=mean(precision[0]), max_dets=max_dets)
    return result
