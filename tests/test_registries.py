"""Registries: every registered strategy, estimator, objective, proxy and latency target is offered by the CLI, and
a newly registered one is accepted without other edits."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ultranas.cli import build_parser, main
from ultranas.estimation import ESTIMATORS, SCORES, make_estimator, register_estimator
from ultranas.estimation._zero_cost import ZERO_COST_PROXIES, register_proxy
from ultranas.objectives import OBJECTIVES, Candidate, make_objectives, register_objective
from ultranas.objectives._targets import TARGETS, register_target
from ultranas.strategies import STRATEGIES, make_strategy, register_strategy


def _help(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per flag: names are not wrapped at their hyphens
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("flag,registry", [("--strategy", STRATEGIES), ("--objectives", OBJECTIVES),
                                           ("--estimator", ESTIMATORS), ("--proxy", ZERO_COST_PROXIES),
                                           ("--latency-target", TARGETS), ("--score", SCORES)])
def test_search_help_lists_every_registered_name(flag, registry, capsys, monkeypatch):
    text = _help("search", capsys, monkeypatch)
    line = text[text.index(flag + " ", text.index("options:")):][:600]  # the flag's help, not the usage line
    assert all(name in line for name in registry), (flag, line)


def test_calibrate_help_lists_estimators_scores_and_proxies(capsys, monkeypatch):
    text = _help("calibrate", capsys, monkeypatch)
    line = text[text.index("--estimators ", text.index("options:")):][:600]
    assert all(name in line for name in [*ESTIMATORS, *SCORES, *ZERO_COST_PROXIES]), line
    assert "--proxy PROXY" in text  # the former name stays


def test_top_level_help_needs_no_registry():
    import subprocess
    import sys

    code = ("import sys; from ultranas.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'ultralytics', 'optuna', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "search" in out and "calibrate" in out and out.strip().endswith("[]"), out


@pytest.fixture
def registered():
    """Register into a registry for one test, then remove it again."""
    added = []

    def add(registry: dict, name: str, register, obj):
        added.append((registry, name))
        return register(obj)

    yield add
    for registry, name in added:
        registry.pop(name, None)


def test_a_new_latency_target_works_without_other_edits(registered, tmp_path, capsys, monkeypatch):
    from ultranas.config import SearchConfig
    from ultranas.engine import preflight
    from ultranas.objectives.latency import LatencyMeter
    from ultranas.space import load_space

    base = TARGETS["torch-cpu"]
    registered(TARGETS, "my-cpu", register_target, dataclasses.replace(base, name="my-cpu", description="mine"))
    assert "my-cpu" in _help("search", capsys, monkeypatch)
    args = build_parser("search").parse_args(["search", "--latency-target", "my-cpu"])
    cfg = SearchConfig(latency_target=args.latency_target, project=str(tmp_path)).validate()
    preflight(cfg)  # the engine's up-front checks accept it
    space = load_space("yolo")
    g = space.point("yolo11n")
    cand = Candidate(g, space.render(g, 80), space.design_hash(g, 80), 64, tmp_path)
    record = LatencyMeter("my-cpu", warmup=1, repeats=5).measure(cand)
    assert record["target"] == "my-cpu" and record["median_ms"] > 0
    with pytest.raises(ValueError, match="taken"):
        register_target(base)  # names are unique


def test_new_strategy_objective_estimator_and_proxy_are_accepted(registered, tmp_path, capsys, monkeypatch):
    from ultranas.objectives._base import Objective
    from ultranas.space import load_space
    from ultranas.strategies import Strategy

    class First(Strategy):
        """Always the first point."""
        name = "first-point"

        def propose(self, history, fitness, rng):
            return self.space.point(next(iter(self.space.points)))

    class Depth(Objective):
        name, direction, cheap = "depth", "minimize", True

        def value(self, candidate, results=None):
            return float(len(candidate.model_dict["backbone"]))

    def const(model, batch, seed=0):
        return 1.0

    def constant_estimator(data, **settings):
        """every design scores 1 (the const proxy)"""
        return make_estimator("zero-cost", data, **{**settings, "proxy": "const"})

    registered(STRATEGIES, "first-point", register_strategy, First)
    registered(OBJECTIVES, "depth", register_objective, Depth)
    registered(ZERO_COST_PROXIES, "const", register_proxy("const"), const)
    registered(ESTIMATORS, "constant", lambda f: register_estimator("constant", f), constant_estimator)
    text = _help("search", capsys, monkeypatch)
    assert all(name in text for name in ("first-point", "depth", "const", "constant"))
    space = load_space("yolo")
    assert make_strategy("first-point", space).propose([], [], None) == space.point(next(iter(space.points)))
    assert [o.name for o in make_objectives(["map", "depth"])] == ["map", "depth"]
    est = make_estimator("constant", "coco8.yaml", epochs=1, imgsz=64, batch=1, device="cpu")
    g = space.point("yolo11n")
    cand = Candidate(g, space.render(g, 80), space.design_hash(g, 80), 64, tmp_path)
    assert math.isclose(est.estimate(cand)["score"], 1.0)
