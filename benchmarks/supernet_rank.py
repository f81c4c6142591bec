"""How well does the one-shot supernet rank designs on cards, and at what cost per design?

Side by side in one run, on the 16 designs of the committed cards calibration
(``rank_fidelity_cards_cpu_fast128_proxy64.json``: reference 128 px, 16 epochs, 3 seeds; the designs are re-drawn
with the calibration's seed and checked by parameter count):

- ``proxy``: today's best cheap proxy as calibrated (fast trainer, 64 px, 6 epochs, batch 16, ``loss_drop``), each
  design trained and timed;
- ``supernet``: ``--estimator supernet`` (trained once at 64 px for ``--epochs``, sandwich rule + in-place
  distillation), each design scored with inherited weights after batch-norm re-estimation (``map`` and
  ``val_loss`` from the same pass), timed; then ``--extra`` random designs of the space scored the same way, for
  the cost per design as more designs are scored.

Kendall tau over all designs and within the yolo11n cost band (+-20 % GFLOPs), with bootstrap 90 % intervals.
Cost per design = (supernet training + its scoring) / designs scored, against the proxy's mean seconds per design.

    python benchmarks/supernet_rank.py --epochs 30 --extra 100
    python benchmarks/supernet_rank.py --epochs 30 --extra 100 --proxy-from benchmarks/results/<earlier>.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CALIBRATION = RESULTS / "rank_fidelity_cards_cpu_fast128_proxy64.json"
DATA = ROOT.parent / "shared" / "datasets" / "cards" / "data.yaml"


def _candidates(space, designs, nc, workdir: Path):
    from ultranas.objectives._base import Candidate

    return [Candidate(g, space.render(g, nc), space.design_hash(g, nc), 64, workdir / name, train_imgsz=64)
            for name, g in designs]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--epochs", type=int, default=30, help="supernet training epochs")
    p.add_argument("--extra", type=int, default=100, help="random designs scored after the calibration's 16")
    p.add_argument("--proxy-from", default=None, help="take the proxy arm (tau, seconds per design) from an earlier "
                   "output of this script instead of training it again")
    p.add_argument("--workdir", default=str(ROOT / "runs" / "bench" / "supernet_rank"))
    p.add_argument("--out", default=str(RESULTS / "supernet_rank_cards_cpu.json"))
    a = p.parse_args()

    from ultranas import ultra
    from ultranas.data import class_names, safe_data_yaml
    from ultranas.estimation import make_estimator
    from ultranas.estimation._calib_designs import sample_designs
    from ultranas.estimation._rank_stats import rank_correlation
    from ultranas.space import load_space

    cal = json.loads(CALIBRATION.read_text())
    space, data = load_space("yolo"), str(safe_data_yaml(a.data))
    nc, workdir = len(class_names(data)), Path(a.workdir)
    designs = sample_designs(space, cal["designs"], 0, 10, 0.2, "yolo11n", cal["imgsz"])
    for (name, g), row in zip(designs, cal["designs_detail"], strict=True):
        assert name == row["design"] and ultra.count_params(ultra.build_model(space.render(g, nc))) == row["params"], \
            f"{name}: not the calibration's design"
    ref = [float(np.mean(r["reference_runs"])) for r in cal["designs_detail"]]
    center = cal["band"]["gflops"]
    band = [i for i, r in enumerate(cal["designs_detail"]) if abs(r["gflops"] - center) <= 0.2 * center]
    cands = _candidates(space, designs, nc, workdir / "designs")

    def taus(scores):
        return {"all": rank_correlation(scores, ref),
                "band": rank_correlation([scores[i] for i in band], [ref[i] for i in band])}

    out = {"data": a.data, "designs": len(designs), "band_size": len(band), "reference": CALIBRATION.name}
    if a.proxy_from:
        out["proxy"] = {**json.loads(Path(a.proxy_from).read_text())["proxy"], "from": Path(a.proxy_from).name}
    else:
        proxy = make_estimator("short-train", data, epochs=6, imgsz=64, batch=16, device="cpu", trainer="fast",
                               score="loss_drop", train_imgsz=64)
        scores, secs = [], []
        for c in cands:
            t0 = time.perf_counter()
            scores.append(proxy.estimate(c)["score"])
            secs.append(time.perf_counter() - t0)
        out["proxy"] = {"estimator": "short-train:loss_drop, fast trainer, 64 px, 6 epochs, batch 16",
                        "s_per_design": round(float(np.mean(secs)), 2), **taus(scores),
                        "scores": [round(s, 4) for s in scores]}
        print(json.dumps(out["proxy"]), flush=True)
    est = make_estimator("supernet", data, epochs=a.epochs, imgsz=64, batch=16, device="cpu", train_imgsz=64,
                         space=space, cache_dir=workdir, anchor="yolo11n")
    t0 = time.perf_counter()
    record = est.ensure_trained(64)
    train_s = time.perf_counter() - t0
    rows = []
    for c in cands:
        t0 = time.perf_counter()
        r = est.estimate(c)
        rows.append({"map": r["map"], "val_loss": r["val_loss"], "s": time.perf_counter() - t0})
    rng, extra_s = random.Random(1), []
    for i, g in enumerate(space.sample(rng) for _ in range(a.extra)):
        c = _candidates(space, [(f"extra{i}", g)], nc, workdir / "designs")[0]
        t0 = time.perf_counter()
        est.estimate(c)
        extra_s.append(time.perf_counter() - t0)
    score_s = [r["s"] for r in rows] + extra_s
    proxy_s = out.get("proxy", {}).get("s_per_design")
    per_design = {str(n): round((train_s + sum(score_s[:n])) / n, 2) for n in (16, len(score_s)) if n <= len(score_s)}
    out["supernet"] = {
        "epochs": a.epochs, "imgsz": 64, "batch": 16, "random_subnets": 2, "distill": 1.0,
        "train_s": round(train_s, 1), "train_s_recorded": record["train_s"], "epoch_losses": record["losses"],
        "params_m": round(sum(p.numel() for p in est.supernet.parameters()) / 1e6, 1),
        "score_s_mean": round(float(np.mean(score_s)), 2), "designs_scored": len(score_s),
        "s_per_design_amortised": per_design,
        "cost_vs_proxy": {n: round(v / proxy_s, 3) for n, v in per_design.items()} if proxy_s else None,
        "map": {**taus([r["map"] for r in rows]), "scores": [round(r["map"], 4) for r in rows]},
        "val_loss": {**taus([-r["val_loss"] for r in rows]), "scores": [round(r["val_loss"], 4) for r in rows]},
    }
    out["calibrated_proxy_in_file"] = {"band_tau": cal["estimators"]["short-train:loss_drop"]["band"]["tau"],
                                       "all_tau": cal["estimators"]["short-train:loss_drop"]["all"]["tau"]}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
