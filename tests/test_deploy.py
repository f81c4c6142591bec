"""Deploy targets users ship to: OpenVINO (fp32, INT8) and ncnn latency targets and their per-layer LUT, exports
that match PyTorch, the INT8 accuracy objective in a real tiny search, and the study read by the real optuna
dashboard."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from ultranas import NAS, ultra
from ultranas.objectives.latency import LatencyLUT, compare_latency, make_runner, measure_latency
from ultranas.space import load_space

DEPLOY_TARGETS = ("openvino-cpu", "openvino-cpu-int8", "ncnn-cpu")
IMGSZ = 64


def _design(name: str, nc: int = 80) -> dict:
    space = load_space("yolo")
    return space.render(space.point(name), nc)


@pytest.mark.parametrize("target", DEPLOY_TARGETS)
def test_deploy_target_times_and_ranks_designs(target):
    """A target that timed nothing, or the wrong model, would not see yolo11s (3.3x the FLOPs) as slower (measured
    at 128 px: 2.3-2.7x on openvino-cpu, 2.9-3.3x on ncnn-cpu; in INT8 1.55-1.65x on one 2-core Xeon, 1.23x on
    another). The two are compared timed interleaved in one session: separate timings on a loaded host differ by up
    to 50 %."""
    run_n = make_runner(_design("yolo11n"), 128, target, threads=1)
    n = measure_latency(_design("yolo11n"), 128, target, repeats=15, max_time_s=1.0, make=lambda: run_n)
    assert n["target"] == target and n["threads"] == 1 and n["median_ms"] > 0
    run_s, tries = make_runner(_design("yolo11s"), 128, target, threads=1), []
    for _ in range(3):  # a host whose CPU other processes take (the parallel suite's exports) times nothing: again
        tries.append(compare_latency(run_s, run_n, threads=1))
        if (tries[-1]["others"] or 0) < 0.3:
            break
    vs = min(tries, key=lambda t: t["others"] or 0)  # the least disturbed session decides
    assert vs["ratio"] > 1.1, tries


@pytest.mark.parametrize("target", ("openvino-cpu-int8", "ncnn-cpu"))
def test_lut_profiles_single_layers_on_deploy_targets(target):
    """Single layers convert and time on the target itself: a conv, and the list-input layers (Concat, the head)."""
    lut = LatencyLUT(target, IMGSZ, warmup=1, repeats=5)
    assert lut.profile_target == target
    layers = lut._layers(_design("yolo11n"))
    assert len(layers) == len(ultra.build_model(_design("yolo11n")).model)
    picked = {type(m).__name__: (m, inp) for _, m, inp in layers if type(m).__name__ in ("Conv", "Concat", "Detect")}
    assert set(picked) == {"Conv", "Concat", "Detect"} and isinstance(picked["Concat"][1], list)
    times = {kind: lut._profile(m, inp) for kind, (m, inp) in picked.items()}
    assert all(t > 0 for t in times.values()), times


def _torch_out(model_pt: Path, x: np.ndarray) -> np.ndarray:
    model = NAS(model_pt).model.float().eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


@pytest.fixture
def yolo11n_pt(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the exporter writes next to the weights; nothing lands elsewhere
    space = load_space("yolo")
    (tmp_path / "design.yaml").write_text(space.to_yaml(space.point("yolo11n"), nc=3))
    return Path(NAS(tmp_path / "design.yaml").save(tmp_path / "model.pt") or tmp_path / "model.pt")


def test_openvino_export_matches_pytorch(yolo11n_pt):
    import openvino as ov

    folder = Path(NAS(yolo11n_pt).export(format="openvino", imgsz=IMGSZ))
    assert folder.name == "model_openvino_model" and folder.parent == yolo11n_pt.parent
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled(x)[0]
    expected = _torch_out(yolo11n_pt, x)
    assert out.shape == expected.shape == (1, 4 + 3, sum((IMGSZ // s) ** 2 for s in (8, 16, 32)))
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)


def test_ncnn_export_matches_pytorch(yolo11n_pt):
    import ncnn

    folder = Path(NAS(yolo11n_pt).export(format="ncnn", imgsz=IMGSZ))
    assert (folder / "model.ncnn.param").is_file() and (folder / "model.ncnn.bin").is_file()
    assert sorted(p.name for p in yolo11n_pt.parent.iterdir()) == ["design.yaml", "model.pt", "model_ncnn_model"]
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    net = ncnn.Net()
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    assert net.load_param(str(folder / "model.ncnn.param")) == 0 and net.load_model(str(folder / "model.ncnn.bin")) == 0
    ex = net.create_extractor()
    ex.input(net.input_names()[0], ncnn.Mat(x[0]).clone())
    out = np.array(ex.extract(net.output_names()[0])[1])
    np.testing.assert_allclose(out[None], _torch_out(yolo11n_pt, x), rtol=1e-3, atol=1e-3)


INT8_TOLERANCE = 0.05  # mAP50-95 points INT8 may lose on the tuned model (measured: see the README)


def test_int8_export_keeps_accuracy_within_tolerance(tuned, synthetic, tmp_path, monkeypatch):
    """INT8 (NNCF calibrated on training images) of a model that learned: its mAP stays near fp32's, and is not 0."""
    monkeypatch.chdir(tmp_path)
    m = ultra.int8_openvino_metrics(tuned, synthetic, 128)
    assert m["int8_fp32_map"] > 0.1, m  # the fp32 model learned the shapes
    assert m["int8_map"] > 0.05 and abs(m["int8_drop"]) <= INT8_TOLERANCE, m
    assert m["int8_drop"] == pytest.approx(m["int8_fp32_map"] - m["int8_map"])
    assert list(tmp_path.iterdir()) == []  # everything was written in a temporary folder


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, synthetic) -> Path:
    """``--objectives map,latency,int8_drop`` in a real tiny search (latency on the default target here: the INT8
    target is timed above, and its conversions would triple this test's time)."""
    project = tmp_path_factory.mktemp("int8")
    telemetry = Path.home() / "intel"  # where OpenVINO's and NNCF's telemetry would write its client id
    had_telemetry = telemetry.exists()
    proc = subprocess.run([sys.executable, "-m", "ultranas", "search", "--data", str(synthetic), "--trials", "1",
                           "--epochs", "2", "--imgsz", "64", "--proxy-imgsz", "64", "--batch", "16", "--trainer",
                           "fast", "--objectives", "map,latency,int8_drop", "--references", "yolo11n", "--focus",
                           "front", "--final-epochs", "1", "--final-seeds", "0",
                           "--project", str(project)], cwd=project, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "int8_map50_95_mean" in proc.stdout and "INT8 yolo11n: mAP50-95" in proc.stdout, proc.stdout[-2000:]
    assert had_telemetry or not telemetry.exists(), "OpenVINO/NNCF telemetry ran (it wrote ~/intel)"
    return project / "exp"


def test_int8_objective_in_a_search(int8_run):
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{int8_run / 'study.db'}")
    assert study.metric_names == ["mAP50-95 (proxy)", "latency ms (median)", "mAP50-95 lost in INT8"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 1
    for t in done:
        m = t.user_attrs["metrics"]
        assert t.values[2] == pytest.approx(m["int8_drop"]) == pytest.approx(m["int8_fp32_map"] - m["int8_map"])
        assert Path(m["weights"]).resolve() == (int8_run / "trials" / str(t.number) / "proxy.pt").resolve()
    info = NAS(int8_run / "found_n.pt").nas_info
    assert info["int8"]["latency_target"] == "openvino-cpu-int8" and info["int8"]["latency_ms"] > 0
    assert len(info["int8"]["map50_95"]["values"]) == 1 and 0 <= info["int8"]["map50_95"]["mean"] <= 1
    rows = list(csv.DictReader((int8_run / "comparison.csv").open()))
    assert rows and all(r["int8_map50_95_mean"] != "" and r["int8_latency_ms"] != "" for r in rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_optuna_dashboard_reads_a_run(int8_run):
    """The real ``optuna-dashboard`` on a loopback port serves the run's study with named metrics and the design."""
    port = _free_port()
    exe = Path(sys.executable).with_name("optuna-dashboard")
    server = subprocess.Popen([str(exe), f"sqlite:///{int8_run / 'study.db'}", "--host", "127.0.0.1", "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        studies, deadline = None, time.time() + 60
        while studies is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies, "optuna-dashboard did not answer"
        study = next(s for s in studies if s["study_name"] == "exp")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", timeout=10) as r:
            detail = json.load(r)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert detail["objective_names"] == ["mAP50-95 (proxy)", "latency ms (median)", "mAP50-95 lost in INT8"]
    trial = next(t for t in detail["trials"] if t["state"] == "Complete")
    assert {p["name"] for p in trial["params"]} and trial["values"]
    attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
    assert "genotype" in attrs and "hash" in attrs
