"""Estimation: rank statistics, successive halving in a real multi-objective run, calibration end to end."""

from __future__ import annotations

import csv
import json

import optuna
import pytest
import yaml

from ultranas.estimation import compressed_schedule
from ultranas.estimation.calibrate import calibrate, rank_correlation, seed_noise
from ultranas.space import load_space


def test_rank_correlation_with_interval():
    perfect = rank_correlation([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60])
    assert perfect["tau"] == 1.0 and perfect["tau_ci90"][0] > 0.9
    reversed_ = rank_correlation([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
    assert reversed_["tau"] == -1.0
    assert rank_correlation([1, 2], [1, 2])["tau"] is None  # too few designs to rank


def test_seed_noise_detects_a_reference_that_cannot_rank():
    assert not seed_noise([[0.0, 0.0], [0.0, 0.0], [0.001, 0.0]])["reference_ranks"]
    clear = seed_noise([[0.10, 0.11], [0.30, 0.31], [0.50, 0.52]])
    assert clear["reference_ranks"] and clear["seed_pair_tau"] == 1.0 and clear["reliability"] > 0.99
    shuffled = seed_noise([[0.30, 0.10], [0.20, 0.20], [0.10, 0.30]])  # seeds disagree: no ranking to recover
    assert not shuffled["reference_ranks"] and shuffled["seed_pair_tau"] == -1.0


def test_compressed_schedule_is_complete(tmp_path, synthetic):
    """The schedule is whole when Ultralytics runs it: warmup ends inside the first epoch, the LR decays linearly to
    lr0 * lrf by the last epoch, mosaic closes for the last one, and no gradients are accumulated."""
    s = compressed_schedule(4, 16)
    assert s["nbs"] == 16 and 0 < s["warmup_epochs"] < 1 and s["close_mosaic"] == 1 and not s["val"]
    from ultranas import ultra

    space = load_space("yolo")
    (tmp_path / "m.yaml").write_text(space.to_yaml(space.point("yolov8n"), nc=3))
    ultra.train(tmp_path / "m.yaml", synthetic, tmp_path, "run", imgsz=32, batch=16, device="cpu", fraction=0.5,
                seed=0, **s)  # 64 images: 4 batches per epoch
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").read_text().splitlines()))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2, 3, 4]  # every epoch ran, no more
    lr = [float(r["lr/pg0"]) for r in rows]
    expected = [s["lr0"] * ((1 - e / 4) * (1 - s["lrf"]) + s["lrf"]) for e in range(4)]  # linear decay, 4 epochs
    assert lr == pytest.approx(expected, rel=1e-6), lr  # warmup over after 0.4 x 4 steps; not a 100-epoch curve
    args = yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())
    assert (args["nbs"], args["batch"], args["close_mosaic"], args["optimizer"]) == (16, 16, 1, "SGD")


def test_successive_halving_stops_weak_designs_in_a_real_multi_objective_run(tmp_path, synthetic, small_mobile):
    from ultranas.engine import search

    run = search(data=str(synthetic), strategy="random", trials=5, epochs=6, imgsz=128, proxy_imgsz=64, batch=16,
                 trainer="fast", score="loss_drop", halving=True,  # a score without mAP's ties at 0 early on
                 rungs=[0.5, 1.0], eta=2, objectives=["map", "latency"], warm_start=True, space=small_mobile,
                 final=False, progress=False, project=tmp_path, focus="front")
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and done, [(t.state, t.user_attrs.get("failure")) for t in study.trials]
    assert all("stopped at rung 0" in t.user_attrs["failure"] for t in pruned)
    assert all("rung1" in t.user_attrs for t in done) and not any("rung1" in t.user_attrs for t in pruned)
    assert len(study.directions) == 2  # multi-objective: optuna's pruners could not have done this


def test_calibrate_end_to_end_on_coco8(tmp_path, tiny_space):
    report = calibrate(data="coco8.yaml", space=str(tiny_space), n=4, imgsz=32, reference_epochs=1, proxy_epochs=1, seeds="0,1",
                       proxy="short-train,zero-cost:params", project=str(tmp_path), batch=4)
    run = tmp_path / "exp"
    saved = json.loads((run / "calibration.json").read_text())
    assert (run / "calibration.png").stat().st_size > 1000
    assert saved["designs"] == 4  # its one point and three random designs
    assert {"short-train", "params", "gflops"} <= set(saved["estimators"])
    assert saved["batch"] == 4  # what the search applies with --calibration
    # coco8 from scratch: every design stays at mAP 0, so the calibration must refuse to report a ranking
    assert not report["noise"]["reference_ranks"] and report["recommended"] is None
    assert "cannot rank" in report["verdict"]


def test_calibrate_reuses_its_reference_cache_with_the_fast_trainer(tmp_path):
    from ultranas.errors import UserError

    cache = tmp_path / "reference.jsonl"
    kw = dict(data="coco8.yaml", n=3, imgsz=32, reference_epochs=1, proxy_epochs=1, seeds="0,1", trainer="fast",
              batch=4, reference_cache=str(cache), project=str(tmp_path))
    first = calibrate(proxy="short-train:val_loss", **kw)
    lines = cache.read_text().splitlines()
    assert len(lines) == 2 * first["designs"] == 2 * len(load_space("yolo").points)  # the baselines, two seeds each
    second = calibrate(proxy="short-train,short-train:train_loss", **kw)
    assert cache.read_text().splitlines() == lines  # the reference was read back, not retrained
    assert [r["reference_runs"] for r in first["rows"]] == [r["reference_runs"] for r in second["rows"]]
    assert {"short-train", "short-train:train_loss"} <= set(second["estimators"])
    assert all(r["proxy"]["short-train:train_loss"] < 0 for r in second["rows"])  # minus a loss: higher is better
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    with pytest.raises(UserError, match="needs --trainer fast"):
        calibrate(**{**kw, "trainer": "ultralytics", "proxy": "short-train:val_loss"})
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == runs  # refused before writing a run


@pytest.mark.parametrize("proxy", ["zero-cost:mae_entropy", "zero-cost:synflow"])
def test_estimators_score_designs_differently(proxy, synthetic, tmp_path):
    """The estimator calibrate builds (from its own settings) scores each design with that proxy at the calibration's
    --imgsz: the same number as the proxy run by hand on the design, and a different one per design."""
    import math
    import random

    from ultranas import ultra
    from ultranas.estimation._zero_cost import ZERO_COST_PROXIES, load_batches, seeded
    from ultranas.estimation.calibrate import _proxy_estimators, _settings
    from ultranas.objectives import Candidate

    a = _settings({"imgsz": 96, "proxy_epochs": 3, "seed": 0})
    space = load_space("mobile")
    est, key = _proxy_estimators([proxy], synthetic, a)[proxy]
    assert key == "score"
    batch = load_batches(synthetic, 96, est.batch_size, 1, 0)[0]
    scores = []
    for i, g in enumerate([space.point("yolo11n"), space.sample(random.Random(1)), space.sample(random.Random(2))]):
        work = tmp_path / str(i)
        work.mkdir()
        (work / "model.yaml").write_text(space.to_yaml(g, 3))
        cand = Candidate(g, space.render(g, 3), space.design_hash(g, 3), space.imgsz(g, a.imgsz), work)
        scores.append(est.estimate(cand)["score"])
        with seeded(0):
            model = ultra.build_model(cand.model_dict)
        by_hand = ZERO_COST_PROXIES[proxy.split(":")[1]](model, batch, seed=0)
        assert scores[-1] == pytest.approx(by_hand, rel=1e-9) and math.isfinite(by_hand)
    assert len(set(round(s, 6) for s in scores)) == 3, scores


def test_search_takes_its_estimator_from_a_calibration(tmp_path):
    from ultranas.config import SearchConfig
    from ultranas.errors import UserError
    from ultranas.estimation.calibrate import apply_calibration

    report = {"recommended": "zero-cost:synflow", "imgsz": 96, "proxy_epochs": 2, "verdict": "",
              "estimators": {"zero-cost:synflow": {"band": {"tau": 0.8}}}}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(report))
    cfg = SearchConfig()
    assert "synflow" in apply_calibration(cfg, path) and (cfg.estimator, cfg.proxy) == ("zero-cost", "synflow")
    path.write_text(json.dumps({**report, "recommended": "short-train"}))
    cfg = SearchConfig()
    apply_calibration(cfg, path)
    assert (cfg.estimator, cfg.epochs, cfg.proxy_imgsz, cfg.trainer) == ("short-train", 2, 96, "ultralytics")
    assert cfg.imgsz == SearchConfig().imgsz  # the calibration sets the proxy size, never the deploy size
    assert cfg.batch == SearchConfig().batch  # a calibration.json without its batch keeps --batch
    path.write_text(json.dumps({**report, "recommended": "short-train:val_loss", "trainer": "fast", "proxy_imgsz": 64,
                                "batch": 16}))
    cfg = SearchConfig()
    apply_calibration(cfg, path)
    assert (cfg.trainer, cfg.score, cfg.proxy_imgsz, cfg.imgsz) == ("fast", "val_loss", 64, 320) and cfg.validate()
    assert cfg.batch == 16  # the proxy as it was calibrated
    path.write_text(json.dumps({**report, "recommended": "supernet:val_loss", "proxy_imgsz": 64}))
    cfg = SearchConfig()
    assert "supernet" in apply_calibration(cfg, path)
    assert (cfg.estimator, cfg.score, cfg.epochs, cfg.proxy_imgsz) == ("supernet", "val_loss", 2, 64) and cfg.validate()
    path.write_text(json.dumps({**report, "recommended": None, "verdict": "the reference cannot rank"}))
    cfg = SearchConfig(estimator="short-train", epochs=3)
    assert "recommends no estimator" in apply_calibration(cfg, path) and cfg.epochs == 3
    path.write_text("{broken")
    with pytest.raises(UserError, match="cannot read"):
        apply_calibration(SearchConfig(), path)
