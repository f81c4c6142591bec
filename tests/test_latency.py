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


def test_default_target_and_fingerprint():
    if not torch.cuda.is_available():
        assert L.default_target() == "onnxruntime-cpu"
    fp = L.host_fingerprint()
    assert fp["cpu"] and fp["cores"] >= 1 and fp["torch"] == torch.__version__ and len(fp["id"]) == 10


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
    assert v1 == first.info["latency"]["median_ms"] == first.info["latency_ms"] > 0
    again = candidate(space, "yolo11n", tmp_path)
    assert obj.value(again) == v1 and again.info["latency"] == first.info["latency"]
    assert len(counted) == 1 and obj.cache.hits == 1
    key = L.LatencyCache.key(first.design_hash, "onnxruntime-cpu", IMGSZ, 1, 1)
    assert study.user_attrs[key] == first.info["latency"]

    resumed = optuna.load_study(study_name="s", storage=storage)  # a new process resuming the run
    obj2 = L.LatencyObjective("onnxruntime-cpu", cache=L.LatencyCache(resumed), **FAST)
    third = candidate(space, "yolo11n", tmp_path)
    assert obj2.value(third) == v1 and third.info["latency"] == first.info["latency"]
    assert len(counted) == 1

    obj2.value(candidate(space, "yolo11n", tmp_path, imgsz=96))  # another input size is another measurement
    assert counted == [IMGSZ, 96]


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
    rng = random.Random(3)
    calib = [space.render(space.point(p), 80) for p in ("yolov8n", "yolo11n", "yolov8s", "yolo11s")]
    held_out = [space.render(space.sample(rng), 80) for _ in range(2)]
    measure = {"warmup": 5, "repeats": 30}
    lut = LatencyLUT("onnxruntime-cpu", IMGSZ, threads=1)
    fit = lut.calibrate(calib, **measure)
    assert fit["designs"] == 4 and fit["scale"] > 0
    for md in held_out:
        measured = L.measure_latency(md, IMGSZ, "onnxruntime-cpu", threads=1, **measure)["median_ms"]
        assert abs(lut.predict(md) - measured) / measured < 0.25

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
