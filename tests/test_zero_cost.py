"""Zero-cost proxies and the ZeroCostEstimator: finite, discriminating, deterministic, end to end (fast)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from ultranas import ultra
from ultranas.errors import UserError
from ultranas.estimation._zero_cost import (
    ZERO_COST_PROXIES,
    ZeroCostEstimator,
    load_batches,
    seeded,
    split_batch,
)
from ultranas.objectives._base import Candidate
from ultranas.space import load_space
from ultranas.synthetic import make_synthetic

COCO8 = Path(__file__).resolve().parent.parent / "ultranas" / "datasets" / "coco8" / "data.yaml"
IMGSZ = 64


@pytest.fixture(scope="module")
def space():
    return load_space("yolo")


@pytest.fixture(scope="module")
def designs(space):
    """Three different sampled designs, rendered for coco8's 80 classes."""
    out, rng = {}, random.Random(7)
    while len(out) < 3:
        g = space.sample(rng)
        out.setdefault(space.design_hash(g), space.render(g, nc=80))
    return list(out.values())


@pytest.fixture(scope="module")
def batch():
    return load_batches(COCO8, IMGSZ, batch_size=4, n_batches=1, seed=0)[0]


def _build(model_dict: dict, seed: int = 0):
    with seeded(seed):
        return ultra.build_model(model_dict)


def _candidate(space, g: dict, nc: int, tmp_path) -> Candidate:
    return Candidate(genotype=g, model_dict=space.render(g, nc=nc), design_hash=space.design_hash(g, nc),
                     imgsz=IMGSZ, workdir=tmp_path)


def test_registry_and_the_baselines_known_answers(designs, batch):
    assert {"mae_entropy", "synflow", "zico", "params", "gflops"} <= set(ZERO_COST_PROXIES)
    for d in designs:  # the baselines are exactly what they say: log parameters, log GFLOPs at the batch's size
        model = _build(d)
        assert ZERO_COST_PROXIES["params"](model, batch) == pytest.approx(math.log(ultra.count_params(model)), rel=1e-12)
        assert ZERO_COST_PROXIES["gflops"](model, batch) == pytest.approx(math.log(ultra.gflops(model, IMGSZ)),
                                                                            rel=1e-12)


def test_load_batches_shapes_and_cache():
    a = load_batches(COCO8, IMGSZ, batch_size=4, n_batches=2, seed=0)
    assert len(a) == 2
    b = a[0]
    assert b["img"].shape == (4, 3, IMGSZ, IMGSZ) and b["img"].dtype == torch.float32
    assert float(b["img"].min()) >= 0.0 and float(b["img"].max()) <= 1.0
    n = b["cls"].shape[0]
    assert n > 0 and b["bboxes"].shape == (n, 4) and b["batch_idx"].shape == (n,)
    assert float(b["bboxes"].min()) >= 0.0 and float(b["bboxes"].max()) <= 1.0
    assert set(b["batch_idx"].tolist()) <= {0.0, 1.0, 2.0, 3.0}
    b["img"].zero_()  # callers get their own tensors
    again = load_batches(COCO8, IMGSZ, batch_size=4, n_batches=2, seed=0)[0]
    assert float(again["img"].max()) > 0


def test_split_batch_renumbers(batch):
    halves = split_batch(batch, 2)
    assert [h["img"].shape[0] for h in halves] == [2, 2]
    assert sum(h["cls"].shape[0] for h in halves) == batch["cls"].shape[0]
    assert all(set(h["batch_idx"].tolist()) <= {0.0, 1.0} for h in halves)


def _other_images(batch: dict) -> dict:
    """The same labels and image size, other pixels."""
    return {**batch, "img": torch.rand(batch["img"].shape, generator=torch.Generator().manual_seed(9))}


@pytest.mark.parametrize("proxy", sorted(ZERO_COST_PROXIES))
def test_proxy_finite_and_discriminates(proxy, designs, batch):
    fn = ZERO_COST_PROXIES[proxy]
    scores = [fn(_build(d), batch) for d in designs]
    assert all(math.isfinite(s) for s in scores), scores
    assert len({round(s, 9) for s in scores}) == 3, scores


# What each proxy may depend on, by its definition: a proxy returning noise, or reading the wrong input, fails these.
# mae_entropy re-draws Gaussian weights and input (only the architecture and the image size count); synflow runs
# |weights| on an all-ones input (the images do not count, nor the weights' signs); params/gflops see the design only.
INVARIANT = {"mae_entropy": ("weights", "images"), "synflow": ("images", "signs"), "params": ("weights", "images"),
             "gflops": ("weights", "images")}


