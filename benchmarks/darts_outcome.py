"""Does DARTS' block choice beat random block choices of the same latency?

On cards: ``DartsSearch`` around yolo11n (its widths and depths kept; every block position relaxed; ``--epochs`` at
64 px, latency penalty 1.0 from the per-layer table on onnxruntime-cpu at ``--imgsz``, limit: yolo11n's latency),
then ``--randoms`` designs with random blocks at the same positions whose table-predicted latency is within
+-``--tolerance`` of DARTS' design, and yolo11n itself. Each is retrained from scratch with seeds 0, 1, 2 at the
calibration reference's fidelity (fast trainer, 128 px, 16 epochs: the ranking the cheap estimators are judged by).

    python benchmarks/darts_outcome.py --epochs 10 --randoms 3
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
DATA = ROOT.parent / "shared" / "datasets" / "cards" / "data.yaml"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--epochs", type=int, default=10, help="DARTS epochs")
    p.add_argument("--randoms", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--imgsz", type=int, default=192, help="deploy size of the latency table")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arch-lr", type=float, default=3e-2, help="Adam learning rate of the architecture weights")
    p.add_argument("--others-from", default=None, help="retrain only DARTS' design; take the random designs and "
                   "yolo11n (same fidelity and seeds) from an earlier output of this script")
    p.add_argument("--out", default=str(RESULTS / "darts_outcome_cards_cpu.json"))
    a = p.parse_args()

    from ultranas.data import class_names, safe_data_yaml
    from ultranas.estimation._fast_train import FastTrainer
    from ultranas.objectives._lut import LatencyLUT
    from ultranas.space import load_space
    from ultranas.supernet._darts import DartsSearch

    space, data = load_space("yolo"), str(safe_data_yaml(a.data))
    nc, anchor = len(class_names(data)), load_space("yolo").point("yolo11n")
    lut = LatencyLUT("onnxruntime-cpu", a.imgsz)
    search = DartsSearch(space, anchor, nc, lut, penalty=1.0, limit=anchor)
    t0 = time.perf_counter()
    darts = search.run(data, 64, a.epochs, 16, arch_lr=a.arch_lr)
    darts_s = time.perf_counter() - t0
    g_darts = darts["genotype"]

    def ms(g):
        return lut.predict(space.render(g, nc))

    target, rng, randoms, tries = ms(g_darts), random.Random(0), [], 0
    earlier = json.loads(Path(a.others_from).read_text()) if a.others_from else None
    while not earlier and len(randoms) < a.randoms and tries < 5000:
        tries += 1
        g = {**anchor, **{d: rng.choice(c) for d, c in search.positions.items()}}
        if g != g_darts and g not in randoms and abs(ms(g) / target - 1) <= a.tolerance:
            randoms.append(g)
    designs = {"darts": g_darts, **{f"random{i}": g for i, g in enumerate(randoms)}, "yolo11n": anchor}
    if earlier:  # the other designs as the earlier run trained them (same fidelity and seeds)
        randoms = [{**anchor, **r["blocks"]} for n, r in earlier["designs"].items() if n.startswith("random")]
        designs = {"darts": g_darts}
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = {name: [] for name in designs}
    t0 = time.perf_counter()
    for seed in seeds:
        trainer = FastTrainer(data, 128, 16, 16, "cpu", seed)
        for name, res in zip(designs, trainer.train([space.render(g, nc) for g in designs.values()]), strict=True):
            runs[name].append(round(res["map"], 4))
        print(json.dumps({"seed": seed, **{n: r[-1] for n, r in runs.items()}}), flush=True)
    retrain_s = time.perf_counter() - t0
    rows = {name: {"blocks": {d: g[d] for d in search.positions}, "lut_ms": round(ms(g), 3), "map_runs": runs[name],
                   "map_mean": round(float(np.mean(runs[name])), 4), "map_sd": round(float(np.std(runs[name], ddof=1)), 4)}
            for name, g in designs.items()}
    if earlier:
        rows.update({n: r for n, r in earlier["designs"].items() if n != "darts"})
    rand_means = [rows[f"random{i}"]["map_mean"] for i in range(len(randoms))]
    pooled_sd = float(np.sqrt(np.mean([r["map_sd"] ** 2 for r in rows.values()])))
    out = {"data": a.data, "anchor": "yolo11n", "arch_lr": a.arch_lr, "others_from": a.others_from, "darts": {k: v for k, v in darts.items() if k != "genotype"},
           "darts_epochs": a.epochs, "darts_imgsz": 64, "darts_s": round(darts_s, 1), "latency_table": lut.target,
           "latency_imgsz": a.imgsz, "retrain": "fast trainer, 128 px, 16 epochs, batch 16", "seeds": seeds,
           "retrain_s": round(retrain_s, 1), "random_tries": tries, "designs": rows,
           "darts_minus_random_mean": round(rows["darts"]["map_mean"] - float(np.mean(rand_means)), 4)
           if rand_means else None,
           "darts_minus_yolo11n": round(rows["darts"]["map_mean"] - rows["yolo11n"]["map_mean"], 4),
           "pooled_seed_sd": round(pooled_sd, 4)}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
