"""``--workers N``: local worker processes share the run's study, a killed worker's trial is retried, ``--resume``
works; the host's core lock keeps latency timing apart from training; each trial says where its time went."""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from ultranas.config import SearchConfig, search_workers
from ultranas.errors import UserError

TS = optuna.trial.TrialState


def _study(run):
    return optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")


def _counted(study):
    return [t for t in study.trials if t.state == TS.COMPLETE and not t.user_attrs.get("uncounted")]


def test_local_workers_share_a_run_and_a_killed_workers_trial_is_retried(tmp_path):
    """A retry is queued behind the trials already queued: with the warm start's points (8 at this size, where the
    profile finds small objects and queues the stride-4 points too) past a 5-trial budget, it would never run."""
    run, trials = tmp_path / "exp", 5
    cmd = ["search", "--workers", 2, "--trials", trials, "--epochs", 6, "--imgsz", 32, "--proxy-imgsz", 32,
           "--batch", 4, "--strategy", "random", "--objectives", "map,latency", "--focus", "front", "--no-final",
           "--no-warm-start", "--project", tmp_path]  # no queue of points ahead of the retry (see the note below)
    err = open(tmp_path / "stderr.txt", "w+")  # noqa: SIM115 (read after the process ends; a pipe could fill)
    proc = subprocess.Popen([sys.executable, "-m", "ultranas", *map(str, cmd)], stdout=subprocess.DEVNULL,
                            stderr=err, text=True, start_new_session=True)
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and proc.poll() is None:  # kill a worker mid-trial
        if (run / "trials").is_dir():  # the study exists (opening it earlier would race its creation)
            try:
                for t in _study(run).get_trials(states=(TS.RUNNING,)):
                    pid = int(t.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
                    if pid and pid != proc.pid and "genotype" in t.user_attrs:
                        os.kill(pid, signal.SIGKILL)
                        killed = t.number
                        break
            except Exception:  # noqa: BLE001 (the study is being created: schema, tables, study row)
                pass
        time.sleep(0.1)
    assert killed is not None, "no worker process was seen training"
    code = proc.wait(timeout=600)
    err.seek(0)
    stderr = err.read()
    err.close()
    assert code == 0, stderr[-2000:]
    assert stderr.count("stopped (exit") == 1 and "stopped (exit -9)" in stderr, stderr[-2000:]  # no other crash

    study = _study(run)
    counted = _counted(study)
    assert len(counted) == trials and len({t.user_attrs["hash"] for t in counted}) == trials  # no design twice
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in counted}
    assert len(workers) >= 2 and str(proc.pid) not in workers  # worker processes did the work, the search supervised
    victim = study.trials[killed]
    assert victim.state == TS.FAIL and victim.user_attrs["failure"].startswith("worker process stopped (exit -9)")
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == killed]
    assert [t.state for t in retries] == [TS.COMPLETE] and retries[0].params == victim.params
    assert not [t for t in study.trials if t.state == TS.RUNNING]
    failed = [t for t in study.trials if t.state == TS.FAIL and t.number != killed]
    assert all(t.user_attrs["failure"].startswith("gave way") for t in failed), [t.user_attrs for t in failed]
    rows = list(csv.DictReader((run / "leaderboard.csv").read_text().splitlines()))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    for r in done:  # where each trial's time went
        parts = {k: float(r[k]) for k in ("build_s", "latency_s", "data_s", "train_s", "val_s", "time_s")}
        assert parts["train_s"] > 0 and parts["val_s"] > 0 and min(parts.values()) >= 0, r
        assert parts["data_s"] + parts["train_s"] + parts["val_s"] <= parts["time_s"], r
    assert any(float(r["latency_s"]) > 0 for r in done)

    resumed = subprocess.run([sys.executable, "-m", "ultranas", "search", "--resume", str(run), "--trials",
                              str(trials + 2), "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    counted = _counted(_study(run))
    assert len(counted) == trials + 2 and len({t.user_attrs["hash"] for t in counted}) == trials + 2


def test_sigterm_stops_every_worker_and_requeues_their_trials(tmp_path):
    run = tmp_path / "exp"
    cmd = ["search", "--workers", 2, "--trials", 8, "--epochs", 30, "--imgsz", 32, "--proxy-imgsz", 32, "--batch", 4,
           "--strategy", "random", "--objectives", "map", "--focus", "front", "--no-final", "--project", tmp_path]
    proc = subprocess.Popen([sys.executable, "-m", "ultranas", *map(str, cmd)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    busy: set[int] = set()
    deadline = time.time() + 300
    while len(busy) < 2 and time.time() < deadline and proc.poll() is None:  # both workers in a trial
        if (run / "trials").is_dir():  # the study exists (opening it earlier would race its creation)
            try:
                busy = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in _study(run).get_trials(
                    states=(TS.RUNNING,)) if "genotype" in t.user_attrs}
            except Exception:  # noqa: BLE001 (the study is being created: schema, tables, study row)
                pass
        time.sleep(0.1)
    assert len(busy) == 2, "the two workers were never training at once"
    proc.send_signal(signal.SIGTERM)  # a scheduler stopping the search
    assert proc.wait(timeout=120) == 130
    study = _study(run)
    assert not [t for t in study.trials if t.state == TS.RUNNING]
    stopped = [t for t in study.trials if t.user_attrs.get("failure", "").startswith("interrupted")]
    story = [(t.number, t.state.name, t.user_attrs.get("worker"), t.user_attrs.get("failure")) for t in study.trials]
    assert {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in stopped} >= busy, story  # each worker re-queued
    assert all(any(q.user_attrs.get("retry_of") == t.number and q.state == TS.WAITING for q in study.trials)
               for t in stopped)
    for pid in busy:  # no worker outlives the search
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _stepper(lock_dir: str, steps, stop) -> None:
    os.environ["ULTRANAS_LOCK_DIR"] = lock_dir
    from ultranas import cores

    while not stop.is_set():
        with cores.training():
            time.sleep(0.01)
            with steps.get_lock():
                steps.value += 1


def test_timing_holds_off_training_steps_of_other_processes(tmp_path, monkeypatch):
    """Two processes train in alternating steps; a timer gets the cores within about one step (it is not starved)
    and no step runs while it times, including through ``time_runs``, which every latency timing goes through."""
    from ultranas import cores
    from ultranas.objectives._timing import time_runs

    monkeypatch.setenv("ULTRANAS_LOCK_DIR", str(tmp_path))
    ctx = mp.get_context("spawn")
    steps, stop = ctx.Value("i", 0), ctx.Event()
    procs = [ctx.Process(target=_stepper, args=(str(tmp_path), steps, stop)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        deadline = time.time() + 60
        while steps.value < 20 and time.time() < deadline:
            time.sleep(0.05)
        assert steps.value >= 20, "the stepping processes did not start"
        for _ in range(3):
            t0 = time.perf_counter()
            with cores.timing():
                waited = time.perf_counter() - t0
                before = steps.value
                time.sleep(0.2)
                assert steps.value == before  # nobody stepped while the cores were held for timing
            assert waited < 0.5, f"the timer waited {waited:.2f} s for 10 ms steps"
            moved = steps.value
            time.sleep(0.2)
            assert steps.value > moved  # released: training goes on
        seen = []
        time_runs(lambda: (seen.append(steps.value), time.sleep(0.005)), warmup=2, repeats=20)
        assert len(set(seen)) == 1  # the whole timed loop ran with the cores held
    finally:
        stop.set()
        for p in procs:
            p.join(10)


def test_both_trainers_hold_the_cores_while_they_train(coco8, tmp_path, monkeypatch):
    """Every training step (and validation pass) of the stock and the fast trainer goes through the core lock."""
    from ultranas import cores, ultra
    from ultranas.estimation import compressed_schedule
    from ultranas.estimation._fast_train import FastTrainer
    from ultranas.space import load_space

    entered = []
    real = cores.training

    def counting():
        entered.append(cores._HELD["training"])
        return real()

    monkeypatch.setattr(cores, "training", counting)
    space = load_space("yolo")
    g = space.point("yolo11n")
    (tmp_path / "m.yaml").write_text(space.to_yaml(g, 80))
    metrics, _ = ultra.train(tmp_path / "m.yaml", coco8, tmp_path, "stock", imgsz=32, batch=2, device="cpu",
                             **compressed_schedule(2, 2))
    assert len(entered) >= 2 * 2 + 1  # each epoch's 2 batches, and validation
    assert metrics["train_s"] > 0 and metrics["data_s"] > 0 and metrics["val_s"] > 0
    assert cores._HELD == {"training": 0, "timing": 0}  # all let go
    entered.clear()
    FastTrainer(coco8, 32, 1, 2, "cpu").train([space.render(g, 80)])
    assert len(entered) >= 2 + 2  # 2 steps, the validation loss before and after, the validator
    assert cores._HELD == {"training": 0, "timing": 0}


def test_how_many_workers_a_search_runs(monkeypatch):
    monkeypatch.delenv("ULTRANAS_WORKERS", raising=False)
    import psutil

    cores = min(4, psutil.cpu_count(logical=False) or os.cpu_count())
    assert search_workers(SearchConfig(trials=50)) == cores  # one per physical core on CPU
    assert search_workers(SearchConfig(trials=1)) == 1  # never more than the trials
    assert search_workers(SearchConfig(trials=50, device="0,1")) == 2  # one per listed GPU
    assert search_workers(SearchConfig(trials=50, workers=3)) == 3
    assert search_workers(SearchConfig(trials=50, storage="sqlite:///x.db")) == 1  # shared: 'ultranas worker' adds
    monkeypatch.setenv("ULTRANAS_WORKERS", "1")
    assert search_workers(SearchConfig(trials=50)) == 1
    monkeypatch.setenv("ULTRANAS_WORKERS", "two")
    with pytest.raises(UserError, match="ULTRANAS_WORKERS"):
        search_workers(SearchConfig(trials=50))
    with pytest.raises(UserError, match="--workers"):
        SearchConfig(workers=-1).validate()
