"""Estimation: rank statistics, successive halving in a real multi-objective run, calibration end to end."""

from __future__ import annotations

import json

import optuna
import pytest

from ultranas.estimation import compressed_schedule
from ultranas.estimation.calibrate import calibrate, rank_correlation, seed_noise


def test_rank_correlation_with_interval():
    perfect = rank_correlation([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60])
    assert perfect["tau"] == 1.0 and perfect["tau_ci90"][0] > 0.9
    reversed_ = rank_correlation([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
    assert reversed_["tau"] == -1.0
    assert rank_correlation([1, 2], [1, 2])["tau"] is None  # too few designs to rank


def test_seed_noise_detects_a_reference_that_cannot_rank():
    assert not seed_noise([[0.0, 0.0], [0.0, 0.0], [0.001, 0.0]])["reference_ranks"]
    assert seed_noise([[0.10, 0.11], [0.30, 0.31], [0.50, 0.52]])["reference_ranks"]


def test_compressed_schedule_is_complete():
    s = compressed_schedule(8, 16)
    assert s["epochs"] == 8 and 0 < s["warmup_epochs"] < 8 and s["close_mosaic"] == 2 and s["nbs"] == 16


def test_successive_halving_stops_weak_designs_in_a_real_multi_objective_run(tmp_path, synthetic, small_mobile):
    from ultranas.engine import search

    run = search(data=str(synthetic), strategy="random", trials=5, epochs=8, imgsz=128, batch=16, halving=True,
                 rungs=[0.5, 1.0], eta=2, objectives=["map", "latency"], warm_start=True, space=small_mobile,
                 final=False, progress=False, project=tmp_path)
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and done, [(t.state, t.user_attrs.get("failure")) for t in study.trials]
    assert all("stopped at rung 0" in t.user_attrs["failure"] for t in pruned)
    assert all("rung1" in t.user_attrs for t in done) and not any("rung1" in t.user_attrs for t in pruned)
    assert len(study.directions) == 2  # multi-objective: optuna's pruners could not have done this


def test_calibrate_end_to_end_on_coco8(tmp_path):
    report = calibrate(data="coco8.yaml", n=6, imgsz=32, reference_epochs=1, proxy_epochs=1, seeds="0,1",
                       proxy="short-train,zero-cost:params", project=str(tmp_path), batch=4)
    run = tmp_path / "exp"
    saved = json.loads((run / "calibration.json").read_text())
    assert (run / "calibration.png").stat().st_size > 1000
    assert saved["designs"] == 6 and {"short-train", "params", "gflops"} <= set(saved["estimators"])
    # coco8 from scratch: every design stays at mAP 0, so the calibration must refuse to report a ranking
    assert not report["noise"]["reference_ranks"] and report["recommended"] is None
    assert "cannot rank" in report["verdict"]


@pytest.mark.parametrize("proxy", ["zero-cost:mae_entropy", "zero-cost:synflow"])
def test_estimators_score_designs_differently(proxy, synthetic, tmp_path):
    import random

    from ultranas.estimation.calibrate import _proxy_estimator
    from ultranas.objectives import Candidate
    from ultranas.space import load_space

    class A:
        proxy_epochs, batch, device, seed, verbose, imgsz = 3, 16, "cpu", 0, False, 64

    space = load_space("mobile")
    est = _proxy_estimator(proxy, synthetic, A)
    scores = []
    for i, g in enumerate([space.point("yolo11n"), space.sample(random.Random(1)), space.sample(random.Random(2))]):
        g = dict(g, imgsz=224)
        work = tmp_path / str(i)
        work.mkdir()
        (work / "model.yaml").write_text(space.to_yaml(g, 3))
        scores.append(est.estimate(Candidate(g, space.render(g, 3), space.design_hash(g, 3), 64, work))["score"])
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
    assert (cfg.estimator, cfg.epochs, cfg.imgsz) == ("short-train", 2, 96)
    path.write_text(json.dumps({**report, "recommended": None, "verdict": "the reference cannot rank"}))
    cfg = SearchConfig(estimator="short-train", epochs=3)
    assert "recommends no estimator" in apply_calibration(cfg, path) and cfg.epochs == 3
    path.write_text("{broken")
    with pytest.raises(UserError, match="cannot read"):
        apply_calibration(SearchConfig(), path)
