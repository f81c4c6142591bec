"""Progress that never goes quiet: the status line's facts, the ticker that redraws it, epochs read back."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace

import optuna
from tqdm import tqdm

from ultranas.progress import Ticker, epochs_done, final_status, search_status


def test_the_status_line_names_running_trials_screened_proposals_best_per_band_and_time_left(tmp_path):
    study = optuna.create_study(directions=["maximize"])
    for band, score in [("yolo11n", 0.31), ("yolo11n", 0.40), ("yolo11s", 0.52)]:
        study.add_trial(optuna.trial.create_trial(values=[score], user_attrs={
            "metrics": {"score": score}, "info": {"band": band}}))
    running, other = study.ask(), study.ask()
    study.set_user_attr("screened", 5)
    study.set_user_attr("run_dir", str(tmp_path))
    (tmp_path / "trials" / str(other.number)).mkdir(parents=True)
    (tmp_path / "trials" / str(other.number) / "progress").write_text("5/23\n")  # written by the fast trainer
    (tmp_path / "trials" / str(running.number) / "e3-s0").mkdir(parents=True)  # an Ultralytics training
    (tmp_path / "trials" / str(running.number) / "e3-s0" / "results.csv").write_text("epoch,loss\n0,1.0\n1,0.9\n")
    cfg = SimpleNamespace(time_limit=10.0)
    line = search_status(study, cfg, lambda: 180.0)
    assert re.search(rf"running #{running.number} 2 ep \d+s #{other.number} 5/23 ep \d+s", line), line
    assert "screened 5" in line
    assert "yolo11n:0.400" in line and "yolo11s:0.520" in line and "7.0 min left" in line
    assert "min left" not in search_status(study, SimpleNamespace(time_limit=None), lambda: 0.0)


def test_epochs_are_read_from_each_trainings_results_csv(tmp_path):
    done, running, queued = tmp_path / "a-s0-1", tmp_path / "b-s1-2", tmp_path / "c-s0-3"
    for folder, rows in [(done, 3), (running, 1)]:
        folder.mkdir()
        (folder / "results.csv").write_text("epoch,loss\n" + "".join(f"{i},0.5\n" for i in range(rows)))
    assert (epochs_done(done), epochs_done(running), epochs_done(queued)) == (3, 1, 0)
    line = final_status([done, running, queued], 3, 0.0, lambda: 90.0)
    assert line == "b-s1 1/3 ep, 1.5 min"  # finished and not-started trainings are not listed


def test_the_ticker_redraws_while_the_work_runs_and_stays_idle_without_a_bar():
    calls = []
    out = io.StringIO()
    bar = tqdm(total=3, file=out, desc="t")
    with Ticker(bar, lambda: calls.append(1) or f"tick {len(calls)}", every_s=0.05):
        time.sleep(0.4)
    bar.close()
    assert len(calls) >= 4 and "tick 3" in out.getvalue()
    quiet = tqdm(total=3, disable=True)
    with Ticker(quiet, lambda: calls.append(1) or "", every_s=0.05):
        n = len(calls)
        time.sleep(0.2)
    assert len(calls) == n  # no bar, no status queries


def test_a_failing_status_never_stops_the_work():
    bar = tqdm(total=1, file=io.StringIO())
    with Ticker(bar, lambda: 1 / 0, every_s=0.02):
        time.sleep(0.1)
    bar.close()
