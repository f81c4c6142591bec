"""Foundation: offline runtime (no network at all), dataset resolution, and a synthetic set that really learns."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ultranas.data import check_dataset, resolve_data
from ultranas.errors import UserError

NO_NETWORK = textwrap.dedent("""
    import socket, sys
    attempts = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
    def local(host):
        return str(host).startswith("127.") or host in ("localhost", "::1", "")
    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if not local(host):
            attempts.append(("connect", host)); raise OSError("network blocked by test")
        return real_connect(self, address)
    def getaddrinfo(host, *a, **k):
        if not local(host):
            attempts.append(("dns", host)); raise socket.gaierror("network blocked by test")
        return real_getaddrinfo(host, *a, **k)
    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
    import ultranas, tempfile, pathlib
    from ultranas.space import load_space
    from ultranas.ultra import train
    from ultranas.data import check_dataset
    space = load_space("yolo")
    d = pathlib.Path(tempfile.mkdtemp())
    (d / "model.yaml").write_text(space.to_yaml(space.point("yolo11n"), nc=80))
    metrics, best = train(d / "model.yaml", check_dataset("coco8.yaml"), d, "t", epochs=1, imgsz=64, batch=4,
                          device="cpu", plots=True)
    assert best.is_file(), best
    print("ATTEMPTS", attempts)
    sys.exit(3 if attempts else 0)
""")


def test_training_makes_no_network_connection(tmp_path):
    env_home = tmp_path / "home"  # a fresh config dir: fonts and settings must not be downloaded either
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(env_home), "ULTRANAS_HOME": str(env_home / "u")})
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "ATTEMPTS []" in proc.stdout


def test_coco8_resolves_to_bundled_copy():
    path = resolve_data("coco8.yaml")
    assert path.is_file() and "ultranas" in str(path) and path.parent.name == "coco8"
    assert check_dataset("coco8.yaml") == path


def test_coco128_needs_a_pointer(monkeypatch, coco128):
    monkeypatch.delenv("ULTRANAS_COCO128", raising=False)
    with pytest.raises(UserError, match="ULTRANAS_COCO128"):
        resolve_data("coco128.yaml")
    monkeypatch.setenv("ULTRANAS_COCO128", str(coco128))
    assert check_dataset("coco128.yaml") == (coco128 / "data.yaml").resolve()
    assert check_dataset("coco128.yaml", coco128_dir=coco128) == (coco128 / "data.yaml").resolve()


def test_missing_images_named_in_one_line(tmp_path):
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(UserError) as e:
        check_dataset(tmp_path / "data.yaml")
    assert "images/train" in str(e.value) and len(str(e.value).splitlines()) == 1


def test_synthetic_set_is_deterministic_and_learnable(tmp_path, synthetic):
    from ultranas.estimation import ShortTrainEstimator
    from ultranas.objectives import Candidate
    from ultranas.space import load_space
    from ultranas.synthetic import make_synthetic

    a, b = make_synthetic(tmp_path / "a", 4, 2, seed=3), make_synthetic(tmp_path / "b", 4, 2, seed=3)
    assert (a.parent / "labels/train/00001.txt").read_text() == (b.parent / "labels/train/00001.txt").read_text()
    assert check_dataset(synthetic) == synthetic.resolve()
    space = load_space("yolo")
    g = space.point("yolov8n")
    work = tmp_path / "t"
    work.mkdir()
    (work / "model.yaml").write_text(space.to_yaml(g, nc=3))
    cand = Candidate(g, space.render(g, 3), space.design_hash(g, 3), 128, work)
    result = ShortTrainEstimator(synthetic, epochs=15, batch=16, seeds=(0,)).estimate(cand)
    assert result["map50"] >= 0.5, result  # it learns, within about a minute on 2 cores
