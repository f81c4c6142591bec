"""Which cheap score ranks designs where small objects dominate: mAP50-95 vs the loss scores, side by side.

One run: a generated set of small objects (default 9-20 px at 256 px, with unlabelled clutter), the hand-designed
points of the ``yolo`` space with P3-P5 and P2-P5 levels trained together by the fast trainer on the same batches
(same seed, same schedule), each scored by mAP50-95, mAP50, ``loss_drop`` and ``val_loss`` on the val split. A score
that ranks designs as mAP50-95 does has Kendall tau 1 with it; the JSON holds every number and the taus.

    python benchmarks/score_small_objects.py                       # 256 px, 12 epochs, ~13 min on 2 CPU cores
    python benchmarks/score_small_objects.py --imgsz 128 --epochs 12
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="yolo11n,yolo26n,yolov8n-p2,yolo26n-p2")
    ap.add_argument("--imgsz", type=int, default=256, help="training and validation size")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--object-size", default="0.03,0.08", metavar="LO,HI", help="object side as a share of 256 px (8-20 px)")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()

    from scipy.stats import kendalltau

    from ultranas.data_profile import profile_data
    from ultranas.estimation._fast_train import FastTrainer
    from ultranas.objectives._targets import _cpu_model
    from ultranas.space import load_space
    from ultranas.synthetic import make_synthetic

    space, points = load_space("yolo"), [p for p in a.points.split(",") if p]
    lo, hi = (float(x) for x in a.object_size.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic(Path(tmp) / "small", n_train=240, n_val=80, imgsz=256, seed=0, max_objects=6,
                              object_size=(lo, hi), clutter=3)
        train_split = profile_data(data, a.imgsz)["splits"]["train"]
        t0 = time.time()
        trainer = FastTrainer(data, imgsz=a.imgsz, epochs=a.epochs, batch=a.batch, seed=a.seed)
        results = trainer.train([space.render(space.point(p), 3) for p in points])
        wall = time.time() - t0
    rows = {p: {k: round(float(r[k]), 4) for k in ("map", "map50", "loss_drop", "val_loss", "train_loss")}
            for p, r in zip(points, results, strict=True)}
    maps = [rows[p]["map"] for p in points]
    out = {
        "what": "fast trainer, same batches and seed for every design; scores on the val split",
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "imgsz": a.imgsz, "epochs": a.epochs, "batch": a.batch,
        "seed": a.seed, "data": {"train": 240, "val": 80, "object_size_share": [lo, hi], "clutter": 3,
                                 "train_box_px": train_split["size_px"], "share_under_px": train_split["share_under_px"]},
        "designs": rows,
        "kendall_tau_vs_map": {"loss_drop": round(float(kendalltau(maps, [rows[p]["loss_drop"] for p in points])[0]), 3),
                               "minus_val_loss": round(float(kendalltau(maps, [-rows[p]["val_loss"] for p in points])[0]),
                                                       3)},
        "wall_s": round(wall, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"score_small_objects_{a.imgsz}px{a.tag}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
