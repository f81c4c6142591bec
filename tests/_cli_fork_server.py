"""Runs ``ultranas`` command lines as real child processes without paying the imports each time.

The server imports the CLI and everything it loads (torch, ultralytics, optuna) once, runs no tensor op, then for
each request (a JSON line: args, cwd) forks a child that runs ``ultranas.cli.entrypoint`` exactly as
``python -m ultranas`` does: its own process, working directory, stdout, stderr and exit code. It answers a JSON
line (rc, stdout, stderr). Used by the bad-input suite (100+ command lines, each ~2 s of imports otherwise).
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


def run(args: list[str], cwd: str, timeout: float, scratch: str) -> dict:
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
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"rc": None, "stdout": "", "stderr": f"timed out after {timeout} s"}
        time.sleep(0.02)
    with open(out) as f_out, open(err) as f_err:
        return {"rc": os.waitstatus_to_exitcode(status), "stdout": f_out.read(), "stderr": f_err.read()}


def main() -> None:
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing but answers on the channel
    with tempfile.TemporaryDirectory(prefix="ultranas-cli-") as scratch:
        print(json.dumps({"ready": True}), file=channel, flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            print(json.dumps(run(req["args"], req["cwd"], req.get("timeout", 600), scratch)), file=channel, flush=True)


if __name__ == "__main__":
    main()
