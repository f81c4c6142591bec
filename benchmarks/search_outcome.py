"""Does the search beat hand design? The whole product on a real dataset, on this machine, resumable.

1. Two searches side by side, one CPU core each, the same budget (``--time-limit`` minutes, focus on yolo11n's
   latency band at the deploy size): ``--strategy evolution`` and ``--strategy random``.
2. The final stage of each (``ultranas search --resume RUN --final``): found_n, yolo11n and every hand-designed point
   under yolo11n's latency, trained from scratch at the deploy size with each final seed; the references are trained
   once and shared through ``--final-cache``.
3. JSON with per-seed mAP50-95, latencies, wall times and designs, a verdict against the goal, and a plot.

Every step resumes: run it again after a kill and it continues where it stopped.

    python benchmarks/search_outcome.py --data ../shared/datasets/cards/data.yaml --tag cards --time-limit 45
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STRATEGIES = ("evolution", "random")


def args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--time-limit", type=float, default=35.0, help="minutes of trials per search (both run at once); "
                    "the re-ranking after it takes about 10 more")
    ap.add_argument("--imgsz", type=int, default=192, help="deploy size")
    ap.add_argument("--proxy-imgsz", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6, help="proxy epochs")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--trainer", default="fast")
    ap.add_argument("--score", default="loss_drop")
    ap.add_argument("--band-floor", type=float, default=0.0, help="the band: latency in (floor, 1] x the reference's (0: off)")
    ap.add_argument("--rerank", type=int, default=4, help="designs re-ranked per band after the search")
    ap.add_argument("--rerank-epochs", type=int, default=16)
    ap.add_argument("--rerank-imgsz", type=int, default=128)
    ap.add_argument("--final-epochs", type=int, default=30)
    ap.add_argument("--final-seeds", default="0,1,2")
    ap.add_argument("--reference", default="yolo11n")
    ap.add_argument("--project", default=str(ROOT / "runs" / "bench" / "search_outcome"))
    return ap.parse_args()


def ultranas(*argv, threads: int = 1, log: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = log.open("a") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "ultranas", *map(str, argv)], env=env, stdout=out,
                            stderr=subprocess.STDOUT)


def search_flags(a, strategy: str, project: Path) -> list:
    return ["search", "--data", a.data, "--strategy", strategy, "--trials", 100000, "--time-limit", a.time_limit,
            "--imgsz", a.imgsz, "--proxy-imgsz", a.proxy_imgsz, "--epochs", a.epochs, "--batch", a.batch,
            "--trainer", a.trainer, "--score", a.score, "--references", a.reference, "--focus", "bands",
            "--band-floor", a.band_floor,
            "--rerank", a.rerank, "--rerank-epochs", a.rerank_epochs, "--rerank-imgsz", a.rerank_imgsz,
            "--final-epochs", a.final_epochs, "--final-seeds", a.final_seeds, "--final-cache",
            project / "final_cache.jsonl", "--no-final", "--workers", 1, "--project", project, "--name", strategy]


def run_searches(a, project: Path) -> dict:
    procs, t0 = {}, time.time()
    for s in STRATEGIES:
        run = project / s
        flags = ["search", "--resume", run] if (run / "args.yaml").exists() else search_flags(a, s, project)
        procs[s] = ultranas(*flags, log=project / f"{s}.log")
    codes = {s: p.wait() for s, p in procs.items()}
    if any(codes.values()):
        raise SystemExit(f"a search failed: {codes}; see {project}/*.log")
    return {"wall_s": round(time.time() - t0, 1)}


def run_finals(a, project: Path) -> dict:
    walls = {}
    for s in STRATEGIES:
        run = project / s
        if (run / "comparison.csv").exists():
            continue
        t0 = time.time()
        code = ultranas("search", "--resume", run, "--final", "--final-workers", 2, threads=1,
                        log=project / f"{s}_final.log").wait()
        if code:
            raise SystemExit(f"final stage of {s} failed ({code}); see {project}/{s}_final.log")
        walls[s] = round(time.time() - t0, 1)
    return walls


def mean_sd(values: list[float]) -> dict:
    return {"values": [round(v, 4) for v in values], "mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None}


def collect(a, project: Path, timings: dict) -> dict:
    import optuna

    out = {"data": a.data, "tag": a.tag, "deploy_imgsz": a.imgsz, "reference": a.reference,
           "budget": {"time_limit_min": a.time_limit, "parallel": "one search per CPU core, both at once",
                      "rerank": f"top {a.rerank} + the reference at {a.rerank_imgsz} px, {a.rerank_epochs} epochs (mAP)",
                      "estimator": f"short-train, {a.trainer} trainer, {a.proxy_imgsz} px, {a.epochs} epochs, "
                                   f"score {a.score}, batch {a.batch}", "focus": f"bands ({a.band_floor} to 1.0 x {a.reference}'s latency)"},
           "final": {"epochs": a.final_epochs, "seeds": a.final_seeds, "trainer": "ultralytics"},
           "timings": timings, "strategies": {}}
    for s in STRATEGIES:
        run = project / s
        study = optuna.load_study(study_name=s, storage=f"sqlite:///{run / 'study.db'}")
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state.name == "COMPLETE" and not t.user_attrs.get("uncounted")]
        rows = list(csv.DictReader((run / "comparison.csv").read_text().splitlines()))
        per_model = {}
        for r in rows:
            seeds = sorted(k for k in r if re.fullmatch(r"map50_95_s\d+", k))
            per_model[r["model"]] = {"role": r["role"], "hash": r["hash"], "latency_ms": float(r["latency_ms"]),
                                     "latency_ratio": float(r["latency_ratio"]), "params": int(r["params"]),
                                     "gflops": float(r["gflops"]), **mean_sd([float(r[k]) for k in seeds])}
        found = next(v for v in per_model.values() if v["role"] == "found")
        ckpt_info = _nas_info(run)
        best_so_far, best = [], -math.inf
        for t in sorted(done, key=lambda t: t.number):
            best = max(best, t.user_attrs["metrics"]["score"])
            best_so_far.append(round(best, 4))
        out["strategies"][s] = {
            "trials_trained": len(done), "screened_or_duplicate": len(trials) - len(done) + study.user_attrs.get("screened", 0),
            "search_s": study.user_attrs.get("search_s"), "best_score_so_far": best_so_far,
            "found": {**found, "genotype": ckpt_info.get("genotype"), "search_trial": ckpt_info.get("search_trial"),
                      "search_score": ckpt_info.get("search_score"), "rerank": ckpt_info.get("rerank"),
                      "is_hand_designed": ckpt_info.get("is_hand_designed")},
            "reranked": sorted(({"hash": k.split(":", 1)[1], **v} for k, v in study.user_attrs.items()
                                if k.startswith("rerank:")), key=lambda r: -r["score"]),
            "models": per_model, "verdict": ckpt_info.get("verdict"),
        }
    out["goal"] = judge(out, a.reference)
    return out


def _nas_info(run: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from ultranas.ultra import load_checkpoint

    pt = next(run.glob("found_*.pt"))
    return load_checkpoint(pt)["ultranas"]


def judge(out: dict, reference: str) -> dict:
    """The issue's goal: found_n >= best hand-designed + 0.02, latency <= the reference's, gap > 2 x pooled seed sd,
    and the strategy's found_n >= random search's."""
    evo, rnd = out["strategies"]["evolution"], out["strategies"]["random"]
    hand = {k: v for k, v in evo["models"].items() if v["role"] in ("reference", "hand-designed")}
    best_hand = max(hand, key=lambda k: hand[k]["mean"])
    f, h = evo["found"], hand[best_hand]
    pooled = math.sqrt(((f["sd"] or 0) ** 2 + (h["sd"] or 0) ** 2) / 2)
    gap = f["mean"] - h["mean"]
    res = {"best_hand_designed": best_hand, "gap": round(gap, 4), "pooled_sd": round(pooled, 4),
           "gap_ge_0.02": gap >= 0.02, "gap_gt_2_pooled_sd": gap > 2 * pooled,
           "latency_le_reference": f["latency_ratio"] <= 1.0,
           "found_ge_random_found": f["mean"] >= rnd["found"]["mean"],
           "random_found_mean": rnd["found"]["mean"]}
    res["met"] = all(res[k] for k in ("gap_ge_0.02", "gap_gt_2_pooled_sd", "latency_le_reference",
                                      "found_ge_random_found"))
    if not res["met"]:
        res["short_by"] = round(max(0.02 - gap, 2 * pooled - gap, 0.0), 4)
    return res


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for s, r in out["strategies"].items():
        ax1.plot(range(1, len(r["best_score_so_far"]) + 1), r["best_score_so_far"], label=s)
    ax1.set_xlabel("trials trained (in the band)")
    ax1.set_ylabel("best search score so far")
    ax1.legend()
    ax1.grid(alpha=0.3)
    models = {}
    for s, r in out["strategies"].items():
        for name, m in r["models"].items():
            key = f"found_n ({s})" if m["role"] == "found" else name
            models[key] = m
    names = list(models)
    ax2.bar(range(len(names)), [models[n]["mean"] for n in names], yerr=[models[n]["sd"] or 0 for n in names],
            capsize=4, color=["tab:red" if n.startswith("found") else "tab:gray" for n in names])
    ax2.set_xticks(range(len(names)), [f"{n}\n{models[n]['latency_ratio']:.2f}x" for n in names], fontsize=8)
    ax2.set_ylabel(f"mAP50-95 at {out['deploy_imgsz']} px (mean ± sd over seeds)")
    ax2.set_title(f"{out['tag']}: final retrain, latency as x {out['reference']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    a = args()
    project = Path(a.project) / a.tag
    project.mkdir(parents=True, exist_ok=True)
    state_path = project / "timings.json"
    timings = json.loads(state_path.read_text()) if state_path.exists() else {}
    if "search" not in timings:
        timings["search"] = run_searches(a, project)
        state_path.write_text(json.dumps(timings))
    if "final" not in timings:
        timings["final"] = run_finals(a, project)
        state_path.write_text(json.dumps(timings))
    out = collect(a, project, timings)
    out["args"] = yaml.safe_load(yaml.safe_dump(vars(a)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"search_outcome_{a.tag}.json").write_text(json.dumps(out, indent=2))
    plot(out, RESULTS / f"search_outcome_{a.tag}.png")
    print(json.dumps({k: out[k] for k in ("tag", "timings", "goal")}, indent=2))


if __name__ == "__main__":
    main()
