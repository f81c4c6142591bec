"""Input size as a decision: the yolo space's input scales and hand-scaled points, the settings that keep designs
at the deploy size, and a real search whose designs are timed, trained and judged each at its own size."""

from __future__ import annotations

import csv
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from ultranas.config import SearchConfig
from ultranas.data_profile import points_first, scale_suits
from ultranas.errors import UserError
from ultranas.input_size import scale_note, search_space, train_size
from ultranas.space import load_space
from ultranas.space._space import scaled_size
from ultranas.ultra import load_checkpoint


@pytest.fixture(scope="module")
def space():
    return load_space("yolo")


def test_a_design_runs_at_the_deploy_size_times_its_scale_in_32_px_steps(space):
    g = space.point("yolo11n")
    assert g["input_scale"] == 1.0 and space.imgsz(g, 320) == 320 and space.imgsz(g, 100) == 100  # as given
    assert [space.imgsz({**g, "input_scale": s}, 320) for s in space.decisions["input_scale"]] == \
        [192, 256, 288, 320, 416, 480]
    assert space.deploy_sizes(256) == [160, 192, 224, 256, 320, 384]
    assert scaled_size(64, 0.625) == 32 and scaled_size(64, 0.25) == 32  # never under one stride-32 cell
    assert train_size(64, 320, 320) == 64 and train_size(128, 416, 320) == 160 and train_size(128, 256, 320) == 96


def test_scale_one_keeps_the_hash_of_a_design_without_the_decision(space):
    """Caches, studies and checkpoints made before the decision existed still name the same design."""
    g = space.point("yolo11n")
    old = {k: v for k, v in g.items() if k != "input_scale"}
    assert space.design_hash(old) == space.design_hash(g)
    assert space.design_hash({**g, "input_scale": 0.75}) != space.design_hash(g)
    assert space.render({**g, "input_scale": 0.75}) == space.render(g)  # the network is the same


def test_every_point_is_offered_hand_scaled_where_the_size_differs(space):
    scaled = space.hand_scaled_points(["yolo11n"], 320)
    assert list(scaled) == ["yolo11n@0.75x", "yolo11n@1.25x"]
    assert scaled["yolo11n@0.75x"] == {**space.point("yolo11n"), "input_scale": 0.75}
    assert space.point("yolo26n@1.25x")["input_scale"] == 1.25  # a name a user may give (--references, render)
    assert list(space.hand_scaled_points(["yolo11n"], 64)) == ["yolo11n@1.25x"]  # 0.75 x 64 rounds to 64
    assert len(space.baselines(320)) == 3 * len(space.points)


def test_input_scales_narrow_the_space_and_must_keep_the_deploy_size(space):
    narrow = space.with_input_scales([1, 0.75])
    assert narrow.decisions["input_scale"] == (1.0, 0.75) and narrow.spec.hand_scaled == (0.75,)
    assert space.decisions["input_scale"] != narrow.decisions["input_scale"]  # the loaded space is unchanged
    for bad in ([0.75], [1, 9], []):
        with pytest.raises(UserError, match="--input-scales must list 1"):
            space.with_input_scales(bad)
    with pytest.raises(UserError, match="no input_scale decision"):
        load_space("mobile").with_input_scales([1])


@pytest.mark.parametrize("setting, why", [
    ({"estimator": "supernet"}, "the supernet scores every design at one input size"),
    ({"estimator": "zero-cost"}, "zero-cost proxies"),
    ({"strategy": "darts"}, "DARTS"),
    ({"latency_lut": "table.json"}, "--latency-lut"),
])
def test_settings_that_score_one_size_keep_every_design_at_the_deploy_size(setting, why):
    cfg = SimpleNamespace(**{**vars(SearchConfig()), **setting})
    assert search_space(cfg).decisions["input_scale"] == (1.0,)
    cfg.input_scales = [0.75, 1.0]
    with pytest.raises(UserError, match=why):
        search_space(cfg)
    cfg.input_scales = [1.0]
    assert search_space(cfg).decisions["input_scale"] == (1.0,)
    assert search_space(SearchConfig(imgsz=256, proxy_imgsz=128)).decisions["input_scale"] == \
        (0.625, 0.75, 1.0, 1.25, 1.5)  # 0.875 trains at 128 px, as 1 does


