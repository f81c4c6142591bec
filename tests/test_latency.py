"""Latency objective: CPU targets measure, unavailable targets refuse clearly, the cache (study user attrs) spares
re-measurement across a resume, and the per-layer LUT predicts near measurement."""

from __future__ import annotations

import importlib.util
import json
import math
import random

import optuna
import pytest
import torch

from ultranas.errors import UserError
from ultranas.objectives import latency as L
from ultranas.objectives._base import Candidate
from ultranas.objectives._lut import LatencyLUT
from ultranas.space import load_space

IMGSZ = 64
FAST = {"warmup": 2, "repeats": 10}
pytestmark = pytest.mark.xdist_group("tests/test_latency.py")  # one worker times these, one after the other


@pytest.fixture(autouse=True)
def cores_alone():
    """Each test here times designs: it holds the host's cores as a timer does (:mod:`ultranas.cores`), so a parallel
    test run's trainings in other processes wait between their steps instead of running beside the timing."""
    from ultranas import cores

    with cores.timing():
        yield


@pytest.fixture(scope="module")
def space():
    return load_space("yolo")


@pytest.fixture(scope="module")
def yolo11n(space):
    return space.render(space.point("yolo11n"), 80)


@pytest.fixture
def counted(monkeypatch):
    """Count real measurements made through the module (the objective and the cache call it by name)."""
    calls = []
    real = L.measure_latency

    def measure(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(L, "measure_latency", measure)
    return calls


def candidate(space, name, tmp_path, imgsz=IMGSZ) -> Candidate:
    g = space.point(name)
    return Candidate(g, space.render(g, 80), space.design_hash(g, 80), imgsz, tmp_path)


@pytest.mark.parametrize("target", ["torch-cpu", "onnxruntime-cpu"])
def test_cpu_target_measures_a_real_design(target, yolo11n):
    before = torch.get_num_threads()
    m = L.measure_latency(yolo11n, IMGSZ, target, threads=1, **FAST)
    assert math.isfinite(m["median_ms"]) and m["median_ms"] > 0
    assert m["p10_ms"] <= m["median_ms"] <= m["p90_ms"] and m["cv"] >= 0
    assert (m["target"], m["imgsz"], m["batch"], m["threads"]) == (target, IMGSZ, 1, 1)
    assert m["host"] == L.host_fingerprint()["id"] and m["repeats"] >= 5
    assert torch.get_num_threads() == before  # threads restored
    json.dumps(m)  # storable as an optuna user attr


def test_default_target_and_fingerprint(monkeypatch):
    import hashlib
    import os
    import subprocess
    import sys

    from ultranas.objectives import _targets

    fp = L.host_fingerprint()
    assert fp["cores"] == os.cpu_count() and fp["torch"] == torch.__version__ and fp["cpu"]
    assert fp["available_cores"] == len(os.sched_getaffinity(0))
    # the id is a hash of every field (CPU, cores, GPU, torch/onnxruntime/tensorrt): change one, another host
    fields = {k: v for k, v in fp.items() if k != "id"}
    assert fp["id"] == hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    # ... and stable across processes, or a resumed run would never find its cached latencies
    child = subprocess.run([sys.executable, "-c", "from ultranas.objectives.latency import host_fingerprint as h; "
                            "print(h()['id'])"], capture_output=True, text=True, timeout=120)
    assert child.stdout.strip() == fp["id"], child.stderr[-500:]
    key = L.LatencyCache.key("abc", "onnxruntime-cpu", 64, 1, 1)
    assert key.endswith(f":{fp['id']}") and key != L.LatencyCache.key("abc", "onnxruntime-cpu", 64, 1, 1, host="x")
    # the default target follows the hardware: the GPU's where torch sees one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert L.default_target() == "onnxruntime-cpu" and L.get_target(None).name == "onnxruntime-cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert L.default_target() == _targets.default_target() == "torch-cuda-fp16"


@pytest.mark.parametrize("target,message", [
    ("tensorrt", "latency target 'tensorrt' needs the tensorrt package, which is not installed"),
    ("torch-cuda-fp16", "latency target 'torch-cuda-fp16' needs a CUDA GPU"),
    ("torch-cuda-fp16-compiled", "latency target 'torch-cuda-fp16-compiled' needs a CUDA GPU"),
])
def test_unavailable_target_is_one_clear_user_error(target, message, yolo11n):
    if torch.cuda.is_available() and (target != "tensorrt" or importlib.util.find_spec("tensorrt")):
        pytest.skip("the target is available here")
    with pytest.raises(UserError, match=message) as e:
        L.measure_latency(yolo11n, IMGSZ, target)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=message):
        L.LatencyObjective(target=target)  # refused before any search starts


