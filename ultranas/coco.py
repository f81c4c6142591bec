"""COCO tools: class-balanced subsets of a local COCO download, YOLO labels -> COCO JSON, and the official
pycocotools evaluation of a model beside Ultralytics' own mAP."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml
from PIL import Image

from . import ultra
from .data import list_images, load_data_yaml, safe_data_yaml
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


def _split_dir(cfg: dict, split: str) -> Path:
    if not isinstance(cfg.get(split), str):
        raise UserError(f"data YAML has no '{split}' split")
    image_dir = (cfg["_root"] / cfg[split]).resolve()
    if not image_dir.is_dir():
        raise UserError(f"{split} images not found: {image_dir}")
    return image_dir


def split_images(image_dir: Path) -> list[Path]:
    """The images Ultralytics' dataset reads from a split folder: recursive, its ``IMG_FORMATS``."""
    return list_images(image_dir, {f".{f}" for f in ultra.IMG_FORMATS})


def yolo_to_coco(data_yaml: str | Path, split: str = "val", out: str | Path | None = None) -> dict:
    """COCO-format ground truth from a YOLO split, read as Ultralytics reads it: category id = class index + 1,
    ``file_name`` = path under the split folder (nested folders kept apart), EXIF-corrected sizes."""
    cfg = load_data_yaml(Path(data_yaml))
    image_dir = _split_dir(cfg, split)
    files = split_images(image_dir)
    images, annotations = [], []
    for i, (path, label) in enumerate(zip(files, ultra.img2label_paths([str(f) for f in files])), 1):
        with Image.open(path) as im:
            w, h = ultra.exif_size(im)
        images.append({"id": i, "file_name": path.relative_to(image_dir).as_posix(), "width": w, "height": h})
        label = Path(label)
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


def load_gt(path: str | Path) -> dict:
    """A COCO detection ground-truth file (``instances_*.json``), checked enough for COCOeval."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"gt_json not found: {path}")
    try:
        gt = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"gt_json {path} is not valid JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(gt, dict) or not all(isinstance(gt.get(k), list) for k in ("images", "annotations", "categories")):
        raise UserError(f"gt_json {path} is not COCO ground truth (needs lists 'images', 'annotations', 'categories')")
    try:
        images = [{**im, "id": im["id"], "file_name": str(im["file_name"])} for im in gt["images"]]
        annotations = [{**a, "area": a.get("area", a["bbox"][2] * a["bbox"][3]), "iscrowd": a.get("iscrowd", 0),
                        "id": a.get("id", i), "image_id": a["image_id"], "category_id": a["category_id"]}
                       for i, a in enumerate(gt["annotations"], 1)]
        categories = [{**c, "id": c["id"], "name": str(c.get("name", c["id"]))} for c in gt["categories"]]
    except (KeyError, IndexError, TypeError) as e:
        raise UserError(f"gt_json {path}: an image, annotation or category lacks a field COCO needs ({e})") from None
    return {**gt, "images": images, "annotations": annotations, "categories": categories}


def image_ids(gt: dict, files: list[str], source: str = "gt_json") -> dict[str, int]:
    """Evaluated image file -> GT image id: the GT ``file_name`` that is the longest path suffix of the file."""
    by_name = defaultdict(list)
    for im in gt["images"]:
        by_name[Path(im["file_name"]).as_posix().lstrip("/")].append(im["id"])
    out, missing, claimed = {}, [], {}
    for f in files:
        parts = Path(f).parts
        key = next(("/".join(parts[k:]) for k in range(1, len(parts)) if "/".join(parts[k:]) in by_name), None)
        if key is None:
            missing.append(f)
            continue
        gt_id = by_name[key][0]
        if len(by_name[key]) > 1 or gt_id in claimed:
            raise UserError(f"{source}: file_name {key!r} is ambiguous ({claimed.get(gt_id, 'listed twice')}, {f}); "
                            "use paths relative to the split folder as file_name")
        out[f], claimed[gt_id] = gt_id, f
    if missing:
        raise UserError(f"{source}: {len(missing)} of {len(files)} evaluated images are not in it "
                        f"(e.g. {missing[0]}); COCOeval can only score images the ground truth lists")
    return out


def category_ids(gt: dict, names: dict[int, str]) -> dict[int, int]:
    """Model class index -> GT category id: by name, else Ultralytics' COCO 80->91 map for an 80-class model."""
    by_name = {str(c["name"]).strip().lower(): c["id"] for c in gt["categories"]}
    hits = {i: by_name[str(n).strip().lower()] for i, n in names.items() if str(n).strip().lower() in by_name}
    ids, coco91 = {c["id"] for c in gt["categories"]}, ultra.coco80_to_coco91_class()
    if len(hits) < len(names) and len(names) == 80 and ids <= set(coco91):
        return dict(enumerate(coco91))
    if not hits:
        raise UserError(f"no model class name ({', '.join(map(str, list(names.values())[:5]))}, ...) is a category "
                        f"of the ground truth ({', '.join(list(by_name)[:5])}, ...)")
    return hits