def test_scales_that_give_another_scales_side_are_left_out_and_the_run_says_why():
    """At 320 px with a 64 px proxy, 0.75 and 0.875 train at 64 px as 1 does: timed faster, scored the same, the
    search would favour them for nothing; at 192 px, 0.75 and 0.875 both deploy at 160 px (the hand-scaled one stays)."""
    cfg = SearchConfig()
    assert search_space(cfg).decisions["input_scale"] == (0.625, 1.0, 1.25)
    assert scale_note(cfg).startswith("input scales 0.75, 0.875, 1.5 are left out: at --imgsz 320 and --proxy-imgsz 64")
    assert search_space(SearchConfig(imgsz=192, proxy_imgsz=96)).decisions["input_scale"] == (0.75, 1.0, 1.25)
    assert scale_note(SearchConfig(estimator="supernet")).startswith("every design runs at the deploy size (320 px)")
    space = search_space(SearchConfig(imgsz=640, proxy_imgsz=256))
    sides = [space.imgsz({"input_scale": s}, 640) for s in space.decisions["input_scale"]]
    assert len(set(sides)) == len(sides) == 6 and scale_note(SearchConfig(imgsz=640, proxy_imgsz=256)) is None
    with pytest.raises(UserError, match="'yolo11n@0.75x' is not offered here: the hand-scaled points of this search are "
                                        "at 1.25x"):
        search_space(cfg).point("yolo11n@0.75x")
    for bad in ([], {"a": 1}):
        with pytest.raises(UserError, match="--input-scales must be a non-empty list"):
            SearchConfig(input_scales=bad).validate()


def test_a_study_keeps_its_input_scales_and_one_made_before_them_stays_at_the_deploy_size():
    import optuna

    from ultranas.context import study_space

    space = load_space("yolo")
    new = optuna.create_study()
    assert study_space(space, new) is space and new.user_attrs["input_scales"] == list(space.decisions["input_scale"])
    assert study_space(space.with_input_scales([1, 1.25, 0.75, 0.625, 0.875, 1.5]), new).decisions["input_scale"] == \
        space.decisions["input_scale"]  # the study's own order
    with pytest.raises(UserError, match="this study searches input scales 0.625, 0.75"):
        study_space(space.with_input_scales([1]), new, fixed=True)  # e.g. a worker joining with --strategy darts
    narrower = space.with_input_scales([1, 1.25])  # the same settings where another version drops more scales
    assert study_space(narrower, new).decisions["input_scale"] == space.decisions["input_scale"]
    old = optuna.create_study()
    old.enqueue_trial({"stem": 16})  # a trial but no record: made before the decision existed
    assert study_space(space, old).decisions["input_scale"] == (1.0,) and old.user_attrs["input_scales"] == [1.0]


def _profile(median: float, under16: float) -> dict:
    return {"imgsz": 320, "splits": {"train": {"size_px": {"median": median},
                                               "share_under_px": {"8": 0.0, "16": under16, "32": 1.0}}}}


def test_the_data_profile_orders_the_start_by_input_size(space, capsys):
    start = {**space.points, **space.hand_scaled_points(["yolo11n"], 320)}
    small = [n for n, _ in points_first(start, _profile(10, 0.8), say=True)]
    assert small[:2] == ["yolov8n-p2", "yolo26n-p2"] and small[2] == "yolo11n@1.25x"
    assert "larger inputs are tried first" in capsys.readouterr().out
    large = [n for n, _ in points_first(start, _profile(120, 0.0), keep={"yolo11n"}, say=True)]
    assert large[0] == "yolo11n@0.75x" and "yolo11n@1.25x" in large and "yolov8n-p2" not in large
    assert "smaller input are tried first" in capsys.readouterr().out
    assert [scale_suits(p, s) for p in (_profile(10, 0.8), _profile(120, 0.0), _profile(40, 0.1), None)
            for s in (0.75, 1.25)] == [False, True, True, False, True, True, True, True]


