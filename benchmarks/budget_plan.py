"""Does ``ultranas search --data X --time-limit M`` (no other schedule setting) end within +-15 % of M?

For each dataset, runs the planned search as a user would (a subprocess, in a temporary folder) and reports the
wall time against the budget, the plan's prediction per phase against what each phase took (``plan/plan.json``),
the final epochs planned and used, and the verdict. Prints JSON; with ``--out``, writes it (and the runs' logs'
plan lines) there.

    python benchmarks/budget_plan.py --data ../shared/datasets/cards/data.yaml --imgsz 192 --minutes 30 \\
        --synthetic 400,100,200,256 --synthetic-minutes 15 --out benchmarks/results/budget_plan_cpu.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ultranas.objectives._targets import _cpu_model

GOAL = 0.15


def run_planned(data: str, imgsz: int, minutes: float, workdir: Path, name: str) -> dict:
    cmd = [sys.executable, "-m", "ultranas", "search", f"data={data}", f"imgsz={imgsz}", f"time_limit={minutes:g}",
           f"project={workdir}", f"name={name}"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.time() - t0
    said = [line for line in proc.stdout.splitlines() if line.startswith("ultranas: results in ")]
    run = Path(said[-1].split("results in ", 1)[1]) if said else workdir / name
    out = {"data": data, "imgsz": imgsz, "budget_min": minutes, "returncode": proc.returncode,
           "wall_s": round(wall, 1), "wall_vs_budget": round(wall / (60 * minutes), 3),
           "within_goal": abs(wall / (60 * minutes) - 1) <= GOAL,
           "command": "ultranas search " + " ".join(cmd[4:7])}
    if proc.returncode != 0:
        out["stderr"] = proc.stderr[-2000:]
        return out
    plan = json.loads((run / "plan" / "plan.json").read_text())
    out["plan_lines"] = [line for line in proc.stdout.splitlines() if line.startswith("ultranas:   ")
                         or "plan for" in line or "instead of the planned" in line or line.startswith("ultranas: took")]
    out["predicted_s"] = {"set-up": round(plan["spent_s"], 1), "search": round(plan["search_s"], 1),
                          "re-rank": round(plan["rerank_s"], 1), "final": round(plan["final_s"], 1)}
    out["actual_s"] = plan.get("outcome", {})
    out["plan"] = {k: plan[k] for k in ("proxy_imgsz", "epochs", "designs", "rerank", "rerank_epochs", "rerank_imgsz",
                                        "final_epochs", "final_seeds", "final_models", "references", "notes")}
    out["probes"] = plan["costs"]
    args = json.loads(json.dumps(__import__("yaml").safe_load((run / "args.yaml").read_text())))
    out["final_epochs_used"] = args["final_epochs"]
    out["trials_trained"] = sum(1 for r in csv.DictReader((run / "leaderboard.csv").open()) if r.get("state") == "COMPLETE")
    out["comparison"] = [{k: r[k] for k in ("model", "role", "map50_95_mean", "gap_pts", "ci_low_pts", "ci_high_pts",
                                            "latency_ratio", "final_epochs")}
                         for r in csv.DictReader((run / "comparison.csv").open())]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="a dataset YAML")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--synthetic", default=None, help="also a generated set: n_train,n_val,n_test,imgsz")
    p.add_argument("--synthetic-minutes", type=float, default=15)
    p.add_argument("--object-size", default="0.03,0.08", help="generated objects' side range (share of the image)")
    p.add_argument("--clutter", type=int, default=3)
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument("--out", default=None)
    p.add_argument("--append", action="store_true", help="add these runs to those already in --out")
    a = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.data:
            runs.append(run_planned(str(Path(a.data).resolve()), a.imgsz, a.minutes, tmp, "data"))
            print(json.dumps(runs[-1], indent=1), flush=True)
        if a.synthetic:
            from ultranas.synthetic import make_synthetic

            n_train, n_val, n_test, size = (int(x) for x in a.synthetic.split(","))
            lo, hi = (float(x) for x in a.object_size.split(","))
            data = make_synthetic(tmp / "generated", n_train=n_train, n_val=n_val, n_test=n_test, imgsz=size, seed=0,
                                  object_size=(lo, hi), clutter=a.clutter, max_objects=a.max_objects)
            runs.append(run_planned(str(data), size, a.synthetic_minutes, tmp, "synthetic"))
            runs[-1]["data"] = (f"synthetic {a.synthetic} (ultranas.synthetic, seed 0, objects {a.object_size} of the "
                                f"side, clutter {a.clutter}, up to {a.max_objects} per image)")
            print(json.dumps(runs[-1], indent=1), flush=True)
    if a.append and a.out and Path(a.out).is_file():
        runs = json.loads(Path(a.out).read_text())["runs"] + runs
    result = {"goal": f"wall time within +-{GOAL:.0%} of --time-limit", "runs": runs,
              "meets_goal": bool(runs) and all(r["within_goal"] for r in runs), "cpu": _cpu_model(),
              "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
