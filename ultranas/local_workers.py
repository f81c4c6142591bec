"""``ultranas search --workers N``: N local worker processes on the run's own study, supervised by the search.

Each worker is a spawned process that opens the study (the run's SQLite file, or ``--storage``) with the run's
settings and evaluates trials exactly as a distributed worker does: the budget is shared, no design is evaluated
twice, the strategy sees every worker's results. Each gets ``cores // N`` threads (one per physical core by
default) or its own GPU. Latency timing never overlaps a sibling's training (:mod:`ultranas.cores`).

The search process supervises: it shows the progress bar and, when a worker dies (``kill -9``, a crash), fails
that worker's running trial, queues its design again and starts a replacement (at most ``MAX_RESTARTS``). Ctrl-C
or SIGTERM stops every worker, whose trials are re-queued; ``--resume`` continues the run. A worker whose
supervisor died stops too (it re-queues its trial), so a killed search leaves nothing running.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from pathlib import Path

import optuna

from .config import usable_cores
from .errors import RunFailed, UserError
from .progress import Ticker, search_bar, search_status
from .study import StudyRecord, counted, fail_and_requeue, running_by

MAX_RESTARTS = 3  # replacement workers per run: a design that kills its worker every time must not loop forever
STOP_WAIT_S = 10.0  # seconds a stopped worker gets to re-queue its trial before it is killed


def _watch_parent(parent: int) -> None:
    """Stop this worker (SIGTERM: its trial is re-queued) when the supervising search process is gone."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="ultranas-parent-watch").start()


def _worker_main(cfg_dict: dict, run_dir: str, url: str, threads: int, references: dict, errors) -> None:
    """One worker process: join the study and evaluate trials until the budget is spent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the supervisor, which stops us once
    import torch

    torch.set_num_threads(threads)
    from .config import SearchConfig
    from .context import open_context
    from .preflight import sigterm_as_interrupt
    from .study import load_study
    from .trial_loop import run_worker

    cfg = SearchConfig.from_dict(cfg_dict)
    try:
        with sigterm_as_interrupt():
            _watch_parent(os.getppid())
            study = load_study(url, cfg.name)
            ctx = open_context(cfg, Path(run_dir), study, data_checked=True, reference_records=references)
            ctx.study.sampler.reseed_rng()  # siblings must not draw the same sampler sequence
            run_worker(ctx, progress=False)
    except KeyboardInterrupt:
        sys.exit(130)  # the trial under way was re-queued by evaluate_trial
    except UserError as e:
        errors.put((os.getpid(), e.exit_code, str(e)))
        sys.exit(e.exit_code)


def _orphans(study: optuna.Study, run_dir: Path, pid: int, local: bool = True) -> list:
    """Running trials left by the worker process ``pid``, and trials taken by a worker that died before naming
    itself (a worker takes and names a trial under the run's ask lock, so an unnamed running trial seen while
    holding that lock has no live owner, when the study is ``local`` to this host)."""
    from .fsutil import ask_lock

    me = f"{socket.gethostname()}:{pid}"
    with ask_lock(run_dir):
        return running_by(study, me, unnamed=local)


class LocalWorkers:
    """Start, watch and stop the worker processes of one search."""

    def __init__(self, ctx, n: int, url: str):
        self.ctx, self.url = ctx, url
        self.local = url.startswith(("sqlite", "journal:")) or url.endswith(".log")  # no other host's workers
        cpu = ctx.cfg.device in ("cpu", "mps")
        self.devices = [ctx.cfg.device] * n if cpu else [d.strip() for d in str(ctx.cfg.device).split(",")]
        self.threads = max(1, usable_cores() // n)
        self.mp = mp.get_context("spawn")
        self.errors = self.mp.Queue()
        self.procs: dict[int, mp.Process] = {}
        self.restarts = 0

    def start(self, slot: int) -> None:
        cfg = {**self.ctx.cfg.to_dict(), "device": self.devices[slot % len(self.devices)]}
        p = self.mp.Process(target=_worker_main, args=(cfg, str(self.ctx.run_dir), self.url, self.threads,
                                                        self.ctx.meter.records(), self.errors),
                            name=f"ultranas-worker-{slot}")
        p.start()
        self.procs[slot] = p

    def _error(self, pid: int) -> UserError | None:
        """The user error worker ``pid`` reported before it exited, if any."""
        try:
            while True:
                who, code, message = self.errors.get(timeout=0.5)
                if who == pid:
                    return (RunFailed if code == RunFailed.exit_code else UserError)(message)
        except Exception:  # queue.Empty
            return None

    def reap(self) -> None:
        """Handle workers that exited: a user error stops the search; a dead worker's trial is re-queued and the
        worker replaced while trials remain."""
        study, cfg = self.ctx.study, self.ctx.cfg
        for slot, p in list(self.procs.items()):
            if p.is_alive():
                continue
            p.join()
            del self.procs[slot]
            if p.exitcode == 0:
                continue
            if (error := self._error(p.pid)) is not None:
                self.stop()
                raise error
            for t in _orphans(study, self.ctx.run_dir, p.pid, self.local):
                fail_and_requeue(study, t, f"worker process stopped (exit {p.exitcode}); re-queued")
            if counted(study) < cfg.trials:
                if self.restarts >= MAX_RESTARTS:
                    self.stop()
                    raise RunFailed(f"{MAX_RESTARTS + 1} worker processes died (last exit code {p.exitcode}); see "
                                    f"leaderboard.csv in {self.ctx.run_dir}, or run with --workers 1 to see why")
                self.restarts += 1
                print(f"ultranas: worker {slot} stopped (exit {p.exitcode}); its trial is re-queued, starting another",
                      file=sys.stderr)
                self.start(slot)

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """SIGTERM every worker (each re-queues its trial), wait, then kill any still running and re-queue what it
        left (a worker's interrupt can be lost, e.g. raised where Python ignores exceptions: it may not stop on its
        own)."""
        for p in self.procs.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        for p in self.procs.values():
            p.join(max(0.1, deadline - time.time()))
            if p.is_alive():
                p.kill()
                p.join()
            for t in _orphans(self.ctx.study, self.ctx.run_dir, p.pid, self.local):
                fail_and_requeue(self.ctx.study, t, "interrupted (process stopped); re-queued")
        self.procs.clear()


def run_local_workers(ctx, n: int, url: str, progress: bool = True, poll_s: float = 1.0) -> None:
    """Evaluate the study's trials with ``n`` local worker processes until the budget is spent."""
    cfg = ctx.cfg
    workers = LocalWorkers(ctx, n, url)
    bar = search_bar(cfg, counted(ctx.study), f"ultranas search ({n} workers)", progress)
    start, spent = time.time(), float(StudyRecord(ctx.study).search_s)  # earlier sessions of this run
    try:
        with Ticker(bar, lambda: search_status(ctx.study, cfg, lambda: spent + time.time() - start)):
            for slot in range(n):
                workers.start(slot)
            while workers.procs:
                time.sleep(poll_s)
                workers.reap()
                bar.n = min(counted(ctx.study), cfg.trials)
                bar.refresh()
    except BaseException:
        workers.stop()
        raise
    finally:
        bar.close()