def test_a_point_runs_at_the_deploy_size(tmp_path):
    raw = yaml.safe_load(load_space("yolo").path.read_text())
    raw["points"]["yolo11n"]["input_scale"] = 1  # an integer is the scale 1
    path = tmp_path / "int.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_space(path).point("yolo11n")["input_scale"] == 1.0
    raw["points"]["yolo11n"]["input_scale"] = 0.75  # a narrowed space would lose it: hand_scaled offers variants
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="key 'points.yolo11n.input_scale' must be 1: points run at the deploy size"):
        load_space(path)
    assert search_space(SearchConfig(imgsz=3840, proxy_imgsz=128)).decisions["input_scale"] == (0.625, 0.75, 1.0)


@pytest.fixture(scope="module")
def scaled_run(tmp_path_factory, synthetic):
    """A real tiny search at deploy 128 px with input scales 0.75 and 1: yolo11n and yolo11n@0.75x (96 px)."""
    project = tmp_path_factory.mktemp("scaled")
    proc = subprocess.run([sys.executable, "-m", "ultranas", "search", "--data", str(synthetic),
                           "--strategy", "random", "--trials", "3", "--epochs", "1", "--batch", "8",
                           "--imgsz", "128", "--proxy-imgsz", "128", "--input-scales", "0.75,1",
                           "--references", "yolo11n", "--final-epochs", "1", "--final-seeds", "0",
                           "--project", str(project)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return project / "exp", proc.stdout


def test_each_design_is_timed_and_trained_at_its_own_size(scaled_run):
    run, out = scaled_run
    board = {r["point"]: r for r in csv.DictReader((run / "leaderboard.csv").read_text().splitlines())
             if r.get("point")}
    assert {"yolo11n", "yolo11n@0.75x"} <= set(board)
    trials = {name: run / "trials" / board[name]["trial"] for name in ("yolo11n", "yolo11n@0.75x")}
    sizes = {name: yaml.safe_load(next(d.glob("*/args.yaml")).read_text())["imgsz"] for name, d in trials.items()}
    assert sizes == {"yolo11n": 128, "yolo11n@0.75x": 96}  # the proxy size x the design's scale
    assert float(board["yolo11n@0.75x"]["latency_vs_yolo11n"]) < 1.0  # the same network on fewer pixels


def test_the_final_stage_judges_the_hand_scaled_reference_at_its_size(scaled_run):
    from ultranas import NAS

    run, out = scaled_run
    rows = {r["model"]: r for r in csv.DictReader((run / "comparison.csv").read_text().splitlines())}
    assert rows["yolo11n@0.75x"]["role"] == "hand-designed" and rows["yolo11n@0.75x"]["imgsz"] == "96"
    assert rows["yolo11n"]["imgsz"] == "128"
    weights = sorted(run.glob("final/yolo11n@0.75x*/weights/best.pt"))
    assert weights, sorted(p.name for p in (run / "final").iterdir())
    assert load_checkpoint(weights[0])["train_args"]["imgsz"] == 96
    assert NAS(weights[0]).overrides["imgsz"] == 96  # predict, val and export default to the design's size
    info = load_checkpoint(run / "found_n.pt")["ultranas"]
    assert info["imgsz"] == int(rows["found_n"]["imgsz"])


def test_the_fast_trainer_keeps_each_sizes_decoded_splits_while_they_fit(synthetic, monkeypatch):
    """Designs at several input scales alternate training sizes: a size seen before is not decoded again."""
    from ultranas.estimation import _fast_train
    from ultranas.estimation._fast_train import FastTrainEstimator

    est = FastTrainEstimator(synthetic, epochs=1, batch=8)
    first = est.dataset(64)
    assert est.dataset(96).imgsz == 96 and est.dataset(64) is first
    monkeypatch.setattr(_fast_train, "KEEP_BYTES", 0)  # nothing else fits: only the size in use stays
    assert est.dataset(96, "val").imgsz == 96 and {size for size, _ in est._datasets} == {96}
