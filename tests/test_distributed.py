"""Distributed search on a real PostgreSQL server: workers share one study; a killed worker's trial is retried.

The server comes from pip (the dev extra's ``pgserver``); URLs are given as users type them, ``postgresql://``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

from ultranas.local_postgres import LocalPostgres
from ultranas.study import driver_url

TS = optuna.trial.TrialState


@pytest.fixture(scope="module")
def postgres():
    server = LocalPostgres()
    url = server.start()  # a missing server binary is a failure, not a skip: the dev extra installs it
    assert url.startswith("postgresql://")  # the plain form, no driver named
    yield url
    server.stop()


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def _load(name: str, url: str) -> optuna.Study:
    """The study through one storage (one connection pool) per URL: polling must not use up the server's clients."""
    storage = _STORAGES.setdefault(url, optuna.storages.RDBStorage(driver_url(url)))
    return optuna.load_study(study_name=name, storage=storage)


def _wait_for_study(name: str, url: str, timeout: float = 120) -> None:
    """The study exists once the coordinator has started."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            _load(name, url)
            return
        except KeyError:
            time.sleep(0.5)


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ultranas", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def test_workers_share_a_study_and_a_killed_workers_trial_is_retried(postgres, tmp_path):
    """No warm start: a retry queues behind the points already queued, which past the budget would starve it."""
    name, trials = "dist", 6
    coordinator = _cli("search", "--storage", postgres, "--name", name, "--trials", trials, "--epochs", 3,
                       "--imgsz", 32, "--batch", 4, "--strategy", "random", "--objectives", "map",
                       "--focus", "front", "--no-final", "--no-warm-start", "--project", tmp_path, cwd=tmp_path)
    _wait_for_study(name, postgres)
    victim = _cli("worker", "--storage", postgres, "--name", name, "--quiet", cwd=tmp_path)
    helper = _cli("worker", "--storage", postgres, "--name", name, "--quiet", cwd=tmp_path)
    killed_trial = None
    deadline = time.time() + 300
    while time.time() < deadline and killed_trial is None:  # kill the victim in the middle of one of its trials
        study = _load(name, postgres)
        for t in study.get_trials(states=(TS.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{victim.pid}") and "genotype" in t.user_attrs:
                os.killpg(victim.pid, signal.SIGKILL)
                killed_trial = t.number
                break
        time.sleep(0.3)
    assert killed_trial is not None, "the victim worker never ran a trial"
    victim.wait()
    assert coordinator.wait(timeout=600) == 0, coordinator.stderr.read()[-2000:]
    assert helper.wait(timeout=120) == 0, helper.stderr.read()[-2000:]

    study = _load(name, postgres)
    counted = [t for t in study.trials if t.state == TS.COMPLETE and not t.user_attrs.get("uncounted")]
    assert len(counted) == trials  # every planned trial completed exactly once
    hashes = [t.user_attrs["hash"] for t in counted]
    assert len(set(hashes)) == len(hashes)  # no design evaluated twice
    killed = study.trials[killed_trial]
    assert killed.state == TS.FAIL  # failed by heartbeat timeout ...
    retries = [t for t in study.trials if Retry.retried_trial_number(t) == killed_trial]
    assert retries and retries[0].state == TS.COMPLETE  # ... and re-run by another worker
    assert retries[0].params == killed.params
    assert not [t for t in study.trials if t.state in (TS.RUNNING, TS.WAITING)]
    assert len({t.user_attrs["worker"] for t in counted}) >= 2  # the work was shared
    run = tmp_path / name
    for f in ("args.yaml", "leaderboard.csv", "pareto.png"):  # the same run-directory format as a single machine
        assert (run / f).is_file(), f
    for t in counted:
        assert (run / "trials" / str(t.number) / "model.yaml").is_file()


@pytest.mark.parametrize("scheme", ["postgresql://", "postgres://"])
def test_worker_for_a_missing_study_is_one_line(postgres, run_cli, scheme):
    proc = run_cli("worker", "--storage", postgres.replace("postgresql://", scheme), "--name", "nope")
    assert proc.returncode == 2 and "no study 'nope'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


OPEN_AT_ONCE = """
import os, sys, time
from pathlib import Path
import optuna
from ultranas.study.storage import make_storage
folder = Path(sys.argv[2])
(folder / f"ready-{os.getpid()}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
optuna.create_study(storage=make_storage(sys.argv[1]), study_name="s", load_if_exists=True)
"""


def test_processes_creating_one_new_study_database_at_once_all_open_it(tmp_path):
    """optuna creates a new database's schema without a lock: of processes opening it at the same moment (workers, a
    dashboard, a script polling the study file), the slower failed with "table studies already exists" or a
    duplicate schema-version row (measured: 10 of 20 processes in 5 rounds of 4). Each now looks again."""
    for round_ in range(3):
        folder = tmp_path / str(round_)
        folder.mkdir()
        url = f"sqlite:///{folder / 'study.db'}"
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(folder)], stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
        deadline = time.time() + 120
        while len(list(folder.glob("ready-*"))) < 4 and time.time() < deadline:
            time.sleep(0.01)
        (folder / "go").touch()  # all four open the new database at once
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e.strip().splitlines()[-1] for e in errors if e.strip()]
        assert optuna.study.get_all_study_names(url) == ["s"]


def test_plain_postgres_urls_open_a_study(postgres):
    from ultranas.study.storage import make_storage

    assert driver_url(postgres).startswith("postgresql+psycopg2://")
    for i, url in enumerate((postgres, postgres.replace("postgresql://", "postgres://"))):
        study = optuna.create_study(storage=make_storage(url), study_name=f"plain{i}")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert len(_load(f"plain{i}", postgres).trials) == 2


def test_resume_leaves_a_trial_that_a_live_worker_is_running_alone(postgres, tmp_path):
    """The coordinator is stopped (SIGTERM, as a scheduler does) while a worker trains; 'ultranas search --resume'
    starts during that trial. It must not fail (and re-queue) the live worker's trial: only trials whose worker
    stopped beating are failed, by optuna's stale-heartbeat check."""
    name, trials = "live", 2
    coordinator = _cli("search", "--storage", postgres, "--name", name, "--trials", trials, "--epochs", 30,
                       "--imgsz", 32, "--proxy-imgsz", 32, "--batch", 4, "--strategy", "random", "--objectives", "map",
                       "--references", "", "--no-warm-start", "--no-final", "--project", tmp_path, cwd=tmp_path)
    _wait_for_study(name, postgres)
    worker = _cli("worker", "--storage", postgres, "--name", name, "--quiet", cwd=tmp_path)
    live = training = None
    deadline = time.time() + 300
    while time.time() < deadline and (live is None or training is None):  # both are training a design
        for t in _load(name, postgres).get_trials(states=(TS.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{worker.pid}") and "genotype" in t.user_attrs:
                live = t.number
            if t.user_attrs.get("worker", "").endswith(f":{coordinator.pid}") and \
                    list((tmp_path / name / "trials" / str(t.number)).glob("*/results.csv")):
                training = t.number  # past its start-up (a stop during an import is another story)
        time.sleep(0.3)
    assert live is not None and training is not None, "the worker and the coordinator never trained at once"
    coordinator.send_signal(signal.SIGTERM)
    assert coordinator.wait(timeout=120) == 130, coordinator.stderr.read()[-2000:]
    before = _load(name, postgres).user_attrs.get("search_s")
    resumed = _cli("search", "--resume", tmp_path / name, cwd=tmp_path)
    seen_by_resume = None
    while seen_by_resume is None and resumed.poll() is None:  # the resumed search is past its recovery ...
        study = _load(name, postgres)
        if study.user_attrs.get("search_s") != before or any(t.user_attrs.get("worker", "").endswith(
                f":{resumed.pid}") for t in study.trials):
            seen_by_resume = study.trials[live].state
        time.sleep(0.3)
    assert seen_by_resume == TS.RUNNING, {
        TS.FAIL: "the resumed search failed the trial a live worker is running",
        TS.COMPLETE: "the worker's trial ended before the resumed search started: raise --epochs"}.get(seen_by_resume)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    assert worker.wait(timeout=300) == 0, worker.stderr.read()[-2000:]  # it finished its trial and stopped normally

    study = _load(name, postgres)
    mine = study.trials[live]
    assert mine.state == TS.COMPLETE and "failure" not in mine.user_attrs  # ... and left it to the worker
    assert not [t for t in study.trials if t.user_attrs.get("retry_of") == live]  # nothing re-queued for it
    counted = [t for t in study.trials if t.state == TS.COMPLETE and not t.user_attrs.get("uncounted")]
    pids = {str(coordinator.pid): "coordinator", str(worker.pid): "worker", str(resumed.pid): "resumed"}
    story = "; ".join(f"{t.number} {t.state.name} {pids.get(t.user_attrs.get('worker', ':').rsplit(':', 1)[1])} "
                      f"{t.user_attrs.get('failure', '')} {t.datetime_start and t.datetime_start.time()}-"
                      f"{t.datetime_complete and t.datetime_complete.time()}" for t in study.trials if t.datetime_start)
    assert len(counted) == trials and len({t.user_attrs["hash"] for t in counted}) == trials, story
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in counted} == {str(worker.pid), str(resumed.pid)}, story
    stopped = study.trials[training]  # the coordinator's own trial: failed on SIGTERM, re-run by the resumed search
    assert stopped.state == TS.FAIL and stopped.user_attrs["failure"] == "interrupted (Ctrl-C); re-queued", story
    assert [t.state for t in study.trials if t.user_attrs.get("retry_of") == training] == [TS.COMPLETE], story
    assert not [t for t in study.trials if t.state == TS.RUNNING]
