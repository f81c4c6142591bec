"""Search space: baselines are exact points, operators respect the space, every design builds and reloads."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ultranas
from ultranas.errors import UserError
from ultranas.space import load_space
from ultranas.ultra import build_model, count_params, gflops

BASELINES = ["yolov8n", "yolov8s", "yolo11n", "yolo11s", "yolo26n", "yolo26s"]
STRIDES = {"P3-P5": (8, 16, 32), "P2-P5": (4, 8, 16, 32), "P3-P4": (8, 16)}


@pytest.fixture(scope="module")
def space():
    return load_space("yolo")


@pytest.mark.parametrize("name", BASELINES + ["yolov8n-p2", "yolo26n-p2"])
def test_baseline_point_equals_ultralytics(name):
    from ultralytics.nn.tasks import DetectionModel

    space = load_space("yolo")
    ours = build_model(space.render(space.point(name), nc=80))
    theirs = DetectionModel(cfg=f"{name}.yaml", verbose=False)
    assert count_params(ours) == count_params(theirs)
    assert gflops(ours, 640) == pytest.approx(gflops(theirs, 640), rel=1e-9)
    assert space.from_model(f"{name}.yaml") == space.point(name)  # Ultralytics' YAML lies in the space


def test_hash_identifies_designs(space):
    a = space.point("yolo11n")
    b = dict(a, attention_n=2 if a["attention_n"] == 1 else 1)
    assert space.design_hash(a) == space.design_hash(dict(a))
    assert space.design_hash(a) != space.design_hash(b)
    no_attn = dict(a, attention="none")
    assert space.design_hash(no_attn) == space.design_hash(dict(no_attn, attention_n=2))  # unused decision


def test_detection_levels_render_their_strides_and_unused_decisions_change_nothing(space):
    g = space.point("yolo11n")
    assert g["levels"] == "P3-P5" and space.design_hash(dict(g, **{"N2.width": 64, "N3out.n": 2})) == \
        space.design_hash(g)  # the P2 path's decisions shape only P2-P5 designs
    p2, p34 = dict(g, levels="P2-P5"), dict(g, levels="P3-P4")
    assert space.design_hash(dict(p2, **{"N2.width": 64})) != space.design_hash(p2)
    assert space.design_hash(dict(p34, **{"N5out.width": 128})) == space.design_hash(p34)  # no P5 output
    models = {k: build_model(space.render(d, nc=3)) for k, d in (("P3-P5", g), ("P2-P5", p2), ("P3-P4", p34))}
    for levels, model in models.items():
        assert model.stride.int().tolist() == list(STRIDES[levels])
        assert len(model.model[-1].f) == len(STRIDES[levels])  # the head reads one output per level
    flops = {k: gflops(m, 640) for k, m in models.items()}
    assert flops["P3-P4"] < flops["P3-P5"] < flops["P2-P5"]  # stride 4 costs compute; dropping P5 saves some
    for d in (p2, p34):
        assert space.design_hash(space.from_model(space.render(d, nc=3))) == space.design_hash(d)


def test_a_design_saved_before_the_levels_decision_is_the_same_design(space):
    g = space.point("yolo11n")
    old = {k: v for k, v in g.items() if k != "levels" and not k.startswith(("N2.", "N3out."))}  # as saved before
    assert space.check(old)[0] and space.render(old) == space.render(g) and space.complete(old) == g
    assert space.design_hash(old) == space.design_hash(g) == "d40e7e3719f8"  # as before the decision existed
    p34 = dict(g, levels="P3-P4", **{"N5out.block": "A2C2f-conv", "N5out.width": 192})  # unused: any pair goes
    assert space.check(p34)[0]
    rng = random.Random(0)
    for _ in range(30):  # a mutation changes what the design uses, never only what it leaves out
        child = space.mutate(g, rng)
        assert space.design_hash(child) != space.design_hash(g)


def test_nearest_point_names_a_point_and_only_the_differences_that_change_the_model(space):
    g = space.point("yolo11n")
    assert space.nearest_point(g) == ("yolo11n", [])
    for name in space.points:  # every point is itself (none is another point's duplicate)
        assert space.nearest_point(space.point(name)) == (name, [])
    child = dict(g, attention="none", attention_n=2, **{"N5out.n": 2})  # attention_n is unused without attention
    assert space.nearest_point(child) == ("yolo11n", [("attention", "C2PSA", "none"), ("N5out.n", 1, 2)])
    v8 = dict(space.point("yolov8n"), stem=24)
    assert space.nearest_point(v8) == ("yolov8n", [("stem", 16, 24)])


def test_nearest_point_marks_parts_the_point_does_not_have_and_odd_genotypes_are_refused():
    space = load_space("yolo")
    g = dict(space.point("yolo11n"), levels="P2-P5", **{"N2.width": 48})
    name, diffs = space.nearest_point(g)
    assert name == "yolo11n" and diffs == [("levels", "P3-P5", "P2-P5"), ("N2.width", "unused", 48)]
    assert space.check({**g, 1: 0, "x": 0}) == (False, "decision set differs from the space at '1'")  # no TypeError


def test_cli_version_names_ultranas_and_the_libraries_it_runs_on(run_cli):
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"ultranas {ultranas.__version__} (ultralytics 8.")
    assert "torch " in proc.stdout and not proc.stderr
    assert run_cli("--version", env={"COLUMNS": "30"}).stdout == proc.stdout  # one line, never wrapped


def test_mutate_and_crossover_stay_in_space(space):
    rng = random.Random(0)
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        m = space.mutate(a, rng, k=2)
        assert space.check(m)[0] and m != a
        assert sum(m[k] != a[k] for k in a) <= 2
        c = space.crossover(a, b, rng)
        assert space.check(c)[0] and all(c[k] in (a[k], b[k]) for k in c)


def test_invalid_design_rejected_with_reason(space):
    g = space.point("yolo11n")
    g["P4.block"], g["P4.width"] = "A2C2f", 96
    ok, reason = space.check(g)
    assert not ok and "multiple of 64" in reason
    with pytest.raises(UserError, match="not in space"):
        space.render(dict(g, stem=17))


def _reload_same(space, g, tmp_path) -> None:
    from ultralytics import YOLO

    d = space.render(g, nc=3)
    model = build_model(d)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    out = out[0] if isinstance(out, (list, tuple)) else out
    strides = STRIDES[g.get("levels", "P3-P5")]
    assert model.stride.int().tolist() == list(strides)
    anchors = sum((64 // s) ** 2 for s in strides)
    if getattr(model.model[-1], "end2end", False):  # NMS-free head: top-k rows of box, score, class
        assert out.shape[0] == 1 and out.shape[2] == 6 and out.shape[1] <= anchors
    else:  # one column per anchor of each stride: 4 box values + one score per class
        assert tuple(out.shape) == (1, 4 + 3, anchors)
    assert torch.isfinite(out).all()
    path = tmp_path / "yolo11m-named-to-trick-the-scale-guess.yaml"
    path.write_text(space.to_yaml(g, nc=3))
    try:
        reloaded = YOLO(str(path)).model
    except KeyError:  # explicit scale: a misleading file name fails loudly instead of silently rescaling
        path = tmp_path / "design.yaml"
        path.write_text(space.to_yaml(g, nc=3))
        reloaded = YOLO(str(path)).model
    assert count_params(reloaded) == count_params(model)
    assert [type(m).__name__ for m in reloaded.model] == [type(m).__name__ for m in model.model]
    back = space.from_model(yaml.safe_load(path.read_text()), imgsz=g.get("imgsz"))
    if "input_scale" in g:  # a model file carries no input scale: it reads back at the deploy size
        assert back["input_scale"] == 1.0
        back["input_scale"] = g["input_scale"]
    assert space.design_hash(back) == space.design_hash(g)


def _random_design(space, seed: int, mutations: int) -> dict:
    rng = random.Random(seed)
    g = space.sample(rng)
    for _ in range(mutations):
        g = space.mutate(g, rng)
    return g


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), mutations=st.integers(0, 3))
def test_property_random_and_mutated_designs_build_and_reload(space, tmp_path, seed, mutations):
    _reload_same(space, _random_design(space, seed, mutations), tmp_path)


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_property_mobile_designs_build_and_reload(tmp_path, seed):
    space = load_space("mobile")
    _reload_same(space, space.mutate(space.sample(random.Random(seed)), random.Random(seed + 1)), tmp_path)


BAD_SPACES = {  # case: (edit, the exact key and the reason the one line must name)
    "unknown module": (lambda r: r["blocks"].update(X=["os.system", ["$c"]]),
                       "key 'blocks.X' names module 'os.system', which is not allowed"),
    "eval bait arg": (lambda r: r["blocks"].update(X=["C2f", ["$c", "__import__('os').system('touch /tmp/pwned')"]]),
                      "key 'blocks.X' has argument \"__import__('os').system('touch /tmp/pwned')\": only numbers"),
    "empty decision": (lambda r: r["decisions"].update(stem=[]),
                       "key 'decisions.stem' must be a non-empty list of choices"),
    "unknown level": (lambda r: r["decisions"].update(levels=["P3-P5", "P1-P5"]),
                      "key 'decisions.levels' has 'P1-P5': levels are P3-P5, P2-P5, P3-P4"),
    "P2 without its neck": (lambda r: r["decisions"].pop("N2"),
                            "key 'decisions.N2.block' is missing: levels P2-P5 need N2 and N3out"),
    "P2 neck without P2": (lambda r: r["decisions"].update(levels=["P3-P5"]) or r["points"].pop("yolov8n-p2"),
                           "key 'decisions.N2.block' shapes only P2-P5 designs"),
    "P2 point without N2": (lambda r: r["points"]["yolov8n-p2"].pop("N2"),
                            "key 'points.yolov8n-p2.N2.block' is missing"),
    "scale and size": (lambda r: r["decisions"].update(imgsz=[320]),
                       "key 'decisions.input_scale' and decisions.imgsz both set the input size"),
    "scale out of range": (lambda r: r["decisions"].update(input_scale=[1.0, 8]),
                           "key 'decisions.input_scale' has 8: input scales are numbers in [0.25, 4]"),
    "scale as text": (lambda r: r["decisions"].update(input_scale=[1.0, "big"]),
                      "key 'decisions.input_scale' has 'big': input scales"),
    "scales without 1": (lambda r: r["decisions"].update(input_scale=[0.75, 1.25]),
                         "key 'decisions.input_scale' must list 1 (the deploy size"),
    "hand-scaled not a choice": (lambda r: r.update(hand_scaled=[0.5]), "key 'hand_scaled' has 0.5: each must be"),
    "hand-scaled at one": (lambda r: r.update(hand_scaled=[1]), "key 'hand_scaled' has 1: each must be"),
    "hand-scaled without scales": (lambda r: r["decisions"].pop("input_scale"),
                                   "key 'hand_scaled' needs the decision input_scale"),
    "point named like a scaled one": (lambda r: r["points"].update({"yolo11n@0.75x": r["points"]["yolo11n"]}),
                                      "point 'yolo11n@0.75x' has the name of a hand-scaled point"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_is_one_clear_line(tmp_path, case):
    raw = yaml.safe_load(load_space("yolo").path.read_text())
    edit, message = BAD_SPACES[case]
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as e:
        load_space(path)
    assert str(e.value).startswith(f"space {path}: {message}"), str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_activation_key_never_evaluated(tmp_path, space):
    """A model YAML's ``activation`` is parsed, never evaluated: code is refused by name, a plain activation is
    honoured (so the key is not simply dropped), and it does not leak into the next model built."""
    d = copy.deepcopy(space.render(space.point("yolo11n"), nc=3))
    marker = tmp_path / "pwned"
    d["activation"] = f"__import__('pathlib').Path('{marker}').touch()"
    with pytest.raises(RuntimeError, match="cannot build the design: TypeError: .*unsupported activation .* blocked"):
        build_model(d)
    assert not marker.exists()
    relu = build_model(dict(d, activation="nn.ReLU()"))
    kinds = {type(m).__name__ for m in relu.modules()}
    assert "ReLU" in kinds and "SiLU" not in kinds
    plain = build_model(space.render(space.point("yolo11n"), nc=3))
    assert "SiLU" in {type(m).__name__ for m in plain.modules()}  # the default activation is back


def test_space_cli_show_sample_render(cli_forked, tmp_path):
    shown = cli_forked("space", "show", "yolo", cwd=tmp_path)
    assert shown.returncode == 0 and "P3.block" in shown.stdout and "yolo26s" in shown.stdout
    sampled = cli_forked("space", "sample", "mobile", "--n", "3", cwd=tmp_path)
    lines = [json.loads(line) for line in sampled.stdout.splitlines()]
    assert sampled.returncode == 0 and len(lines) == 3 and len({d["hash"] for d in lines}) == 3
    out = tmp_path / "y11.yaml"
    rendered = cli_forked("space", "render", "yolo", "--point", "yolo11n", "-o", out, cwd=tmp_path)
    assert rendered.returncode == 0 and load_space("yolo").from_model(out) == load_space("yolo").point("yolo11n")
