"""Is the latency ranking of designs stable while another process trains on the same machine?

Ten designs (the space's six points + four random ones) are timed in 3 runs at the deploy size while a second
process trains a model (the fast trainer on the synthetic set, one thread) on the other core, and once with the
machine otherwise idle. Two ways, side by side in the same runs:
- ``absolute``: each design's median latency on its own (``measure_latency``);
- ``vs_reference``: each design's latency / yolo11n's, timed interleaved (``LatencyMeter.versus(interleave=True)``).
Reports Kendall tau between the runs' rankings, each design's CV across runs, and the load seen.

    python benchmarks/latency_stability.py --imgsz 320 --out benchmarks/results/latency_stability.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ultranas  # noqa: E402,F401
from ultranas.objectives._base import Candidate  # noqa: E402
from ultranas.objectives.latency import LatencyMeter, host_fingerprint, load_seen, measure_latency  # noqa: E402
from ultranas.space import load_space  # noqa: E402

LOAD = """
import sys, time, torch
torch.set_num_threads(1)
from ultranas.estimation._fast_train import FastTrainer
from ultranas.space import load_space
sp = load_space("yolo")
end = time.time() + float(sys.argv[2])
while time.time() < end:
    FastTrainer(sys.argv[1], 96, 1, 16, "cpu", 0).train([sp.render(sp.point("yolo11n"), 3)])
"""


def designs(space, n_random: int, seed: int) -> dict[str, dict]:
    out = dict(space.points)
    rng = random.Random(seed)
    while len(out) < len(space.points) + n_random:
        out[f"random{len(out) - len(space.points)}"] = space.sample(rng)
    return out


def one_run(space, named: dict, imgsz: int) -> dict:
    cands = {k: Candidate(g, space.render(g, 80), space.design_hash(g, 80), imgsz, Path(".")) for k, g in named.items()}
    meter = LatencyMeter("onnxruntime-cpu")
    ref = cands["yolo11n"]
    out = {"absolute": {}, "vs_reference": {}, "load": []}
    for k, c in cands.items():
        out["absolute"][k] = measure_latency(c.model_dict, imgsz, "onnxruntime-cpu", threads=1)["median_ms"]
        out["vs_reference"][k] = meter.versus(c, ref, interleave=True)["ratio"]
        out["load"].append(load_seen())
    return out


def summary(runs: list[dict], names: list[str]) -> dict:
    res = {}
    for how in ("absolute", "vs_reference"):
        taus = [stats.kendalltau([a[how][k] for k in names], [b[how][k] for k in names]).statistic
                for a, b in itertools.combinations(runs, 2)]
        cvs = [statistics.pstdev(v) / statistics.fmean(v) for v in ([r[how][k] for r in runs] for k in names)]
        res[how] = {"tau_between_runs": [round(t, 3) for t in taus], "tau_min": round(min(taus), 3),
                    "cv_median": round(statistics.median(cvs), 4), "cv_max": round(max(cvs), 4)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--random", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency_stability.json"))
    a = ap.parse_args()
    space = load_space("yolo")
    named = designs(space, a.random, a.seed)
    names = list(named)
    t0 = time.time()
    idle = one_run(space, named, a.imgsz)
    loaded = []
    with tempfile.TemporaryDirectory() as tmp:
        from ultranas.synthetic import make_synthetic

        data = make_synthetic(Path(tmp) / "syn", n_train=64, n_val=8, imgsz=96, seed=0)
        for _ in range(a.runs):
            proc = subprocess.Popen([sys.executable, "-c", LOAD, str(data), "3600"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
            time.sleep(8)  # let the trainer get going
            try:
                loaded.append(one_run(space, named, a.imgsz))
            finally:
                proc.kill()
                proc.wait()
    result = {
        "what": "latency ranking of 10 designs across runs while another process trains (onnxruntime-cpu, 1 thread)",
        "imgsz": a.imgsz, "designs": names, "host": host_fingerprint(), "cpu_count": os.cpu_count(),
        "under_load": summary(loaded, names), "idle_vs_loaded_tau": {
            how: [round(stats.kendalltau([idle[how][k] for k in names], [r[how][k] for k in names]).statistic, 3)
                  for r in loaded] for how in ("absolute", "vs_reference")},
        "load_seen": {"idle": idle["load"], "loaded": [r["load"] for r in loaded]},
        "slowdown_under_load": round(statistics.median(
            statistics.fmean(r["absolute"][k] for r in loaded) / idle["absolute"][k] for k in names), 3),
        "runs": {"idle": idle, "loaded": loaded}, "wall_s": round(time.time() - t0, 1),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
