"""COCO tools: class-balanced subsets from COCO JSON (built from coco128), and pycocotools' COCOeval beside
Ultralytics' mAP: known answers (perfect and jittered detections) and a trained model scored both ways."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ultranas.coco import category_ids, coco_eval, coco_subset, cocoeval, score_run, yolo_to_coco
from ultranas.data import check_dataset
from ultranas.errors import UserError


@pytest.fixture(scope="module")
def coco_root(coco128, tmp_path_factory) -> Path:
    """A COCO-style download made from coco128: annotations/instances_*.json plus image folders."""
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    for yolo_split, coco_split in (("train", "train2017"), ("val", "val2017")):
        gt = yolo_to_coco(coco128 / "data.yaml", yolo_split)
        (root / "annotations" / f"instances_{coco_split}.json").write_text(json.dumps(gt))
        (root / coco_split).symlink_to(coco128 / "images" / coco_split)
    return root


def _labels(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


def test_coco_subset_counts_balance_and_round_trip(coco_root, coco128, tmp_path, run_cli):
    out = tmp_path / "sub"
    proc = run_cli("data", "coco-subset", "--coco-root", coco_root, "--split", "train2017", "--n", 40, "--seed", 0,
                   "--out", out, "--val-n", 10)
    assert proc.returncode == 0, proc.stderr
    data = check_dataset(out / "data.yaml")  # a valid data YAML with images and labels
    train = sorted((out / "images" / "train").iterdir())
    assert len(train) == 40 and len(list((out / "images" / "val").iterdir())) == 10
    source = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    present = {a["category_id"] - 1 for a in source["annotations"]}
    covered = {int(row[0]) for f in (out / "labels" / "train").glob("*.txt") for row in _labels(f)}
    assert covered == present if len(present) <= 40 else len(covered) >= 40  # every class gets an image first
    for image in train:  # boxes round-trip: YOLO -> COCO JSON -> YOLO gives the original labels
        ours = _labels(out / "labels" / "train" / (image.stem + ".txt"))
        original = _labels(coco128 / "labels" / "train2017" / (image.stem + ".txt"))
        assert len(ours) == len(original)
        for a, b in zip(sorted(ours), sorted(original)):
            assert a == pytest.approx(b, abs=2e-4)
    again = tmp_path / "again"
    coco_subset(coco_root, "train2017", 40, 0, again, val_n=10)
    assert sorted(p.name for p in (again / "images" / "train").iterdir()) == [p.name for p in train]  # reproducible
    assert data.name == "data.yaml"


# --- known answers: detections in the form Ultralytics' validator hands them over (ultra.validate_for_coco) ---

@pytest.fixture(scope="module")
def tricky(tmp_path_factory) -> Path:
    """Nested folders with the same file name (a/1.jpg, b/1.jpg), an EXIF-rotated JPEG, a flat PNG."""
    root = tmp_path_factory.mktemp("tricky")
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[274] = 6  # stored 48 wide x 96 high, shown (and read by Ultralytics) 96 wide x 48 high
    files = {"a/1.jpg": ((48, 96), exif), "b/1.jpg": ((64, 64), None), "2.png": ((40, 80), None)}
    for name, ((h, w), ex) in files.items():
        image, label = root / "images" / "val" / name, (root / "labels" / "val" / name).with_suffix(".txt")
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray(rng.integers(0, 255, (w, h, 3) if ex else (h, w, 3), dtype=np.uint8))
        pixels.save(image, **({"exif": ex} if ex else {}))
        boxes = rng.uniform([0.25, 0.25, 0.1, 0.1], [0.75, 0.75, 0.4, 0.4], (3, 4))
        label.write_text("".join(f"{i % 2} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for i, (x, y, bw, bh) in enumerate(boxes)))
    data = {"path": str(root), "train": "images/val", "val": "images/val", "names": {0: "cat", 1: "dog"}}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def _perfect_run(data_yaml: Path, names=None) -> dict:
    """Every YOLO label as a detection, in pixels of the image as Ultralytics loads it (EXIF applied)."""
    from ultralytics.data.utils import img2label_paths
    from ultralytics.utils.patches import imread

    files = sorted(str(p) for p in (data_yaml.parent / "images" / "val").rglob("*.*"))
    run = {"images": {}, "detections": [], "names": names or {0: "cat", 1: "dog"}}
    for f, label in zip(files, img2label_paths(files)):
        h, w = imread(f).shape[:2]
        run["images"][f] = (h, w)
        for c, x, y, bw, bh in _labels(Path(label)):
            run["detections"].append({"im_file": f, "cls": int(c), "score": 0.9,
                                      "bbox": [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]})
    return run


def test_yolo_ground_truth_reads_images_as_ultralytics(tricky):
    gt = yolo_to_coco(tricky)
    assert sorted(im["file_name"] for im in gt["images"]) == ["2.png", "a/1.jpg", "b/1.jpg"]  # no name collision
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in gt["images"]}
    with Image.open(tricky.parent / "images" / "val" / "a" / "1.jpg") as im:
        assert im.size == (48, 96) and sizes["a/1.jpg"] == (96, 48)  # stored portrait, shown (EXIF 6) landscape
    r = score_run(gt, _perfect_run(tricky), by_index=True, source="YOLO labels")
    assert r["cocoeval_map"] == pytest.approx(1.0) and r["cocoeval_map50"] == pytest.approx(1.0), r
    assert r["images"] == 3 and r["detections"] == 9


def test_perfect_detections_score_one_on_a_coco_file_with_gaps_and_extra_images(tricky, tmp_path):
    from ultranas.coco import load_gt

    gt = yolo_to_coco(tricky)
    gt["categories"] = [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}]  # ids with a gap, not in class order
    for a in gt["annotations"]:
        a["category_id"] = {1: 1, 2: 3}[a["category_id"]]
    next(im for im in gt["images"] if im["file_name"] == "2.png")["file_name"] = "val/2.png"  # longer suffix
    for i in (1, 2):  # two ground-truth images the validation set does not hold: a subset is evaluated
        gt["images"].append({"id": 100 + i, "file_name": f"elsewhere_{i}.jpg", "width": 64, "height": 64})
        gt["annotations"].append({"id": 100 + i, "image_id": 100 + i, "category_id": 1, "bbox": [1, 1, 30, 30],
                                  "area": 900, "iscrowd": 0})
    (tmp_path / "instances_val.json").write_text(json.dumps(gt))
    loaded, run = load_gt(tmp_path / "instances_val.json"), _perfect_run(tricky)
    assert category_ids(loaded, run["names"]) == {0: 1, 1: 3}
    r = score_run(loaded, run)
    assert r["cocoeval_map"] == pytest.approx(1.0) and r["cocoeval_map50"] == pytest.approx(1.0), r
    assert r["images"] == 3 and r["detections"] == 9, r
    # the bugs this guards against score well below 1: cls + 1 as category id; every image of the file scored
    ids = {f: next(im["id"] for im in gt["images"] if f.endswith("/" + im["file_name"])) for f in run["images"]}

    def results(cats):
        return [{"image_id": ids[d["im_file"]], "category_id": cats[d["cls"]], "bbox": d["bbox"], "score": 0.9}
                for d in run["detections"]]

    assert cocoeval(loaded, results({0: 1, 1: 2}), img_ids=list(ids.values()))["map"] == pytest.approx(0.5)
    assert cocoeval(loaded, results({0: 1, 1: 3}))["map"] < 0.9
    for im in gt["images"]:  # base names alone cannot tell a/1.jpg from b/1.jpg: refused, not guessed
        im["file_name"] = Path(im["file_name"]).name
    with pytest.raises(UserError, match="'1.jpg' is ambiguous"):
        score_run(gt, run)


def test_category_ids_coco_80_to_91_and_mismatch():
    from ultralytics.data.converter import coco80_to_coco91_class

    coco = {"categories": [{"id": i, "name": f"c{i}"} for i in coco80_to_coco91_class()]}
    assert category_ids(coco, {i: str(i) for i in range(80)}) == dict(enumerate(coco80_to_coco91_class()))
    with pytest.raises(UserError, match="no model class name"):
        category_ids({"categories": [{"id": 1, "name": "person"}]}, {0: "cat", 1: "dog"})


def test_jittered_detections_agree_with_ultralytics_metric(synthetic, tmp_path):
    """Noisy boxes, missed objects, wrong classes and false positives: Ultralytics' own matching and AP
    (validator.match_predictions + DetMetrics) and COCOeval on the same detections agree within 0.01."""
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics, box_iou

    gt = yolo_to_coco(synthetic)
    root = synthetic.parent / "images" / "val"
    rng = np.random.default_rng(1)
    run = {"images": {}, "detections": [], "names": {0: "circle", 1: "square", 2: "triangle"}}
    validator, metrics = DetectionValidator(save_dir=tmp_path / "v"), DetMetrics(names=run["names"])
    for im in gt["images"]:
        f, w, h = str(root / im["file_name"]), im["width"], im["height"]
        run["images"][f] = (h, w)
        anns = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        dets = []
        for a in anns:
            if rng.random() < 0.85:  # found, with a jittered box and sometimes the wrong class
                x, y, bw, bh = a["bbox"]
                sw, sh = bw * np.exp(rng.normal(0, 0.15)), bh * np.exp(rng.normal(0, 0.15))
                cx, cy = x + bw / 2 + rng.normal(0, 0.08) * bw, y + bh / 2 + rng.normal(0, 0.08) * bh
                c = a["category_id"] - 1 if rng.random() < 0.85 else int(rng.integers(3))
                dets.append((c, float(rng.uniform(0.2, 1.0)), [cx - sw / 2, cy - sh / 2, sw, sh]))
        for _ in range(int(rng.integers(0, 6))):  # false positives
            bw, bh = rng.uniform(5, 40, 2)
            dets.append((int(rng.integers(3)), float(rng.uniform(0, 0.8)), [*rng.uniform(0, [w - bw, h - bh]), bw, bh]))
        dets.sort(key=lambda d: -d[1])  # as NMS hands them over: by descending confidence
        run["detections"] += [{"im_file": f, "cls": c, "score": s, "bbox": b} for c, s, b in dets]

        def xyxy(boxes):
            t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            return torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], 1)

        pred_cls, target_cls = torch.tensor([float(d[0]) for d in dets]), torch.tensor([a["category_id"] - 1.0 for a in anns])
        tp = validator.match_predictions(pred_cls, target_cls, box_iou(xyxy([a["bbox"] for a in anns]),
                                                                    xyxy([d[2] for d in dets]))).numpy()
        metrics.update_stats({"tp": tp, "conf": np.array([d[1] for d in dets]), "pred_cls": pred_cls.numpy(),
                              "target_cls": target_cls.numpy(), "target_img": np.unique(target_cls.numpy()),
                              "im_name": im["file_name"]})
    metrics.process()
    ours = score_run(gt, run, by_index=True, source="YOLO labels")
    assert 0.1 < metrics.box.map < 0.9, metrics.box.map  # a non-trivial answer (measured 0.215 vs 0.218)
    assert ours["cocoeval_map"] == pytest.approx(metrics.box.map, abs=0.01)
    assert ours["cocoeval_map50"] == pytest.approx(metrics.box.map50, abs=0.01)


# --- a trained model (conftest's ``tuned``: the README search's found_n fine-tuned): one validation pass,
# Ultralytics' predictions.json scored by pycocotools ---

def test_cocoeval_agrees_with_ultralytics_on_a_trained_model(tuned, synthetic, tmp_path, monkeypatch):
    from ultranas import NAS

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    model = NAS(tuned)
    r = coco_eval(model, synthetic, imgsz=128, save_dir=tmp_path / "val")
    assert r["ultralytics_map"] > 0.1, r  # a model that learned something
    # measured on a yolov8n trained 10 epochs: Ultralytics 0.2709, COCOeval 0.2735 (0.202 with single-label NMS)
    assert r["cocoeval_map"] == pytest.approx(r["ultralytics_map"], abs=0.01), r
    assert r["cocoeval_map50"] == pytest.approx(r["ultralytics_map50"], abs=0.01), r
    assert r["images"] == 32 and r["detections"] == len(json.loads((tmp_path / "val" / "predictions.json").read_text()))
    gt = yolo_to_coco(synthetic)  # the same ground truth as a COCO file with other ids and an extra image
    gt["categories"] = [{"id": 2 * c["id"] + 10, "name": c["name"]} for c in gt["categories"]]
    for a in gt["annotations"]:
        a["category_id"] = 2 * a["category_id"] + 10
    gt["images"].append({"id": 999, "file_name": "not_evaluated.png", "width": 128, "height": 128})
    gt["annotations"].append({"id": 999, "image_id": 999, "category_id": 12, "bbox": [0, 0, 50, 50], "area": 2500,
                              "iscrowd": 0})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    from_file = coco_eval(model, synthetic, imgsz=128, gt_json=tmp_path / "gt.json")
    assert from_file["cocoeval_map"] == pytest.approx(r["cocoeval_map"], abs=1e-9), (from_file, r)
    assert list(cwd.iterdir()) == []  # nothing written where it ran


def test_cli_coco_eval_prints_both_and_refuses_bad_ground_truth(tuned, synthetic, tmp_path, run_cli, cli_forked):
    proc = run_cli("val", f"model={tuned}", f"data={synthetic}", "coco_eval=true", "imgsz=128")
    assert proc.returncode == 0, proc.stderr
    ours, coco = map(float, re.search(r"Ultralytics (\S+) \| pycocotools (\S+)", proc.stdout).groups())
    assert abs(ours - coco) < 0.01 and ours > 0.1, proc.stdout
    (tmp_path / "bad.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    for arg, message in (("gt_json=missing.json", "gt_json not found"),
                         (f"gt_json={tmp_path / 'bad.json'}", "evaluated images are not in it"),
                         ("max_dets=0", "max_dets must be at least 1")):
        before = sorted(tmp_path.rglob("*"))
        proc = cli_forked("val", f"model={tuned}", f"data={synthetic}", "coco_eval=true", arg, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("ultranas: error: ") and message in proc.stderr, proc.stderr
        assert sorted(tmp_path.rglob("*")) == before  # nothing created
