"""Ranking fidelity of cheap estimators against a seed-averaged reference training, on real learnable data.

Prints JSON and writes benchmarks/results/rank_fidelity_<data>_<device>.json. Example (CPU, small images):
    python benchmarks/rank_fidelity.py --data ../shared/datasets/cards --n 12 --imgsz 64 --reference-epochs 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ultranas.estimation.calibrate import calibrate

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cards"))
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--reference-epochs", type=int, default=10)
    p.add_argument("--proxy-epochs", type=int, default=1)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--band-samples", type=int, default=4)
    p.add_argument("--proxy", default="short-train,zero-cost:mae_entropy,zero-cost:synflow,zero-cost:zico")
    p.add_argument("--device", default="cpu")
    p.add_argument("--trainer", default="ultralytics", choices=("ultralytics", "fast"))
    p.add_argument("--proxy-imgsz", type=int, default=None)
    p.add_argument("--reference-cache", default=None, help="JSON-lines cache of reference runs (reused if present)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    t0 = time.time()
    data = Path(a.data)
    report = calibrate(data=str(data / "data.yaml" if data.is_dir() else data), n=a.n, imgsz=a.imgsz,
                       reference_epochs=a.reference_epochs, proxy_epochs=a.proxy_epochs, seeds=a.seeds,
                       band_samples=a.band_samples, proxy=a.proxy, device=a.device, batch=16, trainer=a.trainer,
                       proxy_imgsz=a.proxy_imgsz, reference_cache=a.reference_cache,
                       project="runs/benchmarks", name="rank_fidelity")
    summary = {k: v for k, v in report.items() if k != "rows"}
    summary["designs_detail"] = [{k: r[k] for k in ("design", "gflops", "params", "reference_runs", "proxy")}
                                 for r in report["rows"]]
    summary["wall_s"] = round(time.time() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = data.parent.name if data.is_file() else data.name
    out = RESULTS / f"rank_fidelity_{name}_{a.device}{a.tag}.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