def test_unknown_target():
    with pytest.raises(UserError, match="unknown latency target 'gpu-magic'.*onnxruntime-cpu"):
        L.get_target("gpu-magic")


def test_objective_caches_in_study_and_survives_resume(space, tmp_path, counted):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    obj = L.LatencyObjective("onnxruntime-cpu", cache=L.LatencyCache(study), **FAST)
    assert (obj.name, obj.direction, obj.cheap) == ("latency", "minimize", True)
    first = candidate(space, "yolo11n", tmp_path)
    v1 = obj.value(first)
    assert v1 > 0 and first.info == {}  # the objective reads; it never changes the candidate
    again = candidate(space, "yolo11n", tmp_path)
    assert obj.value(again) == v1
    assert len(counted) == 1 and obj.meter.cache.hits == 1
    key = L.LatencyCache.key(first.design_hash, "onnxruntime-cpu", IMGSZ, 1, 1)
    stored = study.user_attrs["latency:" + key]  # the study's latency cache
    assert stored["median_ms"] == v1 and stored["load"] is not None

    resumed = optuna.load_study(study_name="s", storage=storage)  # a new process resuming the run
    obj2 = L.LatencyObjective("onnxruntime-cpu", cache=L.LatencyCache(resumed), **FAST)
    assert obj2.value(candidate(space, "yolo11n", tmp_path)) == v1
    assert len(counted) == 1

    obj2.value(candidate(space, "yolo11n", tmp_path, imgsz=96))  # another input size is another measurement
    assert counted == [IMGSZ, 96]


def test_spread_too_high_is_measured_again(yolo11n):
    once = L.measure_latency(yolo11n, IMGSZ, "onnxruntime-cpu", threads=1, max_cv=10.0, **FAST)
    thrice = L.measure_latency(yolo11n, IMGSZ, "onnxruntime-cpu", threads=1, max_cv=0.0, **FAST)
    assert once["attempts"] == 1 and thrice["attempts"] == 3


def test_interleaved_comparison_orders_designs_and_sees_equals(space):
    n, s = (L.make_runner(space.render(space.point(p), 80), IMGSZ, "onnxruntime-cpu", 1) for p in ("yolo11n", "yolo11s"))
    same = L.compare_latency(n, n, threads=1)
    assert 0.85 < same["ratio"] < 1.15 and same["ratio_p10"] <= same["ratio"] <= same["ratio_p90"]
    bigger = L.compare_latency(s, n, threads=1)
    assert bigger["ratio"] > 1.5 and bigger["a_ms"] > bigger["b_ms"]


def test_meter_times_references_itself_and_interleaves_close_calls(space, tmp_path):
    from ultranas.objectives.latency import LatencyMeter

    study = optuna.create_study()
    meter = LatencyMeter("onnxruntime-cpu", cache=L.LatencyCache(study), **FAST)
    ref, big, twin = (candidate(space, p, tmp_path) for p in ("yolo11n", "yolo11s", "yolo26n"))
    stale = L.LatencyCache.key(ref.design_hash, "onnxruntime-cpu", IMGSZ, 1, 1)
    meter.cache.put(stale, {"median_ms": 1000.0})  # an old entry taken under other load, e.g. another process
    assert meter.measure(ref)["median_ms"] == 1000.0
    assert meter.reference(ref)["median_ms"] < 100  # a reference is always timed by this process
    assert meter.versus(ref, ref) == {"ratio": 1.0, "how": "same design"}
    far = meter.versus(big, ref)
    assert far["how"] == "separate" and far["ratio"] > 1.5  # clearly apart: no second timing needed
    separate = meter.measure(twin)["median_ms"] / meter.reference(ref)["median_ms"]
    close = meter.versus(twin, ref)  # within the margin of the reference: timed again, interleaved
    assert close["how"] == ("interleaved" if abs(separate - 1) <= meter.margin else "separate")
    forced = meter.versus(twin, ref, interleave=True)  # yolo26n and yolo11n are close: interleaved on request
    assert forced["how"] == "interleaved" and 0.5 < forced["ratio"] < 1.25 and forced["rounds"] == 5


def test_one_session_times_every_design_against_the_reference(space, tmp_path):
    from ultranas.objectives.latency import LatencyMeter

    meter = LatencyMeter("onnxruntime-cpu", threads=1, **FAST)
    ref, big, v8 = (candidate(space, p, tmp_path) for p in ("yolo11n", "yolo11s", "yolov8n"))
    recs, session = meter.session([big, v8, ref], ref)
    assert [r["how"] for r in recs] == ["session"] * 3 and session["rounds"] == 5
    for r in recs:  # the ratio is the session's absolute time over the reference's, never from another timing
        assert r["ratio"] == pytest.approx(r["ms"] / session["ref_ms"], rel=1e-12)
        assert r["ratio_p10"] <= r["ratio_p90"]
    assert recs[0]["ratio"] > 1.5 and 0.75 < recs[2]["ratio"] < 1.33  # yolo11s is slower; yolo11n ties itself (±25 %: a loaded box)
    assert session["others"] is None or 0 <= session["others"] <= 1


