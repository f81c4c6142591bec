"""Selection and verdict splits: the search chooses on one, the final stage judges on another, and the search never
reads the verdict split."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ultranas.config import SearchConfig
from ultranas.data import _label_dir, list_images, load_data_yaml, safe_data_yaml
from ultranas.errors import UserError
from ultranas.splits import MIN_SELECT, choose, plan_splits


@pytest.fixture(scope="module")
def with_test(tmp_path_factory) -> Path:
    from ultranas.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("with_test"), n_train=48, n_val=16, n_test=20, imgsz=64, seed=3)


def _classes(images: list[Path]) -> Counter:
    out = Counter()
    for f in images:
        label = _label_dir(f.parent) / f.with_suffix(".txt").name  # beside a linked image: its linked label
        out.update({int(line.split()[0]) for line in Path(label).read_text().split("\n") if line.strip()})
    return out


def test_a_carved_selection_split_is_stratified_disjoint_and_the_same_every_time(synthetic, tmp_path):
    cfg = SearchConfig(data=str(synthetic)).validate()
    plans = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        plans.append(plan_splits(cfg, safe_data_yaml(synthetic, tmp_path / run), tmp_path / run))
    plan = plans[0]
    assert (plan.select_on, plan.judge_on, plan.n_select, plan.n_fit, plan.n_judge) == ("train", "val", MIN_SELECT,
                                                                                          78, 32)
    search, judge = load_data_yaml(Path(plan.search_data)), load_data_yaml(Path(plan.judge_data))
    fit, select = list_images(Path(search["train"])), list_images(Path(search["val"]))
    names = [{p.name for p in list_images(Path(load_data_yaml(Path(p.search_data))["val"]))} for p in plans]
    assert names[0] == names[1]  # the same carve for every run on the same data
    original = load_data_yaml(synthetic)
    train = list_images((original["_root"] / original["train"]).resolve())
    assert {p.name for p in fit} | {p.name for p in select} == {p.name for p in train}
    assert not {p.name for p in fit} & {p.name for p in select} and len(select) == MIN_SELECT
    assert "test" not in search and Path(judge["train"]) == (original["_root"] / original["train"]).resolve()
    assert plan.independent
    assert Path(judge["val"]) == (original["_root"] / original["val"]).resolve()
    assert all(p.resolve().parent.parent.name == "images" for p in select)  # links to the user's own files
    share, whole = _classes(select), _classes(train)
    for c, n in whole.items():  # every class keeps (about) its share of images
        assert abs(share[c] / len(select) - n / len(train)) < 0.1, (c, share, whole)
    assert plan_splits(cfg, safe_data_yaml(synthetic, tmp_path / "a"), tmp_path / "a") == plan  # read back


def test_a_study_scored_before_it_had_splits_keeps_selecting_on_val(synthetic, with_test, tmp_path):
    import optuna

    cfg = SearchConfig(data=str(synthetic)).validate()
    for data, judge in ((synthetic, "val"), (with_test, "test")):
        study = optuna.create_study()
        study.add_trial(optuna.trial.create_trial(values=[0.5], params={}, distributions={}))
        run = tmp_path / judge
        run.mkdir()
        plan = plan_splits(cfg, safe_data_yaml(data, run), run, study)
        assert (plan.select_on, plan.judge_on) == ("val", judge)
        assert ("before runs had selection splits" in plan.note) == (judge == "val")  # it would have carved
        assert study.user_attrs["splits"]["select_on"] == "val"  # a worker on another host reads the same choice
        assert plan.independent == (judge == "test")


def test_the_choice_follows_the_data(coco8, with_test, synthetic):
    auto = SearchConfig().validate()
    assert choose(auto, load_data_yaml(with_test)) == ("val", "test", "")
    assert choose(auto, load_data_yaml(synthetic)) == ("train", "val", "")
    select, judge, note = choose(auto, load_data_yaml(coco8))  # 4 train images: nothing to carve
    assert (select, judge) == ("val", "val") and "too few to carve" in note
    with pytest.raises(UserError, match="--judge-on test needs a 'test:' split"):
        choose(SearchConfig(judge_on="test").validate(), load_data_yaml(coco8))
    with pytest.raises(UserError, match="--select-on train carves at least"):
        choose(SearchConfig(select_on="train").validate(), load_data_yaml(coco8))
    assert choose(SearchConfig(select_on="train").validate(), load_data_yaml(synthetic))[:2] == ("train", "val")


@pytest.mark.parametrize("flags, message", [
    (["--judge-on", "test"], "--judge-on test needs a 'test:' split"),
    (["--select-on", "train"], "--select-on train carves at least 50 images"),
    (["--select-on", "test"], "unknown --select-on 'test'"),
    (["--select-share", "0.7"], "--select-share must be in (0, 0.5)"),
])
def test_impossible_split_choices_are_one_line_and_write_nothing(cli_forked, tmp_path, flags, message):
    proc = cli_forked("search", "--data", "coco8.yaml", *flags, "--project", tmp_path / "p", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "p").exists()


def test_the_search_never_reads_the_test_split_and_the_final_stage_judges_on_it(with_test, run_cli, tmp_path):
    labels = with_test.parent / "labels"
    flags = ["--data", with_test, "--trials", "2", "--epochs", "1", "--imgsz", "64", "--proxy-imgsz", "32", "--batch",
             "8", "--strategy", "random", "--references", "yolo11n", "--final-epochs", "1", "--final-seeds", "0",
             "--rerank", "1", "--rerank-epochs", "1", "--project", tmp_path / "p"]
    first = run_cli("search", *flags, "--no-final")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "selection split: val (16 images); verdict split: test (20 images)" in first.stdout
    run = tmp_path / "p" / "exp"
    assert (labels / "val.cache").exists() and not (labels / "test.cache").exists()  # Ultralytics never opened test
    trial_args = [yaml.safe_load(p.read_text()) for p in run.glob("trials/*/*/args.yaml")]
    assert trial_args and all(Path(a["data"]) == run / "splits" / "search.yaml" for a in trial_args)
    assert "test" not in load_data_yaml(run / "splits" / "search.yaml")
    final = run_cli("search", "--resume", run, "--final")
    assert final.returncode == 0, final.stderr[-2000:]
    assert (labels / "test.cache").exists()
    rows = list(csv.DictReader((run / "comparison.csv").read_text().splitlines()))
    assert rows and all(r["judged_on"] == "test" and r["n_images"] == "20" for r in rows)
    ref = next(r for r in rows if r["role"] == "reference")
    for r in rows:  # one latency session: the ratios are the absolute times over the reference's
        assert float(r["latency_ratio"]) == pytest.approx(float(r["latency_ms"]) / float(ref["latency_ms"]), abs=2e-3)
    found = next(r for r in rows if r["role"] == "found")
    assert float(found["ci_low_pts"]) <= float(found["gap_pts"]) <= float(found["ci_high_pts"])
    assert "1 seed, 20 test images" in found["verdict"]
    final_args = [yaml.safe_load(p.read_text()) for p in run.glob("final/*-s*/args.yaml")]
    assert final_args and all(Path(a["data"]) == run / "data.yaml" for a in final_args)  # all of train
