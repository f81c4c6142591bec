"""The one-shot supernet: every design of the ``yolo`` space maps onto its shared weights with consistent channel
semantics (a subnet computes what the widest design computes with the other channels switched off), an exported
subnet is a plain Ultralytics model that reproduces the supernet's forward, a killed training resumes to the same
weights, and ``--estimator supernet`` runs a real search."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ultranas import ultra
from ultranas.space import load_space
from ultranas.supernet import Supernet, load_inherited
from ultranas.supernet._layout import named_tensors

ROOT = Path(__file__).resolve().parent.parent
@pytest.fixture(scope="module")
def yolo_supernet() -> Supernet:
    space = load_space("yolo")
    net = Supernet(space, 6, space.point("yolo11n"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # statistics and shifts that are not all alike, so a wrong channel shows
        for name, t in named_tensors(net).items():
            if name.endswith("running_mean") or name.endswith("bn.bias"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
    return net


def _heads_keep_their_size(g: dict) -> bool:
    """Attention with 64 channels per head at every width (C2PSA, C3k2 with PSA): else the heads themselves differ."""
    return (g["attention"] == "none" or g["P5.width"] % 128 == 0) and \
        (g["N5out.block"] != "C3k2-k-attn" or g["N5out.width"] % 128 == 0)


def test_a_subnet_computes_the_widest_design_with_the_other_channels_off(yolo_supernet):
    """For the hand-designed points and random designs: the design's model with weights cut from the supernet gives
    the same output as the widest design of the same depths and paths in which every channel the design does not
    use is zeroed (weights, batch-norm shift and statistics). A wrong channel map (a concat offset, a chunk laid out
    flat, a residual add over different channels) breaks it."""
    net, space = yolo_supernet, yolo_supernet.space
    rng = random.Random(3)
    designs = list(space.points.values()) + [g for g in (space.sample(rng) for _ in range(40))
                                              if _heads_keep_their_size(g)][:10]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for g in designs:
        wide = {d: v if d.endswith(".n") or d == "attention_n" else w  # widest, same depths
                for (d, v), w in zip(g.items(), net.extreme(g, largest=True).values())}
        _, plan = net.subnet(g)
        model, widest = net.extract(g).eval(), net.extract(wide).eval()
        full = named_tensors(widest)
        with torch.no_grad():
            for name, _, idx in plan:
                t = full[name]
                if t.ndim and idx[0] is not None:
                    off = torch.ones(t.shape[0], dtype=torch.bool)
                    off[idx[0]] = False
                    t[off] = 1.0 if name.endswith("running_var") else 0.0
            y, y_wide = model(x)[0], widest(x)[0]
        assert y.shape == y_wide.shape
        assert (y - y_wide).abs().max() <= 1e-5 * y.abs().max(), space.design_hash(g)


def test_every_design_maps_and_the_supernet_holds_each_path_once(yolo_supernet):
    net, space = yolo_supernet, yolo_supernet.space
    rng = random.Random(4)
    for g in [space.sample(rng) for _ in range(25)]:
        _, plan = net.subnet(g)
        assert {n for n, _, _ in plan} == set(named_tensors(net.subnet(g)[0]))
    keys = set(net.store.keys())
    for d in ("P3.block", "P4.down", "N5out.block", "spp", "attention"):
        for choice in space.decisions[d]:
            assert choice == "none" or f"{d.replace('.', '_')}:{choice}" in keys
    assert {"detect:detect", "detect:detect-v8", "detect:e2e", "detect:e2e-v8"} <= keys


def test_exported_subnet_is_a_plain_ultralytics_model_with_the_supernets_outputs(yolo_supernet, tmp_path):
    net, space = yolo_supernet, yolo_supernet.space
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    for name, g in [("yolo11n", space.point("yolo11n")), ("yolo26n", space.point("yolo26n")),
                    ("random", space.sample(random.Random(7)))]:
        model_yaml, weights = net.export(g, tmp_path / name)
        rebuilt = load_inherited(ultra.build_model(yaml.safe_load(model_yaml.read_text())), weights).eval()
        sub, _ = net.subnet(g)
        sub.eval()
        with torch.no_grad():
            expected = net(g, x)[0]  # the supernet's own forward in that configuration
            got = rebuilt(x)[0]
        assert (got - expected).abs().max() <= 1e-4, name


def _train(space_path: Path, data: Path, epochs: int, checkpoint: Path, kill_after_saves: int = 0) -> dict:
    """A tiny supernet training on ``data``; with ``kill_after_saves`` the process kills itself with SIGKILL right
    after that many checkpoints (run it in a subprocess)."""
    from ultranas import fsutil
    from ultranas.estimation._device_data import DeviceDataset
    from ultranas.supernet import _train as train_mod

    if kill_after_saves:
        real, saves = fsutil.atomic_torch_save, []

        def save_then_die(obj, path):
            real(obj, path)
            saves.append(path)
            if len(saves) == kill_after_saves:
                os.kill(os.getpid(), 9)

        train_mod.atomic_torch_save = save_then_die
    torch.manual_seed(0)
    space = load_space(space_path)
    ds = DeviceDataset(data, 32, "cpu", "train")
    net = Supernet(space, ds.nc, space.point("tiny"))
    trainer = train_mod.SupernetTrainer(net, ds, epochs=epochs, batch=2, checkpoint=checkpoint, progress=False)
    record = trainer.train()
    return {"record": record, "store": {k: v.clone() for k, v in net.store.state_dict().items()}}


def test_killed_supernet_training_resumes_to_the_same_weights(tiny_space, coco8, tmp_path):
    ckpt = tmp_path / "supernet.pt"
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from test_supernet import _train; "
            f"from pathlib import Path; _train(Path({str(tiny_space)!r}), Path({str(coco8)!r}), 3, "
            f"Path({str(ckpt)!r}), kill_after_saves=2)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1  # two epochs done and saved, then killed
    resumed = _train(tiny_space, coco8, 3, ckpt)
    assert resumed["record"]["resumed_at"] == 2 and len(resumed["record"]["losses"]) == 3
    straight = _train(tiny_space, coco8, 3, tmp_path / "straight.pt")
    assert straight["record"]["resumed_at"] == 0
    for k, v in straight["store"].items():
        assert torch.allclose(resumed["store"][k].float(), v.float(), atol=1e-6), k
    assert resumed["record"]["losses"] == straight["record"]["losses"]


def test_search_with_the_supernet_estimator_and_inherited_final_weights(tiny_space, coco8, tmp_path):
    """``--estimator supernet`` through the CLI: the supernet is trained once into the run directory and every trial
    is scored from it; ``--final-init supernet`` starts each final retrain from the design's inherited weights."""
    proc = subprocess.run([sys.executable, "-m", "ultranas", "search", "--data", str(coco8), "--space", str(tiny_space),
                           "--estimator", "supernet", "--epochs", "2", "--trials", "4", "--imgsz", "64",
                           "--proxy-imgsz", "32", "--batch", "2", "--strategy", "random", "--final-epochs", "1",
                           "--final-seeds", "0", "--final-init", "supernet", "--references", "tiny",
                           "--latency-target", "torch-cpu", "--project", str(tmp_path / "p")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "p" / "exp"
    assert (run / "supernet-32px" / "supernet.pt").is_file()
    rows = list(csv.DictReader((run / "leaderboard.csv").open()))
    assert len(rows) >= 4 and all(r["map"] != "" for r in rows)
    inherited = sorted((run / "final").glob("*.inherited.pt"))
    assert inherited, "no inherited weights for the final stage"
    trained = [yaml.safe_load(p.read_text()) for p in (run / "final").glob("*-s0-*/args.yaml")]
    assert trained and all(Path(a["pretrained"]).name.endswith(".inherited.pt") for a in trained)