def cocoeval(gt: dict, detections: list[dict], img_ids: list | None = None, cat_ids: list | None = None,
             max_dets: int = 100) -> dict:
    """pycocotools COCOeval (bbox) of COCO results ``{image_id, category_id, bbox: [x, y, w, h], score}``,
    restricted to ``img_ids``/``cat_ids``; returns mAP50-95 and mAP50 (area 'all', ``max_dets`` per image)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes([dict(d) for d in detections]), "bbox")
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        if cat_ids is not None:
            ev.params.catIds = sorted(cat_ids)
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # [iou, recall, class] at area 'all', max_dets

    def mean(p):
        return float(p[p > -1].mean()) if (p > -1).any() else 0.0

    return {"map": mean(precision), "map50": mean(precision[0])}


def coco_eval(model, data: str | Path, imgsz: int = 640, split: str = "val", gt_json: str | Path | None = None,
              device: str = "cpu", batch: int = 16, max_dets: int = 100, save_dir: str | Path | None = None,
              **val_args) -> dict:
    """pycocotools COCOeval of ``model`` (a ``NAS``/``YOLO``) beside Ultralytics' own mAP, from one validation pass.

    The detections are Ultralytics' validator's own ``predictions.json`` (its NMS, ``multi_label``, 300 per image),
    scored on the images it evaluated against ``gt_json`` (categories matched by name, or COCO's 80->91 ids) or
    against the YOLO labels. ``max_dets=100`` is the official COCO setting. ``save_dir`` keeps
    ``predictions.json`` (default: a temporary folder, removed).
    """
    if int(max_dets) < 1:
        raise UserError(f"max_dets must be at least 1, got {max_dets}")
    data = safe_data_yaml(data)  # Ultralytics' validator reads only the checked copy
    image_dir = _split_dir(load_data_yaml(data), split)
    gt = load_gt(gt_json) if gt_json else yolo_to_coco(data, split)
    source = str(gt_json) if gt_json else "YOLO labels"
    image_ids(gt, [str(p) for p in split_images(image_dir)], source)  # fail before the validation pass
    with tempfile.TemporaryDirectory(prefix="ultranas_coco_") as tmp:
        run = ultra.validate_for_coco(model, save_dir or tmp, data=str(data), imgsz=imgsz, split=split,
                                      device=device, batch=batch, **val_args)
    return {**score_run(gt, run, by_index=not gt_json, source=source, max_dets=max_dets),
            "save_dir": str(save_dir) if save_dir else None}


def score_run(gt: dict, run: dict, by_index: bool = False, source: str = "gt_json", max_dets: int = 100) -> dict:
    """COCOeval of a validation run (``ultra.validate_for_coco``'s output) against ``gt``, beside its own mAP.

    Images match by path (``image_ids``), classes by index + 1 (``by_index``, YOLO-label ground truth) or by
    ``category_ids``; only the evaluated images and the model's categories are scored.
    """
    ids = image_ids(gt, list(run["images"]), source)
    gt_cats = {c["id"] for c in gt["categories"]}
    cats = {i: i + 1 for i in run["names"] if i + 1 in gt_cats} if by_index else category_ids(gt, run["names"])
    results = [{"image_id": ids[d["im_file"]], "category_id": cats[d["cls"]], "bbox": d["bbox"], "score": d["score"]}
               for d in run["detections"] if d["cls"] in cats]
    scores = cocoeval(gt, results, img_ids=list(set(ids.values())), cat_ids=list(set(cats.values()) & gt_cats),
                      max_dets=max_dets)
    return {"ultralytics_map": run.get("map"), "ultralytics_map50": run.get("map50"), "cocoeval_map": scores["map"],
            "cocoeval_map50": scores["map50"], "detections": len(results), "images": len(ids), "max_dets": max_dets}
