"""Weight inheritance from pretrained checkpoints (``--pretrained``): which weights a design takes from which
checkpoint, that the result trains, and that a search fine-tunes trials, re-ranked and final designs from them."""

from __future__ import annotations

import csv

import pytest
import torch

from ultranas import ultra
from ultranas.errors import UserError
from ultranas.inherit import Inheritance
from ultranas.space import load_space

SPACE = load_space("yolo")
SHAPES = ["circle", "square", "triangle"]  # the synthetic set's classes


def _mutated(point: str, **changes) -> dict:
    g = SPACE.complete(SPACE.points[point])
    g.update({k.replace("__", "."): v for k, v in changes.items()})
    assert SPACE.check(g)[0]
    return g


def _model(g: dict, nc: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ultra.build_model(SPACE.render(g, nc), nc=nc)


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def pretrained(synthetic, tmp_path_factory):
    """yolo11n pretrained on the synthetic set (Ultralytics' own YAML, the fast trainer, 8 epochs at 96 px) and an
    untrained yolo26n, both saved as Ultralytics checkpoints: what a user passes to ``--pretrained``."""
    from ultranas.estimation._fast_train import FastTrainer

    folder = tmp_path_factory.mktemp("pretrained")
    trainer = FastTrainer(synthetic, imgsz=96, epochs=8, batch=16, seed=0)
    result = trainer.train([ultra.bundled_model_yaml("yolo11n.yaml")])[0]
    assert result["map"] > 0.05, result  # it learned: fine-tuning from it has something to keep
    untrained26 = ultra.build_model(ultra.bundled_model_yaml("yolo26n.yaml"), nc=3)
    untrained26.names = dict(enumerate(SHAPES))
    paths = {"yolo11n": ultra.save_trained(trainer.trained[0], folder / "yolo11n.pt"),
             "yolo26n": ultra.save_trained(untrained26, folder / "yolo26n.pt")}
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def sources(pretrained):
    return Inheritance([pretrained["yolo11n"], pretrained["yolo26n"]], SPACE)


def test_exact_match_reproduces_the_checkpoint(sources, pretrained):
    """The point itself, same classes: every weight taken, outputs identical to the checkpoint's model."""
    model = _model(SPACE.points["yolo11n"], 3)
    info = sources.apply(model, SPACE.points["yolo11n"], SHAPES)
    assert info == {"inherited_from": "yolo11n", "inherited": 1.0}
    original = ultra.load_checkpoint(pretrained["yolo11n"])["model"].float().eval()
    x = torch.rand(2, 3, 96, 96)
    assert torch.allclose(model.eval()(x)[0], original(x)[0], atol=1e-4)
    info26 = sources.apply(_model(SPACE.points["yolo26n"], 3), SPACE.points["yolo26n"], SHAPES)
    assert info26 == {"inherited_from": "yolo26n", "inherited": 1.0}  # the nearest checkpoint: its own


def test_other_classes_keep_their_own_class_outputs(sources):
    """Another class count: all but the class convolutions (as Ultralytics' own transfer)."""
    model = _model(SPACE.points["yolo11n"], 7)
    fresh = _state(model)
    info = sources.apply(model, SPACE.points["yolo11n"], [f"c{i}" for i in range(7)])
    assert 0.98 < info["inherited"] < 1.0
    src = sources.sources[0].model.state_dict()
    head = len(model.model) - 1
    cls_conv, box_conv = f"model.{head}.cv3.0.2.weight", f"model.{head}.cv2.0.0.conv.weight"
    assert torch.equal(model.state_dict()[cls_conv], fresh[cls_conv])
    assert torch.equal(model.state_dict()[box_conv], src[box_conv])


def test_narrower_layer_takes_the_first_channels_of_each_part(sources):
    """A narrower C3k2 (its cv1 output cut in two halves by chunk): each half takes the first channels of the
    checkpoint's half, not the first channels of the whole (a naive slice would take the first half twice)."""
    g = _mutated("yolo11n", P4__width=96)
    model = _model(g, 3)
    info = sources.apply(model, g, SHAPES)
    assert info["inherited"] == 1.0  # a narrower design: every weight it has comes from yolo11n
    layer = 6  # P4's block: stem, P1 down, P1 block, P2 down, P2 block, P3 down... (render_rows order)
    name = f"model.{layer}.cv1.conv.weight"
    mine, theirs = model.state_dict()[name], sources.sources[0].model.state_dict()[name]
    assert mine.shape[0] == 96 and theirs.shape[0] == 128
    assert torch.equal(mine[:48], theirs[:48]) and torch.equal(mine[48:], theirs[64:112])
    nxt = f"model.{layer + 1}.conv.weight"  # the next downsampling reads the narrower block's outputs
    assert torch.equal(model.state_dict()[nxt], sources.sources[0].model.state_dict()[nxt][:, :96])


def test_wider_and_deeper_layers_keep_their_own_extra_weights(sources):
    g = _mutated("yolo11n", P4__width=192, N3__n=2)
    model = _model(g, 3)
    fresh = _state(model)
    info = sources.apply(model, g, SHAPES)
    params = ultra.count_params(model)
    assert info["inherited_from"] == "yolo11n"
    assert 0.5 < info["inherited"] < ultra.count_params(sources.sources[0].model) / params + 1e-6
    name = "model.6.cv2.bn.weight"  # the wider block's output: the checkpoint's 128 channels, then 64 of its own
    mine, theirs = model.state_dict()[name], sources.sources[0].model.state_dict()[name]
    assert torch.equal(mine[:128], theirs) and torch.equal(mine[128:], fresh[name][128:])
    extra = [k for k in model.state_dict() if k.startswith("model.16.m.1.")]  # N3's second block: new
    assert extra and all(torch.equal(model.state_dict()[k], fresh[k]) for k in extra)


def test_a_changed_block_keeps_what_follows_in_line(sources):
    """Another block type and width at N4: the N3 block after it reads cat(N4 upsampled, P3); its weights for the
    P3 channels must be the checkpoint's P3 weights, wherever N4's narrower output ends (no shift)."""
    g = _mutated("yolo11n", N4__block="C2f-ns", N4__width=96)
    model = _model(g, 3)
    info = sources.apply(model, g, SHAPES)
    assert 0.8 < info["inherited"] < 1.0
    name = "model.16.cv1.conv.weight"  # N3's block: inputs 0-95 from N4 (128 in yolo11n), then 64 from P3
    mine, theirs = model.state_dict()[name], sources.sources[0].model.state_dict()[name]
    assert torch.equal(mine[:, 96:], theirs[:, 128:]) and torch.equal(mine[:, :96], theirs[:, :96])


def test_a_p2_design_keeps_everything_but_the_p2_path(sources):
    g = _mutated("yolo11n", levels="P2-P5")
    model = _model(g, 3)
    fresh = _state(model)
    info = sources.apply(model, g, SHAPES)
    assert 0.6 < info["inherited"] < 1.0
    src, head, src_head = sources.sources[0].model.state_dict(), len(model.model) - 1, 23
    p2 = f"model.{head}.cv2.0.0.conv.weight"  # the new stride-4 branch keeps its own initialisation
    assert torch.equal(model.state_dict()[p2], fresh[p2])
    for level in range(3):  # the P3-P5 box branches are the checkpoint's, one level further in the list
        k = f"cv2.{level}.1.conv.weight"  # (their first conv reads the P2 design's own neck widths)
        assert torch.equal(model.state_dict()[f"model.{head}.cv2.{level + 1}.1.conv.weight"],
                           src[f"model.{src_head}.{k}"])


def test_inherited_design_trains(sources, synthetic):
    """A narrower design from inherited weights trains with the fast trainer and starts better than from scratch."""
    from ultranas.estimation._fast_train import FastTrainer

    g = _mutated("yolo11n", P4__width=96)
    trainer = FastTrainer(synthetic, imgsz=96, epochs=1, batch=16, seed=0)
    scratch, inherited = trainer.train([SPACE.render(g, 3)] * 2, [None, lambda m: sources.apply(m, g, SHAPES)])
    assert inherited["map"] > scratch["map"] + 0.02, (inherited["map"], scratch["map"])


def test_bad_checkpoints_are_refused_in_one_line(tmp_path, pretrained):
    outside = tmp_path / "yolo11m.pt"
    ultra.save_trained(ultra.build_model(ultra.bundled_model_yaml("yolo11m.yaml"), nc=3), outside)
    with pytest.raises(UserError, match=r"matches no choice .* the nearest point by parameters is yolov8s"):
        Inheritance([str(outside)], SPACE)
    not_point = tmp_path / "mutant.pt"
    ultra.save_trained(_model(_mutated("yolo11n", P4__width=96), 3), not_point)
    with pytest.raises(UserError, match="none of its points .the nearest: yolo11n"):
        Inheritance([str(not_point)], SPACE)
    with pytest.raises(UserError, match="not found"):
        Inheritance([str(tmp_path / "nope.pt")], SPACE)


@pytest.mark.slow
def test_search_fine_tunes_from_pretrained_weights(run_cli, tmp_path, synthetic, pretrained):
    """A search with ``--pretrained`` (the Ultralytics trainer): trials record what they inherited, re-ranking and the
    final stage fine-tune too (yolo11n from its own checkpoint: after one epoch it scores what it learned before, a
    scratch one nothing)."""
    r = run_cli("search", "--data", synthetic, "--imgsz", 96, "--proxy-imgsz", 64, "--trials", 2, "--epochs", 1,
                "--rerank", 1, "--rerank-epochs", 1, "--final-epochs", 1, "--final-seeds", 0, "--references",
                "yolo11n", "--input-scales", 1, "--pretrained", pretrained["yolo11n"], "--project", tmp_path,
                "--name", "p")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "p"
    rows = {row["point"]: row for row in csv.DictReader((run / "leaderboard.csv").open()) if row["state"] == "COMPLETE"}
    assert float(rows["yolo11n"]["inherited"]) == pytest.approx(1.0, abs=1e-3)
    assert rows["yolo11n"]["inherited_from"] == "yolo11n"
    assert "starts from 100% of its parameters inherited from yolo11n" in r.stdout
    table = {row["model"]: row for row in csv.DictReader((run / "comparison.csv").open())}
    assert table["yolo11n"]["inherited_from"] == "yolo11n" and float(table["yolo11n"]["inherited"]) == 1.0
    assert float(table["yolo11n"]["map50_95_mean"]) > 0.01  # fine-tuned: one epoch from scratch scores ~0.000
    info = ultra.load_checkpoint(run / "found_n.pt")["ultranas"]
    assert info["pretrained"] == [pretrained["yolo11n"]] and 0 < info["inherited"] <= 1
    assert not list(run.glob("**/*inherited*.pt"))  # the trials', re-rank's and final starting weights: not kept
    assert list(run.glob("trials/*/rerank-e1-s0"))  # re-ranked (the Ultralytics trainer, from inherited weights)
