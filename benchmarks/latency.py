"""Latency objective: measurement repeatability, LUT predictor accuracy, and GFLOPs as a latency proxy.

    python benchmarks/latency.py                          # onnxruntime-cpu, imgsz 160, 30 test + 8 calibration designs
    python benchmarks/latency.py --target torch-cpu --n 30 --imgsz 128 --out benchmarks/results/latency_torch.json

Designs are sampled from the yolo space. Every design is measured ``--rounds`` times, round-robin (so a busy
spell on the machine hits different designs, not one design's repeats); the per-design CV over rounds is the
repeatability and the median over rounds is the ground truth. The LUT and a linear latency~GFLOPs fit are both
calibrated on the ``--calib`` designs only and scored on the other ``--n`` designs (MAPE, Kendall tau).
Prints the JSON and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from ultranas import ultra  # noqa: E402
from ultranas.fsutil import atomic_write_json  # noqa: E402
from ultranas.objectives._lut import LatencyLUT  # noqa: E402
from ultranas.objectives.latency import baseline_latencies, host_fingerprint, measure_latency  # noqa: E402
from ultranas.space import load_space  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def kendall_tau(a, b) -> float:
    """Kendall's tau-a (pairs tied in either list count as neither concordant nor discordant)."""
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s / (n * (n - 1) / 2)) if n > 1 else float("nan")


def mape(pred, true) -> float:
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    return float(np.mean(np.abs(pred - true) / true))


def relative_fit(x, y) -> tuple[float, float]:
    """(scale, offset) minimizing the squared relative error of ``scale * x + offset`` against ``y``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    (a, b), *_ = np.linalg.lstsq(np.stack([x / y, 1.0 / y], axis=1), np.ones_like(y), rcond=None)
    return float(a), float(b)


def sample_designs(space, count: int, rng: random.Random, nc: int, imgsz: int, seen: set) -> list[dict]:
    """``count`` distinct designs that build (a design that does not is skipped and counted)."""
    out = []
    while len(out) < count:
        g = space.sample(rng)
        h = space.design_hash(g, nc)
        if h in seen:
            continue
        seen.add(h)
        md = space.render(g, nc)
        try:
            model = ultra.build_model(md)
        except Exception as e:  # a space bug, not a latency one: reported, not fatal
            print(f"skipped design {h}: does not build ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        out.append({"hash": h, "model": md, "gflops": ultra.gflops(model, imgsz), "params": ultra.count_params(model)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="onnxruntime-cpu")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--n", type=int, default=30, help="test designs (predictor scored on these)")
    ap.add_argument("--calib", type=int, default=8, help="calibration designs (LUT and GFLOPs fits)")
    ap.add_argument("--rounds", type=int, default=5, help="measurements of each design, round-robin")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "latency_cpu.json"))
    args = ap.parse_args()
    t_start = time.perf_counter()
    space = load_space("yolo")
    rng, seen = random.Random(args.seed), set()
    calib = sample_designs(space, args.calib, rng, args.nc, args.imgsz, seen)
    test = sample_designs(space, args.n, rng, args.nc, args.imgsz, seen)
    designs = calib + test

    # (a) repeatability: every design measured --rounds times, round-robin
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for d in designs:
            m = measure_latency(d["model"], args.imgsz, args.target, threads=args.threads)
            d.setdefault("runs", []).append(m["median_ms"])
            d.setdefault("within_cv", []).append(m["cv"])
        print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    measure_s = (time.perf_counter() - t0) / (args.rounds * len(designs))
    for d in designs:
        d["ms"] = statistics.median(d["runs"])
        d["cv"] = statistics.pstdev(d["runs"]) / statistics.fmean(d["runs"])
    cvs = [d["cv"] for d in designs]

    # (b) LUT predictor, calibrated on the calibration designs only
    lut = LatencyLUT(args.target, args.imgsz, threads=args.threads)
    t0 = time.perf_counter()
    fit = lut.calibrate([d["model"] for d in calib], measured=[d["ms"] for d in calib])
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for d in test:
        d["lut_ms"] = lut.predict(d["model"])
    predict_s = (time.perf_counter() - t0) / len(test)
    t0 = time.perf_counter()
    for d in test[:5]:  # with a full table: no profiling left, the cost of a prediction alone
        lut.predict(d["model"])
    warm_predict_s = (time.perf_counter() - t0) / min(5, len(test))
    y = [d["ms"] for d in test]
    lut_pred = [d["lut_ms"] for d in test]

    # (c) GFLOPs alone: linear fit on the same calibration designs, and (optimistic) on the test designs themselves
    a, b = relative_fit([d["gflops"] for d in calib], [d["ms"] for d in calib])
    gf_pred = [a * d["gflops"] + b for d in test]
    a2, b2 = relative_fit([d["gflops"] for d in test], y)
    gf_in = [a2 * d["gflops"] + b2 for d in test]

    baselines = baseline_latencies(space, args.target, args.imgsz, args.nc, threads=args.threads)
    ape = [abs(p - t) / t for p, t in zip(lut_pred, y, strict=True)]
    out = {
        "config": {**vars(args), "out": Path(args.out).name, "space": "yolo", "host": host_fingerprint()},
        "repeatability": {
            "goal": "cv <= 0.05", "rounds": args.rounds, "designs": len(designs),
            "median_cv": statistics.median(cvs), "mean_cv": statistics.fmean(cvs), "max_cv": max(cvs),
            "share_cv_le_5pct": sum(c <= 0.05 for c in cvs) / len(cvs),
            "median_within_measurement_cv": statistics.median(c for d in designs for c in d["within_cv"]),
            "seconds_per_measurement": round(measure_s, 3),
        },
        "lut": {
            "goal": "mape <= 0.10", "test_designs": len(test), "calibration_designs": len(calib),
            "profile_target": lut.profile_target, "scale": fit["scale"], "offset_ms": fit["offset"],
            "calibration_mape": fit["mape"], "mape": mape(lut_pred, y), "median_ape": float(np.median(ape)),
            "max_ape": float(max(ape)), "kendall_tau": kendall_tau(lut_pred, y), "layers_in_table": len(lut.table),
            "profile_s_calibration": round(fill_s, 1), "seconds_per_prediction_filling": round(predict_s, 3),
            "seconds_per_prediction_full_table": round(warm_predict_s, 3),
        },
        "gflops_linear": {
            "mape": mape(gf_pred, y), "kendall_tau": kendall_tau([d["gflops"] for d in test], y),
            "mape_fit_on_test_itself": mape(gf_in, y),
        },
        "params_kendall_tau": kendall_tau([d["params"] for d in test], y),
        "baselines_ms": {k: round(v["median_ms"], 3) for k, v in baselines.items()},
        "designs": [{"hash": d["hash"], "role": "calib" if i < len(calib) else "test", "gflops": round(d["gflops"], 3),
                     "params": d["params"], "runs_ms": [round(v, 3) for v in d["runs"]], "cv": round(d["cv"], 4),
                     **({"lut_ms": round(d["lut_ms"], 3)} if "lut_ms" in d else {})}
                    for i, d in enumerate(designs)],
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    atomic_write_json(args.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "designs"}, indent=2, default=str))


if __name__ == "__main__":
    main()
