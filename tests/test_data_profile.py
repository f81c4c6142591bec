"""``ultranas data profile``: object sizes in pixels at the deploy size, counts per split and class, suspicious labels;
the synthetic generator's object sizes and clutter."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from ultranas.config import SearchConfig
from ultranas.data_profile import format_profile, points_first, profile_data, score_advice
from ultranas.space import load_space
from ultranas.synthetic import make_synthetic


def _dataset(root: Path) -> Path:
    """Images of 200x100 and 50x100 px (w x h) with labels whose pixel sizes are known."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "train" / "wide.png"), np.zeros((100, 200, 3), np.uint8))
    cv2.imwrite(str(root / "images" / "train" / "tall.png"), np.zeros((100, 50, 3), np.uint8))
    cv2.imwrite(str(root / "images" / "train" / "nolabel.png"), np.zeros((100, 100, 3), np.uint8))
    cv2.imwrite(str(root / "images" / "val" / "empty.png"), np.zeros((64, 64, 3), np.uint8))
    # wide: 0.1 x 0.2 of 200 x 100 = 20 x 20 px; at imgsz 400 (scale 2) 40 px; twice (a duplicate), and a 0.5 px slip
    (root / "labels" / "train" / "wide.txt").write_text("0 0.5 0.5 0.1 0.2\n0 0.5 0.5 0.1 0.2\n1 0.2 0.2 0.0025 0.005\n")
    # tall: 0.5 x 0.25 of 50 x 100 = 25 x 25 px; at imgsz 400 (scale 4) 100 px
    (root / "labels" / "train" / "tall.txt").write_text("1 0.5 0.5 0.5 0.25\n")
    (root / "labels" / "val" / "empty.txt").write_text("")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                    "names": {0: "a", 1: "b"}}))
    return data


def test_profile_measures_boxes_in_pixels_at_the_deploy_size(tmp_path):
    p = profile_data(_dataset(tmp_path / "d"), 400)
    train, val = p["splits"]["train"], p["splits"]["val"]
    assert (train["images"], train["boxes"], train["boxes_per_class"]) == (3, 4, [2, 2])
    assert (train["empty_images"], train["missing_labels"], train["duplicate_boxes"], train["tiny_boxes"]) == (1, 1, 1, 1)
    assert train["max_boxes_per_image"] == 3
    # sizes 1, 40, 40, 100 px: the longer side is scaled to imgsz (letterbox), not the shorter, not the raw pixels
    assert train["size_px"]["median"] == pytest.approx(40.0)
    assert train["share_under_px"] == {"8": 0.25, "16": 0.25, "32": 0.25}
    assert (val["images"], val["boxes"], val["empty_images"], val["missing_labels"]) == (1, 0, 1, 0)
    assert "size_px" not in val
    half = profile_data(tmp_path / "d" / "data.yaml", 200)["splits"]["train"]  # half the input: half the pixels
    assert half["size_px"]["median"] == pytest.approx(20.0)
    lines = format_profile(p)
    assert "1 duplicate boxes" in lines[1] and "1 missing labels" in lines[1] and "no boxes" in lines[2]