@pytest.mark.parametrize("proxy", sorted(INVARIANT))
def test_proxy_depends_only_on_what_it_reads(proxy, designs, batch):
    fn = ZERO_COST_PROXIES[proxy]
    score = fn(_build(designs[0], seed=0), batch)
    if "weights" in INVARIANT[proxy]:
        assert fn(_build(designs[0], seed=1), batch) == pytest.approx(score, rel=1e-9)
    if "images" in INVARIANT[proxy]:
        assert fn(_build(designs[0], seed=0), _other_images(batch)) == pytest.approx(score, rel=1e-9)
    if "signs" in INVARIANT[proxy]:
        flipped = _build(designs[0], seed=0)
        with torch.no_grad():
            for p in flipped.parameters():
                p.neg_()
        assert fn(flipped, batch) == pytest.approx(score, rel=1e-9)
        assert fn(_build(designs[0], seed=1), batch) != pytest.approx(score, rel=1e-6)  # but it reads the weights


def test_zico_reads_the_gradients_of_the_real_batch(designs, batch):
    """ZiCo is mean |g| / std(g) over mini-batches: the labels move it, and two identical mini-batches (std 0) are
    refused rather than scored."""
    model = _build(designs[0])
    score = ZERO_COST_PROXIES["zico"](model, batch)
    relabelled = {**batch, "cls": (batch["cls"] + 1) % 80}
    assert ZERO_COST_PROXIES["zico"](model, relabelled) != pytest.approx(score, rel=1e-6)
    half = split_batch(batch, 2)[0]
    n = half["img"].shape[0]
    twice = {"img": torch.cat([half["img"], half["img"]]), "cls": torch.cat([half["cls"], half["cls"]]),
             "bboxes": torch.cat([half["bboxes"], half["bboxes"]]),
             "batch_idx": torch.cat([half["batch_idx"], half["batch_idx"] + n])}
    with pytest.raises(FloatingPointError, match="identical"):
        ZERO_COST_PROXIES["zico"](model, twice)


@pytest.mark.parametrize("proxy", sorted(ZERO_COST_PROXIES))
def test_proxy_deterministic_and_leaves_model_alone(proxy, designs, batch):
    fn = ZERO_COST_PROXIES[proxy]
    model = _build(designs[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = fn(model, batch, seed=3)
    assert fn(_build(designs[0]), batch, seed=3) == pytest.approx(first, rel=1e-9, abs=1e-9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("proxy", ["params", "gflops", "synflow", "mae_entropy"])
def test_wider_design_scores_higher(proxy, space, batch):
    g = space.point("yolo11n")
    wide = dict(g)
    for key, choices in space.decisions.items():
        if key.endswith("width"):
            wide[key] = max(choices)
    assert space.check(wide)[0]
    fn = ZERO_COST_PROXIES[proxy]
    assert fn(_build(space.render(wide, nc=80)), batch) > fn(_build(space.render(g, nc=80)), batch)


def test_estimator_end_to_end_on_coco8(space, tmp_path):
    cand = _candidate(space, space.point("yolo11n"), 80, tmp_path)
    est = ZeroCostEstimator(COCO8, proxy="mae_entropy", imgsz=IMGSZ, batch_size=4)
    assert est.name == "zero-cost" and est.trains is False
    out = est.estimate(cand)
    assert out["proxy"] == "mae_entropy" and math.isfinite(out["score"]) and out["proxy_s"] >= 0
    assert est.estimate(cand, fidelity=0.5)["score"] == out["score"]


def test_estimator_end_to_end_on_synthetic(space, tmp_path):
    data = make_synthetic(tmp_path / "syn", n_train=8, n_val=2, imgsz=IMGSZ, seed=0)
    g = space.sample(random.Random(1))
    cand = _candidate(space, g, 3, tmp_path)
    scores = {}
    for proxy in ("zico", "synflow"):
        est = ZeroCostEstimator(data, proxy=proxy, imgsz=IMGSZ, batch_size=4, seed=0)
        out = est.estimate(cand)
        assert math.isfinite(out["score"]) and out["proxy"] == proxy
        scores[proxy] = out["score"]
    assert ZeroCostEstimator(data, proxy="zico", imgsz=IMGSZ, batch_size=4).estimate(cand)["score"] == scores["zico"]


def test_estimator_errors(space, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown zero-cost proxy"):
        ZeroCostEstimator(COCO8, proxy="nope")
    est = ZeroCostEstimator(COCO8, proxy="params", imgsz=IMGSZ, batch_size=2)
    with pytest.raises(UserError, match="nc=3"):
        est.estimate(_candidate(space, space.point("yolo11n"), 3, tmp_path))
    monkeypatch.setitem(ZERO_COST_PROXIES, "nan", lambda model, batch, seed=0: float("nan"))
    with pytest.raises(FloatingPointError, match="nan"):
        ZeroCostEstimator(COCO8, proxy="nan", imgsz=IMGSZ, batch_size=2).estimate(
            _candidate(space, space.point("yolo11n"), 80, tmp_path))
