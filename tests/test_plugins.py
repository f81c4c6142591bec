"""Plug-ins from other packages: an installed package's entry points (``ultranas.strategies``, ``.estimators``,
``.objectives``, ``.latency_targets``) reach the CLI and the worker processes a search spawns."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PLUGIN = '''
import dataclasses, multiprocessing, os
from pathlib import Path

from ultranas.estimation import make_estimator
from ultranas.objectives import Objective
from ultranas.objectives._targets import TARGETS
from ultranas.strategies import Strategy


class Marked(Strategy):
    """Random designs; leaves a mark naming the process that proposed."""
    name = "marked"

    def propose(self, history, fitness, rng):
        mark = Path(os.environ["DEMO_MARKS"]) / f"{multiprocessing.current_process().name}-{os.getpid()}"
        mark.write_text("proposed")
        return self.space.sample(rng)


class Depth(Objective):
    name, direction, cheap = "demo-depth", "minimize", True

    def value(self, candidate, results=None):
        return float(len(candidate.model_dict["backbone"]))


def estimator(data, *, imgsz: int, device: str):
    """the params proxy"""
    return make_estimator("zero-cost", data, epochs=1, imgsz=imgsz, batch=2, device=device, proxy="params")


target = dataclasses.replace(TARGETS["torch-cpu"], name="demo-cpu", description="the demo's CPU")
'''

ENTRY_POINTS = '''
[ultranas.strategies]
marked = ultranas_demo:Marked
never = ultranas_demo:Missing

[ultranas.objectives]
demo-depth = ultranas_demo:Depth

[ultranas.estimators]
demo-params = ultranas_demo:estimator

[ultranas.latency_targets]
demo-cpu = ultranas_demo:target
'''


def _install(root):
    """A package installed the way pip leaves one: the module and its dist-info with entry points."""
    (root / "ultranas_demo.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "ultranas_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ultranas-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def test_entry_point_plugins_reach_the_cli_and_spawned_workers(tmp_path):
    site, marks = tmp_path / "site", tmp_path / "marks"
    site.mkdir(), marks.mkdir()
    _install(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "DEMO_MARKS": str(marks), "COLUMNS": "2000"}
    cmd = [sys.executable, "-m", "ultranas"]
    helptext = subprocess.run([*cmd, "search", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert helptext.returncode == 0, helptext.stderr
    for name in ("marked", "demo-depth", "demo-params", "demo-cpu"):
        assert name in helptext.stdout, name
    assert "strategy plug-in 'never' (ultranas_demo:Missing) was not loaded: AttributeError" in helptext.stderr
    run = subprocess.run([*cmd, "search", "--strategy", "marked", "--estimator", "demo-params", "--objectives",
                          "map,demo-depth", "--latency-target", "demo-cpu", "--trials", "3", "--workers", "2",
                          "--imgsz", "32", "--proxy-imgsz", "32", "--no-final", "--no-warm-start", "--focus", "front",
                          "--project", str(tmp_path / "runs")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    workers = {m.name.rsplit("-", 1)[0] for m in marks.iterdir()}
    assert workers and workers <= {"ultranas-worker-0", "ultranas-worker-1"}, workers  # proposed in the workers
    board = (tmp_path / "runs" / "exp" / "leaderboard.csv").read_text()
    assert "demo-depth" in board.splitlines()[0]
