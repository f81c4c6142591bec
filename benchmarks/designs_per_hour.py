"""Designs fully evaluated per hour by the default search on cards at the calibrated proxy, before and after the
local-workers change, and the calibrated proxy's band tau in the faster configuration.

Arms (same data, default strategy (evolution), seed and trial budget; ``--no-final``; each a real ``ultranas
search`` process, timed from start to exit: start-up, screening of proposals and trials):
- ``before``: the code at ``--base-rev`` (a git worktree), the proxy flags as that code applied a calibration
  (its ``--calibration`` ignored the calibrated batch: the search's default batch 8), one process;
- ``after_1_worker``: this code with ``--calibration`` (the proxy as calibrated, batch 16), ``--workers 1``;
- ``after``: this code with ``--calibration`` and the default workers (one per physical core).
The warm start (the six hand-designed points) is common to all arms; later proposals follow each arm's scores, so the
designs differ a little between arms (their mean size is reported).

Then ``tau``: the calibration's 16 designs scored by the calibrated proxy the way ``after`` runs it (a process per
core, one thread each), ranked against the committed calibration reference
(``rank_fidelity_cards_cpu_fast128_proxy64.json``: 128 px, 16 epochs, 3 seeds; the designs are re-drawn with the
calibration's seed and checked by their parameter counts).

    python benchmarks/designs_per_hour.py --trials 16
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CALIBRATION = RESULTS / "rank_fidelity_cards_cpu_fast128_proxy64.json"
DATA = ROOT.parent / "shared" / "datasets" / "cards" / "data.yaml"


def run_search(label: str, python_path: Path, args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(python_path), "ULTRANAS_WORKERS": ""}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "ultranas", "search", *args, "--project", str(cwd), "--name", label],
                          cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
    rows = list(csv.DictReader((cwd / label / "leaderboard.csv").read_text().splitlines()))
    done = [r for r in rows if r["state"] == "COMPLETE" and not r["duplicate_of"]]

    def total(key):
        return round(sum(float(r[key]) for r in done if r.get(key) not in (None, "")), 1)

    import optuna

    attrs = optuna.load_study(study_name=label, storage=f"sqlite:///{cwd / label / 'study.db'}").user_attrs
    out = {"wall_s": round(wall, 1), "designs": len(done), "designs_per_hour": round(3600 * len(done) / wall, 1),
           "proposals_screened": attrs.get("screened", 0), "propose_s": attrs.get("propose_s"),
           "screened": sum(r["state"] == "PRUNED" for r in rows), "mean_params": round(
               sum(float(r["params"]) for r in done) / max(1, len(done))), "trial_time_s": total("time_s"),
           "train_s": total("train_s")}
    for key in ("build_s", "latency_s", "data_s", "val_s"):
        if done and key in done[0]:
            out[key] = total(key)
    return out


def _score(job: tuple) -> float:
    name, g, data, nc = job
    import torch

    torch.set_num_threads(1)
    from ultranas.estimation import make_estimator
    from ultranas.objectives import Candidate
    from ultranas.space import load_space

    space = load_space("yolo")
    est = make_estimator("short-train", data, epochs=6, imgsz=128, batch=16, device="cpu", trainer="fast",
                         score="loss_drop", train_imgsz=64)  # trained and scored at 64 px, as calibrated
    with tempfile.TemporaryDirectory() as tmp:
        cand = Candidate(g, space.render(g, nc), space.design_hash(g, nc), 128, Path(tmp))
        return est.estimate(cand)["score"]


def band_tau(data: str, workers: int) -> dict:
    """The calibrated proxy over the calibration's designs, a process per core; tau against its reference."""
    import numpy as np

    from ultranas import ultra
    from ultranas.data import class_names, safe_data_yaml
    from ultranas.estimation._calib_designs import sample_designs
    from ultranas.estimation._rank_stats import rank_correlation
    from ultranas.space import load_space

    cal = json.loads(CALIBRATION.read_text())
    space, data = load_space("yolo"), str(safe_data_yaml(data))
    nc = len(class_names(data))
    designs = sample_designs(space, cal["designs"], 0, 10, 0.2, "yolo11n", cal["imgsz"])
    for (name, g), row in zip(designs, cal["designs_detail"], strict=True):
        assert name == row["design"] and ultra.count_params(ultra.build_model(space.render(g, nc))) == row["params"], \
            f"{name}: not the calibration's design"
    t0 = time.time()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        scores = list(pool.map(_score, [(n, g, data, nc) for n, g in designs]))
    wall = time.time() - t0
    ref = [float(np.mean(r["reference_runs"])) for r in cal["designs_detail"]]
    center = cal["band"]["gflops"]
    band = [i for i, r in enumerate(cal["designs_detail"]) if abs(r["gflops"] - center) <= 0.2 * center]
    stored = cal["estimators"]["short-train:loss_drop"]
    return {"designs": len(designs), "band_size": len(band), "wall_s": round(wall, 1), "workers": workers,
            "all": rank_correlation(scores, ref), "band": rank_correlation([scores[i] for i in band],
                                                                           [ref[i] for i in band]),
            "calibrated": {"all_tau": stored["all"]["tau"], "band_tau": stored["band"]["tau"]},
            "scores": dict(zip([n for n, _ in designs], [round(s, 4) for s in scores]))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--base-rev", default="51b0937", help="the code before the local-workers change")
    p.add_argument("--skip-tau", action="store_true")
    p.add_argument("--only-tau", action="store_true", help="measure tau again into the existing results file")
    a = p.parse_args()
    out_file = RESULTS / "designs_per_hour_cards_cpu.json"
    if a.only_tau:
        import psutil

        out = json.loads(out_file.read_text())
        out["tau"] = band_tau(a.data, psutil.cpu_count(logical=False) or os.cpu_count())
        out_file.write_text(json.dumps(out, indent=2))
        print(json.dumps(out["tau"], indent=2))
        return
    import psutil

    cores = psutil.cpu_count(logical=False) or os.cpu_count()
    common = ["--data", str(Path(a.data).resolve()), "--trials", str(a.trials), "--seed", "0", "--no-final"]
    out = {"data": a.data, "trials": a.trials, "base_rev": a.base_rev, "physical_cores": cores, "arms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), a.base_rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            cal = json.loads(CALIBRATION.read_text())
            cal_file = tmp / "calibration.json"  # the committed calibration; rank_fidelity.py ran it at batch 16
            cal_file.write_text(json.dumps({**cal, "batch": 16}))
            arms = {
                "before": (base, ["--trainer", "fast", "--epochs", str(cal["proxy_epochs"]), "--score", "loss_drop",
                                  "--proxy-imgsz", str(cal["proxy_imgsz"])]),
                "after_1_worker": (ROOT, ["--calibration", str(cal_file), "--workers", "1"]),
                "after": (ROOT, ["--calibration", str(cal_file)]),
            }
            for label, (src, args) in arms.items():
                out["arms"][label] = run_search(label, src, common + args, tmp)
                print(json.dumps({label: out["arms"][label]}), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    before = out["arms"]["before"]["designs_per_hour"]
    out["speedup"] = {k: round(v["designs_per_hour"] / before, 2) for k, v in out["arms"].items()}
    out["goal"] = {"designs_per_hour_x": 2.5, "met": out["speedup"]["after"] >= 2.5}
    if not a.skip_tau:
        out["tau"] = band_tau(a.data, cores)
        print(json.dumps({"tau": {k: out["tau"][k] for k in ("all", "band", "calibrated")}}), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
