"""``--strategy darts``: the relaxed block-choice search returns a design of the space under its latency limit, its
latency penalty steers the architecture weights, and a real search starts from its design."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

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
