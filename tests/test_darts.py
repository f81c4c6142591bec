"""``--strategy darts``: the relaxed block-choice search returns a design of the space under its latency limit, its
latency penalty steers the architecture weights, it trains on the shared loop (callbacks, schedule, stop), and a
real search starts from its design."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
import yaml

from ultranas.objectives._lut import LatencyLUT
from ultranas.space import load_space
from ultranas.supernet._darts import DartsSearch


def test_darts_returns_a_design_of_the_space_under_its_latency_limit(tiny_space, coco8):
    space = load_space(tiny_space)
    lut = LatencyLUT("torch-cpu", 64)
    anchor = space.point("tiny")
    limit = {**anchor, **{d: space.decisions[d][0] for d in ("N4.block", "N3.block", "P4.block")}}
    search = DartsSearch(space, anchor, 80, lut, penalty=1.0, limit=limit)
    assert set(search.positions) == {d for d, c in space.decisions.items() if d.endswith(".block") and len(c) > 1}
    result = search.run(str(coco8), 32, 2, 2, progress=False)
    g = result["genotype"]
    assert space.check(g) == (True, "")
    assert all(g[d] == anchor[d] for d in space.decisions if d not in search.positions)  # widths, depths kept
    assert lut.predict(space.render(g, 80)) <= search.latency_limit_ms
    assert all(abs(sum(a) - 1) < 1e-3 for a in result["alpha"].values())


def test_a_heavy_latency_penalty_moves_every_position_to_its_fastest_block(tiny_space, coco8):
    space = load_space(tiny_space)
    search = DartsSearch(space, space.point("tiny"), 80, LatencyLUT("torch-cpu", 64), penalty=1000.0)
    result = search.run(str(coco8), 32, 3, 2, progress=False)
    for d, ms in result["block_ms"].items():
        fastest = min(range(len(ms)), key=ms.__getitem__)
        if sorted(ms)[1] > 1.1 * ms[fastest]:  # a clear winner on latency
            assert result["genotype"][d] == search.positions[d][fastest], (d, ms, result["alpha"][d])
            assert max(result["alpha"][d]) == result["alpha"][d][fastest]


def test_darts_trains_on_the_shared_loop_and_its_callbacks_see_every_epoch(tiny_space, coco8):
    """Weights and every position's alpha move, on disjoint halves of the split; the weight optimizer follows the
    loop's schedule while alpha's keeps its own rate; a callback's ``stop`` ends the search with a valid design."""
    space = load_space(tiny_space)
    anchor = space.point("tiny")
    search = DartsSearch(space, anchor, 80, LatencyLUT("torch-cpu", 64), penalty=1.0)
    seen, lrs, at_start, moved = [], [], {}, {}
    for event in ("on_train_start", "on_train_epoch_start", "on_train_epoch_end", "on_fit_epoch_end", "on_train_end"):
        search.add_callback(event, lambda t, e=event: seen.append((e, t.epoch)))
    search.add_callback("on_train_batch_end", lambda t: lrs.append(
        (t.ni, t.weight_optimizer.param_groups[0]["lr"], t.arch_optimizer.param_groups[0]["lr"])))
    search.add_callback("on_train_batch_end", lambda t: seen.append(
        ("batch", t.batch_images.tolist(), t.arch_batch_images.tolist())))
    search.add_callback("on_train_start", lambda t: at_start.update(
        {n: p.detach().clone() for n, p in t.model.named_parameters()}))
    search.add_callback("on_train_end", lambda t: moved.update(
        {n: not torch.equal(p.detach(), at_start[n]) for n, p in t.model.named_parameters()}))
    search.add_callback("on_train_end", lambda t: seen.append(("halves", t.epoch_images.tolist(),
                                                               t.arch_images.tolist(), t.seen, len(t.data))))
    search.add_callback("on_train_end", lambda t: seen.append(("shared", {id(p) for p in t.arch} & {
        id(p) for group in t.weight_optimizer.param_groups for p in group["params"]})))
    search.add_callback("on_fit_epoch_end", lambda t: setattr(t, "stop", t.epoch == 1))
    result = search.run(str(coco8), 32, 3, 2, progress=False)

    assert [e for e in seen if e[0] == "on_train_start"] == [("on_train_start", 0)]
    for event in ("on_train_epoch_start", "on_train_epoch_end", "on_fit_epoch_end"):
        assert [epoch for e, epoch, *_ in seen if e == event] == [0, 1], event  # once per epoch, stopped after 2
    assert result["epochs"] == len(result["losses"]) == 2
    _, weight_half, arch_half, images_seen, n = seen[-2]
    assert seen[-1] == ("shared", set())  # alpha is the architecture step's alone
    assert sorted(weight_half + arch_half) == list(range(n)) and len(weight_half) == n // 2
    assert images_seen == 2 * n  # both halves, both epochs
    for _, weight_batch, arch_batch in (e for e in seen if e[0] == "batch"):
        assert set(weight_batch) <= set(weight_half) and set(arch_batch) <= set(arch_half)
    steps = [ni for ni, _, _ in lrs]
    assert steps == list(range(len(steps))) and len(steps) % 2 == 0
    weight_lrs = [lr for _, lr, _ in lrs]
    assert weight_lrs == sorted(weight_lrs, reverse=True) and weight_lrs[-1] < weight_lrs[0] <= 0.02  # decay
    assert all(arch_lr == 3e-2 for _, _, arch_lr in lrs)

    alphas = [n for n in moved if n.endswith(".alpha")]
    assert len(alphas) == len(search.positions) and all(moved[n] for n in alphas)
    for d, i in search.layer.items():  # every candidate block of every position trains
        for k in range(len(search.positions[d])):
            assert any(moved[n] for n in moved if n.startswith(f"model.{i}.ops.{k}.")), (d, k)
    g = result["genotype"]
    assert space.check(g) == (True, "")
    assert g == {**anchor, **{d: c[max(range(len(c)), key=result["alpha"][d].__getitem__)]
                              for d, c in search.positions.items()}}  # no limit: argmax alpha
    with pytest.raises(ValueError, match="unknown event"):
        search.add_callback("on_epoch", print)


def test_search_with_the_darts_strategy_starts_from_its_design(tiny_space, coco8, tmp_path):
    """``--focus front``: with latency bands, a DARTS design timed just above its band (it is discretised under the
    reference's latency from the per-layer table, then timed for real) is rightly screened out, not trained first."""
    proc = subprocess.run([sys.executable, "-m", "ultranas", "search", "--data", str(coco8), "--space",
                           str(tiny_space), "--strategy", "darts", "--trials", "3", "--epochs", "1", "--imgsz", "64",
                           "--proxy-imgsz", "32", "--batch", "2", "--no-warm-start", "--no-final", "--references",
                           "tiny", "--latency-target", "torch-cpu", "--trainer", "fast", "--focus", "front",
                           "--project", str(tmp_path / "p")], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "p" / "exp"
    darts = json.loads((run / "darts" / "darts.json").read_text())
    rows = list(csv.DictReader((run / "leaderboard.csv").open()))
    first = min(rows, key=lambda r: int(r["trial"]))
    assert yaml.safe_load((run / "trials" / first["trial"] / "model.yaml").read_text()) == \
        load_space(tiny_space).render(darts["genotype"], 80)
