"""Progress that never goes quiet: bars whose status line a background thread redraws every few seconds (trials
running and for how long, proposals screened, best score per latency band, time left), and the final stage's epochs
read from each training's ``results.csv``."""

from __future__ import annotations

import csv
import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import optuna
from tqdm import tqdm

from .study import StudyRecord, TrialRecord

TS = optuna.trial.TrialState
EVERY_S = 5.0  # the longest the status line stays unchanged


class Ticker:
    """Redraw ``bar``'s status line from ``status()`` every ``every_s`` seconds while the block runs (the main thread
    goes on updating the bar's count). A failing ``status`` shows nothing rather than stopping the work."""

    def __init__(self, bar: tqdm, status: Callable[[], str], every_s: float = EVERY_S):
        self.bar, self.status, self.every_s = bar, status, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ultranas-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.tick()

    def tick(self) -> None:
        if self.bar.disable:
            return
        try:
            self.bar.set_postfix_str(self.status(), refresh=True)
        except Exception:  # noqa: BLE001 (a status line is never worth a failed search)
            pass

    def __enter__(self) -> Ticker:
        if not self.bar.disable:
            self.tick()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self.every_s)


def search_bar(cfg, done: int, desc: str, progress: bool = True) -> tqdm:
    """The search's bar over counted trials; under ``--time-limit`` with a budget of trials it will not reach, a
    count without a total (an ETA toward 100000 trials means nothing)."""
    total = None if cfg.time_limit is not None and cfg.trials > 1000 else cfg.trials
    return tqdm(total=total, initial=min(done, cfg.trials), desc=desc, unit="trial", dynamic_ncols=True,
                disable=not progress)


def search_status(study: optuna.Study, cfg, search_s: Callable[[], float]) -> str:
    """Trials running (number and age), proposals screened, best score so far per latency band, time left."""
    trials = study.get_trials(deepcopy=False)
    now, parts = dt.datetime.now(), []
    running = [t for t in trials if t.state == TS.RUNNING and t.datetime_start is not None]
    if running:
        run_dir = StudyRecord(study).run_dir
        parts.append("running " + " ".join(f"#{t.number} {_epochs(Path(run_dir) / 'trials' / str(t.number)) if run_dir else ''}"
                                           f"{(now - t.datetime_start).total_seconds():.0f}s" for t in running[:4]))
    if screened := StudyRecord(study).screened:
        parts.append(f"screened {screened}")
    best: dict[str, float] = {}
    for r in map(TrialRecord, trials):
        if r.state == TS.COMPLETE and (score := r.score) is not None:
            band = r.band or "best"
            best[band] = max(best.get(band, score), score)
    if best:
        parts.append("best " + " ".join(f"{b}={v:.3f}" if b == "best" else f"{b}:{v:.3f}" for b, v in best.items()))
    if cfg.time_limit is not None:
        parts.append(f"{max(0.0, 60 * cfg.time_limit - search_s()) / 60:.1f} min left")
    return ", ".join(parts)


def _epochs(trial_dir: Path) -> str:
    """``"5/23 ep "`` while a search trial trains: the fast trainer's ``progress`` file, or the epochs in the
    ``results.csv`` of its latest Ultralytics training; nothing before the first epoch."""
    try:
        done = (trial_dir / "progress").read_text().strip()
        return f"{done} ep " if done else ""
    except OSError:
        pass
    try:
        runs = sorted((p for p in trial_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    except OSError:
        return ""
    done = epochs_done(runs[-1]) if runs else 0
    return f"{done} ep " if done else ""


def epochs_done(folder: Path) -> int:
    """Epochs a training has finished: the rows of Ultralytics' ``results.csv`` in its folder (0 before the first)."""
    try:
        with open(folder / "results.csv", newline="") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)
    except OSError:
        return 0


def final_status(folders: list[Path], epochs: int, t0: float, clock: Callable[[], float]) -> str:
    """The final stage's trainings in progress: epochs done of each one started, and the time spent."""
    started = [(f.name, epochs_done(f)) for f in folders if f.is_dir()]
    running = [f"{name.rsplit('-', 1)[0]} {n}/{epochs} ep" for name, n in started if n < epochs]
    return ", ".join([*running[:4], f"{(clock() - t0) / 60:.1f} min"])
