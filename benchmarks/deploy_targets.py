"""Do latency targets agree? The same designs timed on onnxruntime-cpu, openvino-cpu, openvino-cpu-int8, ncnn-cpu
and torch-cpu, side by side in one run, and the per-layer LUT predictor's error on each.

    python benchmarks/deploy_targets.py --imgsz 192 --out benchmarks/results/deploy_targets_cpu.json

Designs: the yolo space's six named points plus random ones (``--n`` in all). Each design is timed on every target
``--rounds`` times, round-robin over designs (design-major, so a busy spell hits all targets of a design alike);
the median is the design's latency. Reported:
- Kendall tau (90 % bootstrap interval) between every pair of targets, and of GFLOPs with each target;
- the question a search asks, "is this design no slower than yolo11n?": how often onnxruntime-cpu (the default
  target) answers it as the deploy target does, and the spread of design/yolo11n ratios between the two;
- per target, a LUT calibrated on ``--calib`` random designs and scored on the others (MAPE, tau), profiling time.
Prints the JSON, writes it to ``--out`` and a scatter plot beside it (``.png``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402
from latency import kendall_tau, mape, sample_designs  # noqa: E402

from ultranas import ultra  # noqa: E402
from ultranas.estimation._rank_stats import rank_correlation  # noqa: E402
from ultranas.fsutil import atomic_savefig, atomic_write_json  # noqa: E402
from ultranas.objectives._lut import LatencyLUT  # noqa: E402
from ultranas.objectives.latency import host_fingerprint, load_seen, measure_latency  # noqa: E402
from ultranas.space import load_space  # noqa: E402

TARGETS = ("onnxruntime-cpu", "openvino-cpu", "openvino-cpu-int8", "ncnn-cpu", "torch-cpu")
PROXY = "onnxruntime-cpu"  # the default CPU target: what a search uses unless told otherwise


def named_designs(space, nc: int, imgsz: int) -> list[dict]:
    out = []
    for name, g in space.points.items():
        md = space.render(g, nc)
        model = ultra.build_model(md)
        out.append({"hash": space.design_hash(g, nc), "name": name, "model": md, "gflops": ultra.gflops(model, imgsz),
                    "params": ultra.count_params(model)})
    return out


def measure_all(designs: list[dict], targets: tuple[str, ...], imgsz: int, rounds: int, threads: int) -> float:
    t0 = time.perf_counter()
    for r in range(rounds):
        for i, d in enumerate(designs):
            for t in targets:
                m = measure_latency(d["model"], imgsz, t, threads=threads, max_time_s=1.0)
                d.setdefault("runs", {}).setdefault(t, []).append(m["median_ms"])
            print(f"round {r + 1}/{rounds}: design {i + 1}/{len(designs)} ({time.perf_counter() - t0:.0f} s, "
                  f"load {load_seen()})", file=sys.stderr, flush=True)
    for d in designs:
        d["ms"] = {t: statistics.median(v) for t, v in d["runs"].items()}
    return time.perf_counter() - t0


def agreement(designs: list[dict], target: str, ref: dict) -> dict:
    """How the default target's "no slower than yolo11n?" compares with ``target``'s, over the designs."""
    pr = [d["ms"][PROXY] / ref["ms"][PROXY] for d in designs if d is not ref]
    tr = [d["ms"][target] / ref["ms"][target] for d in designs if d is not ref]
    same = [(a <= 1.0) == (b <= 1.0) for a, b in zip(pr, tr, strict=True)]
    near = [(a <= 1.0) == (b <= 1.0) for a, b in zip(pr, tr, strict=True) if 0.67 <= a <= 1.5]
    logd = [abs(math.log(b / a)) for a, b in zip(pr, tr, strict=True)]
    return {"same_verdict_share": round(sum(same) / len(same), 3),
            "same_verdict_share_near_reference": round(sum(near) / len(near), 3) if near else None,
            "designs_near_reference": len(near),
            "ratio_vs_default_median_abs_log": round(statistics.median(logd), 3),
            "ratio_vs_default_max_factor": round(math.exp(max(logd)), 3)}


def lut_scores(target: str, calib: list[dict], test: list[dict], imgsz: int, threads: int) -> dict:
    lut = LatencyLUT(target, imgsz, threads=threads)
    t0 = time.perf_counter()
    fit = lut.calibrate([d["model"] for d in calib], measured=[d["ms"][target] for d in calib])
    pred = [lut.predict(d["model"]) for d in test]
    y = [d["ms"][target] for d in test]
    return {"mape": round(mape(pred, y), 4), "median_ape": round(float(np.median(np.abs(np.subtract(pred, y)) / y)), 4),
            "kendall_tau": round(kendall_tau(pred, y), 3), "calibration_mape": round(fit["mape"], 4),
            "test_designs": len(test), "calibration_designs": len(calib), "layers_in_table": len(lut.table),
            "profile_and_predict_s": round(time.perf_counter() - t0, 1)}


def plot(designs: list[dict], ref: dict, targets: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [t for t in targets if t != PROXY]
    fig, axes = plt.subplots(1, len(others), figsize=(4 * len(others), 4), squeeze=False)
    x = [d["ms"][PROXY] / ref["ms"][PROXY] for d in designs]
    for ax, t in zip(axes[0], others, strict=True):
        y = [d["ms"][t] / ref["ms"][t] for d in designs]
        ax.scatter(x, y, s=18)
        for d, a, b in zip(designs, x, y, strict=True):
            if d.get("name"):
                ax.annotate(d["name"], (a, b), fontsize=7)
        lim = [min(x + y) * 0.9, max(x + y) * 1.1]
        ax.plot(lim, lim, "k:", lw=0.8)
        ax.axvline(1.0, color="grey", lw=0.5), ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel(f"latency / yolo11n's on {PROXY}"), ax.set_ylabel(f"on {t}")
        ax.set_title(f"tau {kendall_tau(x, y):.2f}")
    fig.suptitle("Same designs, different runtimes (1 thread); off-diagonal = the default target misjudges")
    atomic_savefig(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imgsz", type=int, default=192)
    ap.add_argument("--n", type=int, default=20, help="designs in all (the six named points + random ones)")
    ap.add_argument("--calib", type=int, default=6, help="random designs the LUTs are calibrated on")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--out", default=str(HERE / "results" / "deploy_targets_cpu.json"))
    args = ap.parse_args()
    targets = tuple(args.targets.split(","))
    t_start = time.perf_counter()
    space = load_space("yolo")
    named = named_designs(space, args.nc, args.imgsz)
    seen = {d["hash"] for d in named}
    randoms = sample_designs(space, args.n - len(named), random.Random(args.seed), args.nc, args.imgsz, seen)
    designs = named + randoms
    measure_s = measure_all(designs, targets, args.imgsz, args.rounds, args.threads)
    ref = next(d for d in designs if d.get("name") == "yolo11n")
    ms = {t: [d["ms"][t] for d in designs] for t in targets}
    calib, test = randoms[:args.calib], named + randoms[args.calib:]
    out = {
        "config": {**vars(args), "out": Path(args.out).name, "space": "yolo", "host": host_fingerprint()},
        "kendall_tau": {f"{a} vs {b}": rank_correlation(ms[a], ms[b]) for a, b in itertools.combinations(targets, 2)},
        "gflops_kendall_tau": {t: round(kendall_tau([d["gflops"] for d in designs], ms[t]), 3) for t in targets},
        "vs_yolo11n_verdict_against_default": {t: agreement(designs, t, ref) for t in targets if t != PROXY},
        "lut": {t: lut_scores(t, calib, test, args.imgsz, args.threads) for t in targets},
        "yolo11n_ms": {t: round(ref["ms"][t], 3) for t in targets},
        "designs": [{"hash": d["hash"], "name": d.get("name"), "gflops": round(d["gflops"], 3), "params": d["params"],
                     "ms": {t: round(v, 3) for t, v in d["ms"].items()}} for d in designs],
        "measure_s": round(measure_s, 1), "wall_s": round(time.perf_counter() - t_start, 1),
    }
    atomic_write_json(args.out, out)
    plot(designs, ref, targets, Path(args.out).with_suffix(".png"))
    print(json.dumps({k: v for k, v in out.items() if k != "designs"}, indent=2, default=str))


if __name__ == "__main__":
    main()