def test_host_load_sees_another_process_on_the_cores():
    import subprocess
    import sys
    import time

    from ultranas.objectives._timing import HostLoad

    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)
        with HostLoad() as load:
            t = time.time()
            while time.time() - t < 1.0:
                time.sleep(0.01)  # this process idles: the CPU time seen is the other process's
    finally:
        busy.wait(timeout=30)
    if load.others is None:
        pytest.skip("no /proc/stat here")
    import os

    assert load.others >= 0.5 / (os.cpu_count() or 1)  # one busy core of the host's


def test_cache_with_in_memory_study_and_baselines(space, counted):
    study = optuna.create_study()
    cache = L.LatencyCache(study)
    base = L.baseline_latencies(space, "torch-cpu", IMGSZ, cache=cache, threads=1, warmup=1, repeats=5)
    assert {"yolov8n", "yolo11n", "yolo26n", "yolo11s"} <= set(base)
    assert all(v["median_ms"] > 0 and v["target"] == "torch-cpu" for v in base.values())
    n = len(counted)
    assert L.baseline_latencies(space, "torch-cpu", IMGSZ, cache=L.LatencyCache(study), threads=1) == base
    assert len(counted) == n == len(space.points)


def test_lut_predicts_near_measurement_and_round_trips(space, tmp_path):
    """At 160 px, calibrated on designs that span the space (n and s widths, both heads, a P2 design). At 64 px a
    design's time is mostly per-call overhead and the table was off by up to 24-47 % (docs/latency.md)."""
    rng, imgsz = random.Random(3), 160
    calib = [space.render(space.point(p), 80) for p in ("yolov8n", "yolo11s", "yolo26n", "yolov8n-p2")]
    held_out = [space.render(space.sample(rng), 80) for _ in range(2)]
    measure = {"warmup": 5, "repeats": 30}

    def fitted_errors():
        lut = LatencyLUT("onnxruntime-cpu", imgsz, threads=1)
        fit = lut.calibrate(calib, **measure)
        assert fit["designs"] == 4 and fit["scale"] > 0
        measured = [L.measure_latency(md, imgsz, "onnxruntime-cpu", threads=1, **measure)["median_ms"]
                    for md in held_out]
        return lut, [abs(lut.predict(md) - ms) / ms for md, ms in zip(held_out, measured, strict=True)]

    # Each layer is timed once, apart from the measurement it is compared with: a load spike on a shared machine
    # during either can put one attempt far off (seen: 60 %). A wrong table or fit is off on every attempt.
    attempts = [fitted_errors()]
    if max(attempts[0][1]) >= 0.25:
        attempts.append(fitted_errors())
    lut, errors = min(attempts, key=lambda a: max(a[1]))
    assert max(errors) < 0.25, [a[1] for a in attempts]

    profiled = lut.profiled
    lut.predict(calib[1])  # every layer already in the table: nothing is profiled again
    assert lut.profiled == profiled
    path = lut.save(tmp_path / "lut.json")
    loaded = LatencyLUT.load(path)
    assert loaded.predict(held_out[0]) == pytest.approx(lut.predict(held_out[0])) and loaded.profiled == 0

    data = json.loads(path.read_text())
    data["host"] = "elsewhere"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="another host"):
        LatencyLUT.load(path)


def test_band_order_comes_from_one_session_and_is_kept_in_the_study(space, tmp_path):
    """The bands' order: each reference's ms from one round-robin session (yolo11s far slower than yolo11n), stored
    in the study, so a second context (another worker, a resume) reads it instead of timing again."""
    from ultranas.bands import make_bands, order_ms
    from ultranas.objectives.latency import LatencyMeter

    study = optuna.create_study()
    meter = LatencyMeter("onnxruntime-cpu", threads=1, **FAST)
    refs = {p: candidate(space, p, tmp_path) for p in ("yolo11s", "yolo11n")}
    first = order_ms(study, meter, refs)
    assert first["yolo11s"] > 1.5 * first["yolo11n"]
    assert study.user_attrs["band_order:yolo11n,yolo11s"] == first
    assert order_ms(study, LatencyMeter("onnxruntime-cpu", threads=1, **FAST), refs) == first  # read, not re-timed
    assert [b.reference for b in make_bands(list(refs), first)] == ["yolo11n", "yolo11s"]
