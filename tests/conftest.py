"""Shared fixtures: the bundled coco8, a synthetic learnable set, the shared real datasets when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # pytest-xdist runs the suite in parallel: a home each
os.environ.setdefault("ULTRANAS_HOME", str(Path(__file__).resolve().parent.parent / ".pytest_cache" /
                                          "_".join(filter(None, ("ultranas_home", _WORKER)))))
os.environ["ULTRANAS_WORKERS"] = "1"  # one process per search unless a test asks for --workers (as CI's 2 cores would)

import ultranas  # noqa: E402,F401  (offline runtime first)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
COCO8 = ROOT / "ultranas" / "datasets" / "coco8" / "data.yaml"


README_FIXTURES = {"default_run", "found", "tuned"}  # the README's search and the model tuned from it: built once


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Parallel runs (``-n``, ``--dist loadgroup``): tests on the README search's models share one worker, tests of a
    module-scoped fixture share one, the rest spread; the README group goes first, as it is the longest chain."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        names = set(getattr(defs, "names_closure", ()))
        if names & README_FIXTURES:
            group = "readme"
        elif any(d[-1].scope in ("module", "class") for n, d in (defs.name2fixturedefs.items() if defs else ())
                 if n in names and d):
            group = item.nodeid.split("::")[0]
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: not README_FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.fixture(scope="session")
def coco8() -> Path:
    return COCO8


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    from ultranas.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=128, n_val=32, imgsz=128, seed=0)


@pytest.fixture(scope="session")
def coco128() -> Path:
    path = SHARED / "coco128"
    if not path.is_dir():
        pytest.skip("../shared/datasets/coco128 not present")
    return path


@pytest.fixture
def run_cli(tmp_path):
    """Run the real ``ultranas`` console entry in a subprocess; returns CompletedProcess."""
    import subprocess
    import sys

    def run(*args, cwd=None, timeout=900, env=None):
        return subprocess.run([sys.executable, "-m", "ultranas", *map(str, args)], cwd=cwd or tmp_path,
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})

    return run


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Path:
    """The README's main-job command, exactly: ``ultranas search --data coco8.yaml`` (default budget)."""
    import subprocess
    import sys

    cwd = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if k != "ULTRANAS_WORKERS"}  # the default: a worker per core
    proc = subprocess.run([sys.executable, "-m", "ultranas", "search", "--data", "coco8.yaml"], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = cwd / "runs" / "nas" / "exp"
    assert run.is_dir(), proc.stdout[-2000:]
    return run


@pytest.fixture(scope="session")
def found(default_run) -> Path:
    return default_run / "found_n.pt"


@pytest.fixture(scope="session")
def tuned(found, synthetic, tmp_path_factory) -> Path:
    """``found_n.pt`` (80 classes, from the search) fine-tuned with ``NAS.train`` on the synthetic set (3 classes),
    16 epochs at 128 px: a model that has learned something, for tests of what training, export and INT8 keep
    (found_n on coco8 is the fastest design of equal score: measured 0.09 mAP50-95 after 10 epochs, 0.50 after 16)."""
    from ultranas import NAS
    from ultranas.estimation import compressed_schedule

    out = tmp_path_factory.mktemp("tuned")
    NAS(found).train(data=str(synthetic), **compressed_schedule(16, 16), imgsz=128, batch=16, device="cpu",
                     workers=0, project=str(out), name="ft", plots=False, amp=False, seed=0)
    return out / "ft" / "weights" / "best.pt"


@pytest.fixture(scope="session")
def small_mobile(tmp_path_factory) -> Path:
    """The mobile space with its input-size decision cut to CPU-test sizes (96/128 px instead of 224-320)."""
    import yaml

    from ultranas.space import load_space

    raw = yaml.safe_load(load_space("mobile").path.read_text())
    raw["decisions"]["imgsz"] = [96, 128]
    raw["points"]["yolo11n"]["imgsz"] = 128
    path = tmp_path_factory.mktemp("spaces") / "mobile_small.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def cli_forked():
    """Like ``run_cli`` but each command line is a child forked from a server that imported ultranas once
    (``tests/_cli_fork_server.py``): a real process with its own cwd, output and exit code, minus ~2 s of imports."""
    import json
    import subprocess
    import sys
    from types import SimpleNamespace

    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_cli_fork_server.py"))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert json.loads(server.stdout.readline()).get("ready"), "the CLI fork server did not start"

    def run(*args, cwd, timeout=600, mem_mb=None):
        req = {"args": [str(a) for a in args], "cwd": str(cwd), "timeout": timeout, "mem_mb": mem_mb}
        server.stdin.write(json.dumps(req) + "\n")
        server.stdin.flush()
        r = json.loads(server.stdout.readline())
        return SimpleNamespace(returncode=r["rc"], stdout=r["stdout"], stderr=r["stderr"], peak_mb=r["peak_mb"])

    yield run
    server.stdin.close()
    server.wait(timeout=60)


TINY = {  # a small space for training tests: every elastic kind, parted outputs (GhostConv, ADown, C2f, C3Ghost)
    "stem": [8, 16],
    "P2": {"down": ["Conv", "GhostConv"], "down_width": [16, 32], "block": ["C2f", "C3k2"], "n": [1, 2],
           "width": [16, 32]},
    "P3": {"down": ["Conv", "ADown"], "down_width": [32, 48], "block": ["C2f", "C3k2"], "n": [1], "width": [32, 48]},
    "P4": {"down": ["Conv"], "down_width": [48, 64], "block": ["C3k2", "C3Ghost"], "n": [1, 2], "width": [48, 64]},
    "P5": {"down": ["Conv", "SCDown"], "down_width": [64], "block": ["C2f", "C3k2"], "n": [1], "width": [64, 96]},
    "spp": ["SPPF"], "attention": ["none"], "attention_n": [1],
    "N4": {"block": ["C2f-ns", "C3k2"], "n": [1], "width": [32, 48]},
    "N3": {"block": ["C2f-ns", "C3"], "n": [1], "width": [16, 32]},
    "N4out": {"block": ["C2f-ns"], "n": [1, 2], "width": [32, 48]},
    "N5out": {"block": ["C2f-ns", "RepC3"], "n": [1], "width": [64, 96]},
    "neck_down": ["Conv", "GhostConv"], "head": ["detect"],
}


def _last(node):
    return {k: _last(v) for k, v in node.items()} if isinstance(node, dict) else node[-1]


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory) -> Path:
    from ultranas.space._space import SPACES_DIR

    spec = yaml.safe_load((SPACES_DIR / "yolo.yaml").read_text())
    spec.update(name="tiny", decisions=TINY, points={"tiny": _last(TINY)})
    spec.pop("hand_scaled")  # the tiny space has no input_scale decision
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
