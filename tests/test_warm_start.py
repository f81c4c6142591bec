"""Where a search starts: references first, and on small-object data the stride-4 points narrowed into the smallest
reference's band before the other points."""

from __future__ import annotations

import pytest

from ultranas.config import SearchConfig
from ultranas.context import open_context
from ultranas.data_profile import profile_data, small_objects
from ultranas.warm_start import DEEP, MARGIN, MAX_NARROWING, warm_start


@pytest.fixture
def ctx(tmp_path, synthetic):
    """The synthetic set (3 classes) at 64 px, where its objects are small; bands of yolo11n and yolo11s."""
    cfg = SearchConfig(data=str(synthetic), imgsz=64, proxy_imgsz=64, epochs=1, batch=4, trials=2, final=False,
                       strategy="random", references=["yolo11n", "yolo11s"], focus="bands", latency_target="torch-cpu")
    ctx = open_context(cfg, tmp_path / "exp")
    ctx.profile = profile_data(ctx.full_data, cfg.imgsz, checked=True)  # as the search announces it
    return ctx


def _queued(ctx):
    return [(t.user_attrs.get("point"), t.system_attrs["fixed_params"]) for t in ctx.study.trials]


def test_stride4_points_are_narrowed_to_the_smallest_reference_where_small_objects_dominate(ctx, capsys):
    assert small_objects(ctx.profile) and ctx.bands[0].reference == "yolo11n"
    warm_start(ctx)
    queued = _queued(ctx)
    names = [n for n, _ in queued]
    assert names[:2] == ["yolo11n", "yolo11s"]  # the references anchor the bands: first
    fitted = [g for n, g in queued if n is None]
    origins = [t.user_attrs.get("origin") for t in ctx.study.trials if "point" not in t.user_attrs]
    assert set(origins) <= {"yolov8n-p2 narrowed", "yolo26n-p2 narrowed"} and len(origins) == len(fitted)
    assert fitted and names[2:2 + len(fitted)] == [None] * len(fitted)  # then the fitted stride-4 designs
    limit = MARGIN * ctx.references["yolo11n"].info["gflops"]
    sources = {"yolov8n-p2": ctx.space.point("yolov8n-p2"), "yolo26n-p2": ctx.space.point("yolo26n-p2")}
    out = capsys.readouterr().out
    for g in fitted:
        assert g["levels"] == "P2-P5" and ctx.candidate(g, ctx.run_dir).info["gflops"] <= limit
        source = min(sources.values(), key=lambda p: sum(p[k] != g[k] for k in p))
        changed = [k for k in source if source[k] != g[k]]
        assert changed and all(g[k] < source[k] for k in changed)  # only narrowed, never widened or swapped
        assert all(k.startswith(DEEP) for k in changed)  # the stride-16/32 stages only
        assert ctx.candidate(source, ctx.run_dir).info["gflops"] > limit  # the point itself did not fit
    assert "narrowed to yolo11n's GFLOPs (" in out and ": tried first" in out
    again = len(ctx.study.trials)
    warm_start(ctx)  # once per run
    assert len(ctx.study.trials) == again


def test_no_stride4_fitting_without_small_objects_or_bands(ctx, monkeypatch):
    monkeypatch.setattr(ctx, "profile", None)  # no profile: no small objects
    warm_start(ctx)
    assert all(n is not None for n, _ in _queued(ctx))


def test_a_point_that_cannot_be_narrowed_far_enough_is_left_out(ctx, monkeypatch, capsys):
    import ultranas.warm_start as ws

    monkeypatch.setattr(ws, "MAX_NARROWING", 2)
    warm_start(ctx)
    assert all(n is not None for n, _ in _queued(ctx))
    assert "could not be narrowed to yolo11n's GFLOPs in its stride-16/32 stages" in capsys.readouterr().out
    assert MAX_NARROWING > 2
