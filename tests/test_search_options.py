"""Search options end to end, in real tiny searches through the CLI: ``--seeds 0,1``, ``--single-cls`` and
``--fraction`` reach every training of a candidate; ``--storage journal:FILE`` holds the study (and ``--resume``
through it re-queues an interrupted trial); ``--latency-lut`` predicts every latency of the search; ``--calibration``
sets the estimator, never the deploy size. One search covers the first four (tiny budget: 2 trials, 2 epochs)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from ultranas.input_size import train_size
from ultranas.objectives._lut import LatencyLUT
from ultranas.space import load_space

TS = optuna.trial.TrialState
IMGSZ = 64


def _cli(*args, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ultranas", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _journal_study(journal: Path, name: str = "exp") -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))


def _counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == TS.COMPLETE and not t.user_attrs.get("uncounted")]


@pytest.fixture(scope="module")
def lut_path(tmp_path_factory) -> Path:
    """A per-layer latency table for torch-cpu at 64 px, calibrated on yolo11n and yolo11s rendered for the synthetic
    set's 3 classes (so every layer of both is in the table and their predictions can be recomputed exactly)."""
    space = load_space("yolo")
    lut = LatencyLUT("torch-cpu", IMGSZ, threads=1, warmup=2, repeats=10)
    lut.calibrate([space.render(space.point(p), 3) for p in ("yolo11n", "yolo11s")], warmup=2, repeats=10)
    return lut.save(tmp_path_factory.mktemp("lut") / "lut.json")


