"""Faults: kill -9 at random moments and resume (nothing lost or duplicated); failing candidates fail alone."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time

import optuna
import yaml

from ultranas.config import SearchConfig
from ultranas.context import open_context
from ultranas.estimation import ShortTrainEstimator
from ultranas.space import load_space
from ultranas.trial_loop import counted, run_worker

TS = optuna.trial.TrialState


def _state(run):
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")
    done = {t.number: (t.values, t.user_attrs["hash"]) for t in study.trials
            if t.state == TS.COMPLETE and not t.user_attrs.get("uncounted")}
    return study, done


def test_kill_9_at_random_moments_then_resume(tmp_path):
    trials, rng = 10, random.Random(0)
    run = tmp_path / "exp"
    first = [sys.executable, "-m", "ultranas", "search", "--trials", trials, "--epochs", 1, "--imgsz", 32, "--proxy-imgsz", 32, "--batch", 4,
             "--strategy", "evolution", "--objectives", "map,params", "--focus", "front", "--no-final", "--project", tmp_path]
    seen: dict = {}
    for kill in range(7):
        args = first if kill == 0 else [sys.executable, "-m", "ultranas", "search", "--resume", run]
        proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        if kill == 0:
            while not (run / "args.yaml").exists() and proc.poll() is None:
                time.sleep(0.1)
        time.sleep(rng.uniform(0.5, 6.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        study, done = _state(run)
        for number, record in seen.items():  # no completed trial lost or changed
            assert done.get(number) == record, f"trial {number} changed after kill {kill}"
        hashes = [h for _, h in done.values()]
        assert len(hashes) == len(set(hashes)), f"a design was completed twice after kill {kill}"
        if (run / "leaderboard.csv").exists():  # reports are replaced atomically: never half-written
            rows = list(csv.DictReader((run / "leaderboard.csv").read_text().splitlines()))
            assert all(r["state"] for r in rows)
        yaml.safe_load((run / "args.yaml").read_text())
        seen = done
    final = subprocess.run([sys.executable, "-m", "ultranas", "search", "--resume", str(run)], capture_output=True,
                           text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    study, done = _state(run)
    assert len(done) == trials and counted(study) == trials
    assert all(done[n] == r for n, r in seen.items())
    assert not [t for t in study.trials if t.state in (TS.RUNNING, TS.WAITING)]


class _DivergingForOne(ShortTrainEstimator):
    """The real short-schedule training; one design gets an absurd learning rate, so its loss really turns NaN."""

    def __init__(self, bad_hash, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_hash = bad_hash

    def estimate(self, candidate, fidelity=1.0):
        self.train_overrides = {"box": float("inf")} if candidate.design_hash == self.bad_hash else {}
        return super().estimate(candidate, fidelity)


def test_nan_and_build_failures_fail_alone(tmp_path):
    raw = yaml.safe_load(load_space("yolo").path.read_text())
    raw["blocks"]["A2C2f"]["width_multiple"] = 8  # lets through a design that Ultralytics cannot build
    space_path = tmp_path / "space.yaml"
    space_path.write_text(yaml.safe_dump(raw))
    space = load_space(space_path)
    broken = dict(space.point("yolo11n"), **{"P4.block": "A2C2f", "P4.width": 96})
    cfg = SearchConfig(space=str(space_path), strategy="random", trials=4, epochs=2, imgsz=32, proxy_imgsz=32, batch=4,
                       objectives=["map"], final=False, warm_start=False, focus="front", project=str(tmp_path)).validate()
    run = tmp_path / "exp"
    run.mkdir()
    ctx = open_context(cfg, run)
    nan_design = space.point("yolov8n")
    ctx.estimator = _DivergingForOne(space.design_hash(nan_design, ctx.nc), ctx.data, epochs=2, batch=4)
    ctx.study.enqueue_trial(broken)
    ctx.study.enqueue_trial(nan_design)
    run_worker(ctx, progress=False)
    trials = ctx.study.trials
    assert trials[0].state == TS.FAIL and "Dimension of ABlock" in trials[0].user_attrs["failure"]
    assert trials[1].state == TS.FAIL and ("NaN" in trials[1].user_attrs["failure"]
                                           or "non-finite" in trials[1].user_attrs["failure"])
    assert sum(t.state == TS.COMPLETE for t in trials) == 2  # the search went on to its budget
