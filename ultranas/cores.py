"""The host's cores, shared by every ultranas process on it: training holds them shared, latency timing alone.

Local workers (``--workers``), distributed workers on one host and the final stage's parallel trainings all train
while another process may be timing a design. A timing taken while a sibling trains measures the sibling, so:
every training step (and validation pass) holds a *shared* lock, every timed block an *exclusive* one. A waiting
timer has priority: it first takes a gate that new steps must pass, so steps drain and the timer runs within about
one step (writer preference; plain ``flock`` would let two alternating trainers starve it).

Locks are ``flock`` on two files in the temp folder (per user), released by the OS when a process dies. Waits are
bounded (``MAX_WAIT_S``): a process stopped while holding a lock (Ctrl-Z, a debugger) delays the others, it does not
freeze them; a timer that could not get the cores times anyway. Blocks nest within a process (an inner block takes
nothing). Where ``fcntl`` does not exist (Windows) the locks do nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no host-level coordination
    fcntl = None

MAX_WAIT_S = 120.0
_FILES: dict[str, tuple[int, int, int]] = {}  # folder -> (pid, gate fd, cores fd): reopened after a fork
_HELD = {"training": 0, "timing": 0}  # nesting depth in this process


def lock_dir() -> Path:
    """Where the lock files live: ``ULTRANAS_LOCK_DIR`` or the temp folder (one pair per user)."""
    return Path(os.environ.get("ULTRANAS_LOCK_DIR") or tempfile.gettempdir())


def _fds() -> tuple[int, int] | None:
    if fcntl is None:
        return None
    folder = str(lock_dir())
    pid, gate, cores = _FILES.get(folder, (None, -1, -1))
    if pid != os.getpid():  # a forked child must not share its parent's open file description
        uid = os.getuid() if hasattr(os, "getuid") else 0
        gate = os.open(os.path.join(folder, f"ultranas-{uid}-gate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        cores = os.open(os.path.join(folder, f"ultranas-{uid}-cores.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        _FILES[folder] = (os.getpid(), gate, cores)
    return gate, cores


def _acquire(fd: int, mode: int, deadline: float) -> bool:
    """``flock(fd, mode)``, waiting until ``deadline`` at most; returns whether it was taken."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    pause = 0.001
    while time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue
    return False


@contextlib.contextmanager
def _hold(kind: str, mode: int):
    fds = _fds() if not any(_HELD.values()) else None  # nested (or timing inside training): take nothing more
    taken: list[int] = []
    _HELD[kind] += 1
    try:
        if fds is not None:
            gate, cores = fds
            deadline = time.monotonic() + MAX_WAIT_S
            if _acquire(gate, mode, deadline):  # exclusive for a timer, shared for a trainer
                taken.append(gate)
                if _acquire(cores, mode, deadline):
                    taken.append(cores)
                if mode != fcntl.LOCK_EX:  # a trainer passes the gate and leaves it for the next timer
                    fcntl.flock(gate, fcntl.LOCK_UN)
                    taken.remove(gate)
        yield
    finally:
        _HELD[kind] -= 1
        for fd in reversed(taken):
            fcntl.flock(fd, fcntl.LOCK_UN)


def training():
    """Hold the cores shared for one training step or validation pass (waits while a timer wants them)."""
    return _hold("training", fcntl.LOCK_SH if fcntl else 0)


def timing():
    """Hold the cores alone while timing: no ultranas process on the host trains meanwhile."""
    return _hold("timing", fcntl.LOCK_EX if fcntl else 0)
