"""FastTrainer: learns the synthetic set, trains K designs on the same batches, keeps boxes on their objects."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import yaml

from ultranas.estimation._base import Estimator
from ultranas.estimation._device_data import DeviceAugment, DeviceDataset
from ultranas.estimation._fast_train import FastTrainer, FastTrainEstimator
from ultranas.objectives._base import Candidate
from ultranas.space import load_space

EPOCHS = 10  # the learning run: ~13 s (bf16 autocast) to ~20 s (fp32) on the 2-core CPU machine


def _design(name: str, nc: int = 3) -> dict:
    space = load_space("yolo")
    return space.render(space.point(name), nc)


@pytest.fixture
def recorded(monkeypatch):
    """The input checksum of every training-mode forward, one list per model built from now on."""
    from ultranas.estimation import _fast_train

    inputs: list[list[float]] = []
    build = _fast_train.ultra.build_model

    def build_and_record(*args, **kwargs):
        model, seen = build(*args, **kwargs), []
        inputs.append(seen)
        model.register_forward_pre_hook(lambda m, a: seen.append(float(a[0].double().sum())) if m.training else None)
        return model

    monkeypatch.setattr(_fast_train.ultra, "build_model", build_and_record)
    return inputs


@pytest.fixture(scope="module")
def alone(synthetic) -> dict:
    return FastTrainer(synthetic, 128, EPOCHS, 16, "cpu", seed=0).train([_design("yolov8n")])[0]


def test_fast_trainer_learns_the_synthetic_set(alone):
    # measured at 10 epochs, 128 px, seeds 0-2: mAP50 0.59-0.74 (bf16 autocast), 0.58-0.71 (fp32)
    assert alone["map50"] >= 0.3, alone
    assert 0 < alone["map"] <= alone["map50"] <= 1
    assert alone["img_per_s"] > 0 and alone["train_s"] > 0 and alone["epochs"] == EPOCHS


def test_losses_fall_with_training_and_rank_as_scores(synthetic, alone, tmp_path):
    trainer = FastTrainer(synthetic, 128, 1, 16, "cpu", seed=0)
    at_init = trainer.val_loss(trainer._build(_design("yolov8n")).ema.ema)
    assert math.isfinite(alone["val_loss"]) and alone["val_loss"] < 0.8 * at_init, (alone, at_init)
    assert math.isfinite(alone["train_loss"]) and alone["train_loss"] < at_init
    assert alone["loss_drop"] == pytest.approx(1 - alone["val_loss"] / at_init, rel=1e-4)
    space = load_space("yolo")
    g = space.point("yolov8n")
    cand = Candidate(g, space.render(g, 3), space.design_hash(g, 3), 64, tmp_path)
    out = FastTrainEstimator(synthetic, epochs=1, fraction=0.25, score="val_loss").estimate(cand)
    assert out["score"] == -out["val_loss"] and out["val_loss"] > 0
    with pytest.raises(ValueError, match="unknown score"):
        FastTrainEstimator(synthetic, score="accuracy")


def test_two_designs_train_together_on_the_same_batches(synthetic, alone, recorded):
    together = FastTrainer(synthetic, 128, EPOCHS, 16, "cpu", seed=0).train([_design("yolov8n"), _design("yolo11n")])
    assert len(together) == 2 and all("failed" not in r for r in together)
    v8, v11 = recorded[-2:]  # the two models just built: each saw every step's batch, the same one
    assert len(v8) == len(v11) == EPOCHS * math.ceil(128 / 16)
    assert v8 == v11
    # its own result: yolov8n trained beside yolo11n ends exactly where it ends alone (same init, same batches)
    assert together[0]["map"] == pytest.approx(alone["map"], abs=1e-9)
    assert together[1]["map50"] >= 0.2 and together[1]["map"] != together[0]["map"]


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """White squares on black: an object's pixels are exactly its box."""
    out, rng = tmp_path_factory.mktemp("squares"), np.random.default_rng(0)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for i in range(8):
            img, lines = np.zeros((64, 64, 3), np.uint8), []
            for x0, y0 in ((4, 4), (36, 36)):
                x, y, side = x0 + int(rng.integers(0, 8)), y0 + int(rng.integers(0, 8)), int(rng.integers(10, 20))
                img[y:y + side, x:x + side] = 255
                lines.append(f"0 {(x + side / 2) / 64} {(y + side / 2) / 64} {side / 64} {side / 64}")
            cv2.imwrite(str(out / "images" / split / f"{i}.png"), img)
            (out / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump({"path": str(out), "train": "images/train", "val": "images/val", "names": ["sq"]}))
    return DeviceDataset(path, 64)


