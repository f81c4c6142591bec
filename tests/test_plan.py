"""The budget plan: ``--time-limit`` alone chooses the schedule from measured costs (``ultranas.plan``)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from ultranas.config import SearchConfig
from ultranas.plan import (
    BETWEEN_S,
    FINAL_EPOCHS,
    FINAL_SHARE,
    WRAP_UP_S,
    Costs,
    Line,
    final_epochs,
    makespan,
    proxy_size,
    schedule,
    wanted,
)


def _costs(epoch_s: float = 1.0, final_epoch_s: float = 4.0) -> Costs:
    """Costs as probes report them: a large model (GFLOPs 6) costs three times a small one (GFLOPs 2)."""
    return Costs(Line.fit([(2.0, epoch_s), (6.0, 3 * epoch_s)]), 1.0, Line.fit([(2.0, final_epoch_s),
                                                                               (6.0, 3 * final_epoch_s)]), 2.0,
                 {"yolo11n": 2.0, "yolo11s": 6.0}, search_threads=1, cores=2)


POINTS = {"yolov8n": 2.5, "yolo26n": 1.8, "yolo11n": 2.0, "yolo11s": 6.0, "yolov8s": 7.0, "yolo11n@0.75x": 1.2}


def _plan(budget_min: float, **kw):
    args = dict(spent_s=20.0, costs=_costs(), baselines=POINTS, references=["yolo11n", "yolo11s"], proxy_imgsz=128,
                imgsz=256, workers=2, final_workers=2)
    return schedule(60 * budget_min, **{**args, **kw})


def test_the_plan_is_made_only_when_the_time_limit_is_the_only_schedule_setting():
    cfg = SearchConfig(time_limit=30)
    assert wanted(cfg, {"data", "time_limit", "imgsz", "references", "strategy", "workers"})
    assert not wanted(cfg, {"time_limit", "epochs"}) and not wanted(cfg, {"time_limit", "final_epochs"})
    assert not wanted(SearchConfig(), {"data"})
    assert not wanted(SearchConfig(time_limit=30, strategy="darts"), {"time_limit", "strategy"})


def test_line_fit_and_makespan():
    line = Line.fit([(1.0, 3.0), (3.0, 7.0)])
    assert (line.a, line.b) == pytest.approx((1.0, 2.0))
    assert Line.fit([(2.0, 4.0)])(5.0) == pytest.approx(10.0)  # one reference: proportional
    assert Line.fit([(1.0, 5.0), (3.0, 4.0)])(2.0) == pytest.approx(4.5)  # a falling line is noise: the mean rate
    assert makespan([3, 3, 3], 2) == 6 and makespan([4, 1, 1, 1, 1], 2) == 4 and makespan([2, 2], 1) == 4


def test_proxy_size_keeps_the_median_object_visible():
    profile = lambda median: {"splits": {"train": {"size_px": {"median": median}}}}  # noqa: E731
    assert proxy_size(None, 320) == 160 and proxy_size(profile(60.0), 320) == 160
    assert proxy_size(profile(10.0), 320) == 256  # 10 px at 320 is 8 px at 256
    assert proxy_size(profile(2.0), 320) == 320 and proxy_size(None, 64) == 64


def test_the_plan_fits_the_budget_and_grows_with_it():
    small, large = _plan(20), _plan(90)
    for p in (small, large):
        between = BETWEEN_S[0] + BETWEEN_S[1] * 2
        total = p.spent_s + p.search_s + p.rerank_s + p.final_s + WRAP_UP_S + between
        assert 0.9 * p.budget_s <= total <= p.budget_s and not any("too small" in n for n in p.notes)
        assert p.final_s <= FINAL_SHARE * (p.budget_s - p.spent_s - WRAP_UP_S - between)
        assert p.search_s > 0 and p.designs > 0
    assert large.rerank > 0
    assert large.final_epochs > small.final_epochs or len(large.final_seeds) > len(small.final_seeds) \
        or len(large.references) > len(small.references)
    assert large.search_s > small.search_s and large.designs > small.designs
    settings = large.settings()
    assert settings["trials"] > 1000 and settings["time_limit"] == pytest.approx(large.search_s / 60, abs=0.01)
    cfg = SearchConfig(**{k: v for k, v in settings.items()}).validate()  # the settings are a valid search
    assert cfg.final_epochs >= FINAL_EPOCHS[0] and cfg.trainer == "fast"


def test_a_tight_budget_drops_a_seed_then_the_larger_references_and_says_so():
    roomy, tight = _plan(600), _plan(6)
    assert roomy.references == ["yolo11n", "yolo11s"] and len(roomy.final_seeds) == 3
    assert tight.references == ["yolo11n"] and tight.final_seeds == [0, 1]
    assert any("yolo11s left out" in n for n in tight.notes)
    kept = _plan(6, keep_references=True)  # --references given: kept, the epochs pay
    assert kept.references == ["yolo11n", "yolo11s"] and any("tight" in n for n in kept.notes)
    assert kept.final_epochs < FINAL_EPOCHS[0]


def test_a_budget_too_small_still_gives_a_valid_search_and_says_so():
    p = _plan(0.5)
    assert p.search_s > 0 and p.settings()["time_limit"] >= 0.01
    assert any("too small" in n for n in p.notes)
    SearchConfig(**p.settings()).validate()
    slow = _plan(1.3, costs=_costs(epoch_s=30.0), spent_s=60.0)  # one design takes longer than the whole budget
    assert 0 < slow.search_s <= slow.budget_s - slow.spent_s and slow.settings()["time_limit"] < 1.3
    assert slow.designs == 1 and any("too small" in n for n in slow.notes)


def test_no_rerank_at_the_proxy_size_itself():
    assert _plan(90, proxy_imgsz=256).rerank == 0 and _plan(90).rerank > 0


def test_the_final_stage_fills_the_time_left(tmp_path, capsys):
    """A planned run re-plans its final epochs from the time left before its deadline (and records them)."""
    from types import SimpleNamespace

    plan = {"final_line": [0.0, 1.0], "final_fixed_s": 2.0, "final_epochs": 10}
    cfg = SearchConfig(final_epochs=10, final_seeds=[0, 1], final_workers=2)
    ctx = SimpleNamespace(cfg=cfg, run_dir=tmp_path, study=SimpleNamespace(user_attrs={"plan": plan}),
                          plan_deadline=time.time() + WRAP_UP_S + 62.0)
    final_epochs(ctx, [1.0, 2.0])  # 4 jobs on 2 workers: 2 + e + 2 + 2e = 4 + 3e <= 62 s: 19 epochs
    assert cfg.final_epochs == 19 and yaml.safe_load((tmp_path / "args.yaml").read_text())["final_epochs"] == 19
    assert "19 epochs instead of the planned 10" in capsys.readouterr().out
    ctx.plan_deadline = time.time()  # spent: one epoch, and it says how late
    final_epochs(ctx, [1.0, 2.0])
    assert cfg.final_epochs == 1 and "budget is spent" in capsys.readouterr().out
    untouched = SearchConfig(final_epochs=7)
    final_epochs(SimpleNamespace(cfg=untouched, run_dir=tmp_path, study=SimpleNamespace(user_attrs={}),
                                 plan_deadline=None), [1.0])
    assert untouched.final_epochs == 7  # no plan: as given


def test_a_planned_search_keeps_its_budget(tmp_path, synthetic, run_cli):
    """``ultranas search data=... time_limit=M`` alone: the plan is printed, applied to args.yaml and the study, and
    the whole job (search, final stage) ends near the budget."""
    budget = 1.3
    t0 = time.time()
    proc = run_cli("search", f"data={synthetic}", "imgsz=64", f"time_limit={budget}", "references=yolo11n",
                   "input_scales=1", f"project={tmp_path}", "name=planned", timeout=600)
    wall = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "ultranas: plan for 1.3 min" in out and "  search  ~" in out and "  final   ~" in out
    run = tmp_path / "planned"
    args = yaml.safe_load((run / "args.yaml").read_text())
    plan = json.loads((run / "plan" / "plan.json").read_text())
    assert args["budget"] == budget and args["trainer"] == "fast" and args["trials"] > 1000
    assert args["time_limit"] == pytest.approx(plan["search_s"] / 60, abs=0.01) and args["time_limit"] < budget
    assert args["references"] == ["yolo11n"] and plan["costs"]["yolo11n"]["final_epoch_s"] > 0
    rows = list(csv_rows(run / "comparison.csv"))
    assert rows and all(int(r["final_epochs"]) == args["final_epochs"] for r in rows)
    assert wall < 2 * 60 * budget + 30, f"{wall:.0f} s for a {budget} min budget"  # loose: other tests share the CPU
    assert "took " in out and plan["outcome"]["total_s"] <= wall and plan["outcome"]["final_s"] > 0
    assert not list((run / "plan").rglob("*.pt"))  # the probes' weights are not kept
    again = run_cli("search", "--resume", run)  # a finished planned run resumes with its plan, not a new one
    assert again.returncode == 0 and "plan for" not in again.stdout, again.stderr[-2000:]
    import optuna

    optuna.load_study(study_name="planned", storage=f"sqlite:///{run / 'study.db'}").set_user_attr("plan", None)
    stopped = run_cli("search", "--resume", run)  # as if stopped while planning
    assert stopped.returncode == 2 and "stopped while its plan was being made" in stopped.stderr


def csv_rows(path):
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)