def test_small_object_set_reads_as_small_and_a_larger_input_changes_the_reading(tmp_path):
    data = make_synthetic(tmp_path / "small", n_train=24, n_val=6, n_test=6, imgsz=256, seed=1, max_objects=10,
                          object_size=(0.02, 0.06), clutter=6)
    p = profile_data(data, 256)
    assert set(p["splits"]) == {"train", "val", "test"}
    train = p["splits"]["train"]
    rows = [ln.split() for f in sorted((tmp_path / "small" / "labels" / "train").iterdir())
            for ln in f.read_text().splitlines() if ln.strip()]
    assert train["boxes"] == len(rows) == sum(train["boxes_per_class"]) and train["boxes"] > 24
    sides = [float(r[3]) for r in rows]
    assert min(sides) >= 0.02 - 1e-3 and max(sides) <= 0.06 + 1e-3  # object_size is the side's share of the image
    assert 5 <= train["size_px"]["median"] <= 16 and train["share_under_px"]["16"] > 0.5
    assert p["reading"].startswith("small objects dominate")
    large = profile_data(data, 1024)
    assert not large["reading"].startswith("small")  # 4x the pixels: 20-60 px objects
    points = load_space("yolo").points  # a search tries the stride-4 designs first where objects are small
    assert [n for n, _ in points_first(points, p)][:2] == ["yolov8n-p2", "yolo26n-p2"]
    assert [n for n, _ in points_first(points, large)] == [n for n in points if not n.endswith("-p2")]
    assert "yolo26n-p2" in dict(points_first(points, large, keep={"yolo26n-p2"}))  # a reference always stays

    # a loss-based score or a proxy size that shrinks the objects under 8 px is warned about, mAP at the size is not
    fast = {"trainer": "fast", "imgsz": 256}
    assert "--score map" in score_advice(p, SearchConfig(score="loss_drop", proxy_imgsz=256, **fast))
    assert "--proxy-imgsz 64" in score_advice(p, SearchConfig(score="map", proxy_imgsz=64, **fast))
    assert score_advice(p, SearchConfig(score="map", proxy_imgsz=256, **fast)) is None
    assert score_advice(large, SearchConfig(score="loss_drop", proxy_imgsz=64, **fast)) is None


def test_an_image_that_does_not_open_is_counted_not_fatal(tmp_path):
    from ultranas.data_profile import profile_split

    data = _dataset(tmp_path / "d")
    images = sorted((tmp_path / "d" / "images" / "train").iterdir())
    (tmp_path / "d" / "images" / "train" / "wide.png").write_bytes(b"not an image")  # its label has 3 boxes
    p = profile_split(images, 2, 400)
    assert (p["unreadable_images"], p["boxes"], p["size_px"]["median"]) == (1, 1, 100.0)
    assert data.is_file()


def test_clutter_draws_unlabelled_distractors_and_defaults_are_unchanged(tmp_path):
    plain = make_synthetic(tmp_path / "a", n_train=4, n_val=2, imgsz=96, seed=3)
    again = make_synthetic(tmp_path / "b", n_train=4, n_val=2, imgsz=96, seed=3, object_size=(0.16, 0.4), clutter=0)
    clutter = make_synthetic(tmp_path / "c", n_train=4, n_val=2, imgsz=96, seed=3, clutter=5)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    for f in files:  # the documented defaults are the generator's old behaviour, byte for byte
        assert (plain.parent / f).read_bytes() == (again.parent / f).read_bytes()
    assert any((plain.parent / f).read_bytes() != (clutter.parent / f).read_bytes() for f in files)
    assert profile_data(clutter, 96)["splits"]["train"]["boxes"] > 0
    with pytest.raises(ValueError, match="object_size"):
        make_synthetic(tmp_path / "d", n_train=1, n_val=1, object_size=(0.3, 0.1))


def test_cli_prints_the_profile_and_writes_json(tmp_path, run_cli, cli_forked):
    data = _dataset(tmp_path / "d")
    proc = run_cli("data", "profile", "--data", data, "--imgsz", 400, "--json", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["splits"]["train"]["size_px"]["median"] == pytest.approx(40.0) and saved["imgsz"] == 400
    assert proc.stdout.splitlines() == format_profile(profile_data(data, 400))
    for args, message in ((["--imgsz", 400], "needs --data"), (["--data", data, "--imgsz", 0], "--imgsz"),
                          (["--data", data, "--json", tmp_path / "no" / "p.json"], "existing folder"),
                          (["--data", tmp_path / "none.yaml"], "none.yaml")):
        before = sorted(tmp_path.rglob("*"))
        bad = cli_forked("data", "profile", *args, cwd=tmp_path)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and message in bad.stderr, bad.stderr
        assert sorted(tmp_path.rglob("*")) == before