@pytest.fixture(scope="module")
def options_run(tmp_path_factory, synthetic, lut_path):
    """``--seeds 0,1 --single-cls --fraction 0.5 --storage journal:... --latency-lut ...`` in one real search."""
    project = tmp_path_factory.mktemp("options")
    journal = project / "study.log"
    proc = _cli("search", "--data", synthetic, "--trials", 2, "--epochs", 2, "--imgsz", IMGSZ, "--proxy-imgsz", IMGSZ,
                "--batch", 16, "--seeds", "0,1", "--single-cls", "--fraction", 0.5, "--storage", f"journal:{journal}",
                "--latency-target", "torch-cpu", "--latency-lut", lut_path, "--references", "yolo11s",
                "--strategy", "random", "--no-warm-start", "--no-final", "--project", project, cwd=project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return project / "exp", journal


def _runs(run: Path, t) -> list[Path]:
    return sorted((run / "trials" / str(t.number)).glob("e*-s*"))


def test_seeds_train_each_candidate_once_per_seed_and_average_them(options_run):
    from ultranas.ultra import load_checkpoint

    run, journal = options_run
    done = _counted(_journal_study(journal))
    assert len(done) == 2
    for t in done:
        runs = _runs(run, t)
        assert [p.name for p in runs] == ["e2-s0", "e2-s1"], runs  # one training per seed, not one in all
        assert [yaml.safe_load((p / "args.yaml").read_text())["seed"] for p in runs] == [0, 1]
        weights = [load_checkpoint(p / "weights" / "best.pt")["model"] for p in runs]
        first = [v.float() for v in weights[0].state_dict().values() if v.is_floating_point()]
        second = [v.float() for v in weights[1].state_dict().values() if v.is_floating_point()]
        assert any(not torch.equal(a, b) for a, b in zip(first, second))  # two seeds, two different trainings
        maps = []
        for p in runs:
            rows = list(csv.DictReader((p / "results.csv").read_text().splitlines()))
            maps.append(float(rows[-1]["metrics/mAP50-95(B)"]))
        metrics = t.user_attrs["metrics"]
        assert metrics["seeds"] == 2 and metrics["score"] == metrics["map"] == t.values[0]
        assert metrics["map"] == pytest.approx(sum(maps) / 2, abs=0.01)  # the mean of both seeds, not one of them


def test_single_cls_trains_class_agnostic_models(options_run):
    run, journal = options_run
    from ultranas.ultra import load_checkpoint

    for t in _counted(_journal_study(journal)):
        assert yaml.safe_load((run / "trials" / str(t.number) / "model.yaml").read_text())["nc"] == 3  # the data's
        for p in _runs(run, t):
            assert yaml.safe_load((p / "args.yaml").read_text())["single_cls"] is True
            model = load_checkpoint(p / "weights" / "best.pt")["model"]
            assert model.nc == 1 and dict(model.names) == {0: "item"}  # trained on one class, as asked


def test_fraction_reaches_every_training_of_a_candidate(options_run):
    run, journal = options_run
    args = [yaml.safe_load((p / "args.yaml").read_text()) for t in _counted(_journal_study(journal))
            for p in _runs(run, t)]
    assert len(args) == 4 and all(a["fraction"] == 0.5 for a in args)
    assert all(a["imgsz"] == IMGSZ and a["epochs"] == 2 for a in args)


def test_journal_storage_holds_the_study(options_run):
    run, journal = options_run
    assert not (run / "study.db").exists()  # the journal replaces the run's SQLite file
    assert journal.stat().st_size > 0
    study = _journal_study(journal)
    assert study.user_attrs["config"]["storage"] == f"journal:{journal}"
    assert study.user_attrs["run_dir"] == str(run.resolve())
    board = list(csv.DictReader((run / "leaderboard.csv").read_text().splitlines()))
    assert sorted(int(r["trial"]) for r in board) == [t.number for t in study.trials]
    assert yaml.safe_load((run / "args.yaml").read_text())["storage"] == f"journal:{journal}"


def test_latency_lut_predicts_every_latency_of_the_search(options_run, lut_path):
    run, journal = options_run
    study = _journal_study(journal)
    space = load_space("yolo")
    lut = LatencyLUT.load(lut_path)
    reference_ms = lut.predict(space.render(space.point("yolo11s"), 3))  # every layer in the table: exact
    assert lut.profiled == 0
    judged = [t for t in study.trials if "latency" in t.user_attrs.get("info", {})]
    assert len(judged) >= 2
    for t in judged:
        info = t.user_attrs["info"]
        assert info["latency"]["predicted"] is True and info["latency"]["target"] == "torch-cpu"
        vs = info["latency_vs"]["yolo11s"]
        assert vs["how"] == "predicted" and vs["a_ms"] == info["latency_ms"]
        assert vs["b_ms"] == pytest.approx(reference_ms, rel=1e-9)  # the reference predicted from the same table
        assert vs["ratio"] == pytest.approx(info["latency_ms"] / reference_ms, rel=1e-9)
    for t in _counted(study):
        assert t.values[1] == t.user_attrs["info"]["latency_ms"]  # the latency objective is the prediction
        assert t.user_attrs["info"]["latency_vs"]["yolo11s"]["ratio"] <= 1.0  # in yolo11s's band, by prediction
    assert not any(k.startswith("latency:") for k in study.user_attrs)  # nothing was measured (and cached)


def test_latency_lut_for_another_size_or_target_is_refused(lut_path, tmp_path):
    for extra, says in ((["--imgsz", 96, "--latency-target", "torch-cpu"], "at 96 px"),
                        (["--imgsz", IMGSZ], "times onnxruntime-cpu")):
        proc = _cli("search", "--latency-lut", lut_path, *extra, "--project", tmp_path / "runs", cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("ultranas: error: --latency-lut") and "predicts torch-cpu at 64 px" in lines[0]
        assert says in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()  # refused before anything was created


def test_resume_through_the_journal_requeues_an_interrupted_trial(options_run):
    """Last on this run (it extends it): a trial left RUNNING in the journal, as by a killed process."""
    from ultranas.trial_loop import suggest_genotype

    run, journal = options_run
    study = _journal_study(journal)
    space = load_space("yolo").with_input_scales([1])  # as the run searched: its latency table times one size
    before = {t.number: t.values for t in _counted(study)}
    study.enqueue_trial(space.point("yolo11s"), user_attrs={"point": "yolo11s"})  # the band's own reference
    interrupted = study.ask()
    g = suggest_genotype(space, interrupted)  # what the engine does first in a trial; then the process dies
    interrupted.set_user_attr("genotype", g)
    proc = _cli("search", "--resume", run, "--trials", 3, cwd=run.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = _journal_study(journal)
    lost = study.trials[interrupted.number]
    assert lost.state == TS.FAIL and lost.user_attrs["uncounted"] is True
    assert lost.user_attrs["failure"] == "interrupted (process stopped); re-queued"
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == interrupted.number]
    assert len(retry) == 1 and retry[0].state == TS.COMPLETE, [(t.state, t.user_attrs.get("failure")) for t in retry]
    assert retry[0].params == lost.params
    assert retry[0].user_attrs["point"] == "yolo11s" and retry[0].user_attrs["genotype"] == g
    done = _counted(study)
    assert len(done) == 3 and {t.number: t.values for t in done if t.number in before} == before
    assert not [t for t in study.trials if t.state in (TS.RUNNING, TS.WAITING)]
    assert [p.name for p in _runs(run, retry[0])] == ["e2-s0", "e2-s1"]  # resumed with the run's own settings


def test_search_takes_the_estimator_a_calibration_recommends(tmp_path, synthetic):
    """A calibration recommending the fast trainer's loss_drop at 32 px for 2 epochs: the search trains exactly that,
    and the deploy size stays the one given (--imgsz 64)."""
    report = {"recommended": "short-train:loss_drop", "trainer": "fast", "proxy_epochs": 2, "proxy_imgsz": 32,
              "imgsz": 128, "verdict": "the reference ranks", "estimators": {"short-train:loss_drop": {"band": {"tau": 0.6}}}}
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps(report))
    proc = _cli("search", "--data", synthetic, "--calibration", calibration, "--trials", 2, "--imgsz", IMGSZ,
                "--batch", 16, "--strategy", "random", "--no-warm-start", "--focus", "front", "--objectives", "map",
                "--latency-target", "torch-cpu", "--no-final", "--project", tmp_path / "p", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using short-train:loss_drop" in proc.stdout
    run = tmp_path / "p" / "exp"
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert (args["estimator"], args["trainer"], args["score"], args["epochs"]) == ("short-train", "fast", "loss_drop", 2)
    assert (args["proxy_imgsz"], args["imgsz"]) == (32, IMGSZ)  # the calibration's proxy size, never the deploy size
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")
    done = _counted(study)
    assert len(done) == 2
    for t in done:
        m = t.user_attrs["metrics"]
        assert m["score"] == m["loss_drop"] == t.values[0] and m["epochs"] == 2 and "val_loss" in m
        info = t.user_attrs["info"]  # the calibration's proxy size, times the design's input scale
        assert info["imgsz"] in (64, 96)  # scales 1 and 1.25 (the others give these sides at 64 px)
        assert info["proxy_imgsz"] == train_size(32, info["imgsz"], IMGSZ)
        assert not list((run / "trials" / str(t.number)).glob("e*-s*"))  # the fast trainer, not Ultralytics' runs