def _boxes_px(batch: dict, i: int, s: int) -> np.ndarray:
    xywh = batch["bboxes"][batch["batch_idx"] == i].numpy() * s
    return np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)


def test_flip_moves_boxes_with_the_image(squares):
    idx = torch.arange(len(squares))
    plain = squares.batch(idx)
    flip = DeviceAugment(squares, torch.Generator().manual_seed(0), 0, 0, 0, translate=0, scale=0, fliplr=1.0)(idx)
    assert torch.allclose(flip["img"], plain["img"].flip(-1), atol=1e-5)
    assert torch.allclose(flip["bboxes"][:, 0], 1 - plain["bboxes"][:, 0], atol=1e-5)
    assert torch.allclose(flip["bboxes"][:, 1:], plain["bboxes"][:, 1:], atol=1e-5)
    assert torch.equal(flip["batch_idx"], plain["batch_idx"]) and torch.equal(flip["cls"], plain["cls"])


@pytest.mark.parametrize("mosaic", [0.0, 1.0, 0.5])
def test_augmented_boxes_stay_on_their_objects(squares, mosaic):
    augment = DeviceAugment(squares, torch.Generator().manual_seed(1), 0, 0, 0)  # geometry only: scale, shift, flip
    for _ in range(3):
        batch = augment(torch.arange(len(squares)), mosaic)
        assert ((batch["bboxes"] >= 0) & (batch["bboxes"] <= 1)).all() and (batch["bboxes"][:, 2:] > 0).all()
        bright = batch["img"].mean(1).numpy() > 0.5
        for i in range(len(squares)):
            boxes, covered = _boxes_px(batch, i, 64), np.zeros((64, 64), bool)
            for x1, y1, x2, y2 in boxes:
                inner = bright[i, math.ceil(y1) + 1:int(y2) - 1, math.ceil(x1) + 1:int(x2) - 1]
                assert inner.size == 0 or inner.mean() > 0.95  # the box sits on a square
                covered[max(int(y1) - 1, 0):math.ceil(y2) + 1, max(int(x1) - 1, 0):math.ceil(x2) + 1] = True
            # bright pixels outside every box: only slivers whose box was dropped (a side <= 2 px or < 10 % left)
            _, _, stats, _ = cv2.connectedComponentsWithStats((bright[i] & ~covered).astype(np.uint8))
            for _x, _y, w, h, area in stats[1:]:
                assert min(w, h) <= 3 or area <= 0.1 * (19 * 1.5) ** 2 + 10, (mosaic, i, w, h, area)


def test_fast_train_estimator_through_the_estimator_interface(synthetic, tmp_path):
    space = load_space("yolo")
    g = space.point("yolov8n")
    cand = Candidate(g, space.render(g, 3), space.design_hash(g, 3), 64, tmp_path)
    est = FastTrainEstimator(synthetic, epochs=2, imgsz=None, batch=16, fraction=0.25, seeds=(0, 1))
    assert isinstance(est, Estimator) and est.name == "fast-train" and est.trains
    out = est.estimate(cand, fidelity=0.5)
    assert {"score", "map", "map50", "train_s", "epochs", "seeds"} <= set(out)
    assert out["score"] == out["map"] and math.isfinite(out["score"]) and out["epochs"] == 1 and out["seeds"] == 2
    assert (tmp_path / "progress").read_text() == "2/2\n"  # epochs done over both seeds, for the status line
    assert est.dataset(64).imgsz == 64 and len(est.dataset(64)) == 32  # candidate.imgsz, fraction of 128
