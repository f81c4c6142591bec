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

from ultranas.distributed import driver_url
from ultranas.local_postgres import LocalPostgres

TS = optuna.trial.TrialState


@pytest.fixture(scope="module")
def postgres():
    server = LocalPostgres()
    url = server.start()  # a missing server binary is a failure, not a skip: the dev extra installs it
    assert url.startswith("postgresql://")  # the plain form, no driver named
    yield url
    server.stop()


def _load(name: str, url: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=driver_url(url))


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ultranas", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def test_workers_share_a_study_and_a_killed_workers_trial_is_retried(postgres, tmp_path):
    name, trials = "dist", 6
    coordinator = _cli("search", "--storage", postgres, "--name", name, "--trials", trials, "--epochs", 3,
                       "--imgsz", 32, "--batch", 4, "--strategy", "random", "--objectives", "map",
                       "--no-final", "--project", tmp_path, cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline:  # the study exists once the coordinator has started
        try:
            _load(name, postgres)
            break
        except KeyError:
            time.sleep(0.5)
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


def test_plain_postgres_urls_open_a_study(postgres):
    from ultranas.distributed import make_storage

    assert driver_url(postgres).startswith("postgresql+psycopg2://")
    for i, url in enumerate((postgres, postgres.replace("postgresql://", "postgres://"))):
        study = optuna.create_study(storage=make_storage(url), study_name=f"plain{i}")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert len(_load(f"plain{i}", postgres).trials) == 2
