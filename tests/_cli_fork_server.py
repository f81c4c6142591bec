"""Runs ``ultranas`` command lines as real child processes without paying the imports each time.

The server imports the CLI and everything it loads (torch, ultralytics, optuna) once, runs no tensor op, then for
each request (a JSON line: args, cwd) forks a child that runs ``ultranas.cli.entrypoint`` exactly as
``python -m ultranas`` does: its own process, working directory, stdout, stderr and exit code. It answers a JSON
line (rc, stdout, stderr, peak_mb). Used by the bad-input suite (100+ command lines, each ~2 s of imports otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time

import ultranas.cli  # noqa: F401  (with what a command loads: parsers are built per command, so build them all)
import ultranas.data  # noqa: F401
import ultranas.distributed  # noqa: F401
import ultranas.engine  # noqa: F401
import ultranas.model  # noqa: F401


def run(args: list[str], cwd: str, timeout: float, scratch: str, mem_mb: float | None = None) -> dict:
    """One command line in a forked child; killed past ``timeout`` s or when its resident memory grows more than
    ``mem_mb`` over the server's (polled every 10 ms; ``peak_mb`` in the answer is the growth seen)."""
    out, err = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
    pid = os.fork()
    if pid == 0:  # the child: a fresh process image in all that matters to the CLI
        code = 1
        try:
            os.chdir(cwd)
            for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                   (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                os.dup2(os.open(path, mode, 0o600), fd)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115  (the child's own streams, kept until _exit)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # noqa: SIM115
            sys.argv = ["ultranas", *args]
            try:
                ultranas.cli.entrypoint()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline, base, peak = time.time() + timeout, _rss_mb(os.getpid()), 0.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        peak = max(peak, _rss_mb(pid) - base)
        if time.time() > deadline or (mem_mb and peak > mem_mb):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            why = f"timed out after {timeout} s" if time.time() > deadline else f"memory grew over {mem_mb} MB"
            return {"rc": None, "stdout": "", "stderr": why, "peak_mb": peak}
        time.sleep(0.01)
    with open(out) as f_out, open(err) as f_err:
        return {"rc": os.waitstatus_to_exitcode(status), "stdout": f_out.read(), "stderr": f_err.read(), "peak_mb": peak}


def _rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 once it has exited); a forked child starts at its parent's."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def main() -> None:
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing but answers on the channel
    with tempfile.TemporaryDirectory(prefix="ultranas-cli-") as scratch:
        print(json.dumps({"ready": True}), file=channel, flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            print(json.dumps(run(req["args"], req["cwd"], req.get("timeout", 600), scratch, req.get("mem_mb"))), file=channel, flush=True)


if __name__ == "__main__":
    main()
