"""Was a search's win seed luck? Retrain found designs and hand-designed points with many seeds, judge on test.

A search's final stage trains each model with 2-3 seeds; on small sets the seed spread is as large as the gaps.
This trains the given designs with more seeds, with the final stage's own schedule and judging (all of ``train``,
``--epochs`` compressed SGD schedule, judged on the ``test`` split the search never read, per-image matches kept),
on generated sets (the set a search ran on and fresh ones), then reports each gap with the verdict's paired
bootstrap interval (images and seeds resampled) and every design's latency ratio to the reference from one
round-robin session on this machine.

    # the trainings (any device; a GPU machine runs many at once), then the report here (latency on this CPU)
    python benchmarks/reseed.py train --out /tmp/reseed --device 0 --jobs 14 --seeds 0,1,2,3,4,5,6,7
    python benchmarks/reseed.py report --out /tmp/reseed --tag small_objects
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
# generated sets: name -> make_synthetic arguments (set "s0" is the one the small-object searches ran on)
SETS = {
    "s0": dict(n_train=240, n_val=80, n_test=240, imgsz=256, seed=0, object_size=(0.03, 0.08), clutter=3,
               max_objects=6),
    "s1": dict(n_train=240, n_val=80, n_test=240, imgsz=256, seed=1, object_size=(0.02, 0.06), clutter=3,
               max_objects=6),
}
FOUND = {  # searched designs: results file -> its found design (evolution, under yolo11n's latency)
    "found_levels": "search_outcome_synthetic_small.json",
    "found_scaled": "search_outcome_synthetic_small_scaled.json",
}
DERIVED = ("narrowed_p2",)  # yolo26n-p2 narrowed as a small-object search starts from it (ultranas.warm_start)
POINTS = ("yolo11n", "yolo26n", "yolov8n", "yolov8n-p2", "yolo26n-p2", "yolo11n@0.75x", "yolo11n@1.25x")


def designs() -> dict[str, dict]:
    from ultranas.space import load_space

    space = load_space("yolo")
    out = {name: json.loads((RESULTS / f).read_text())["strategies"]["evolution"]["found"]["genotype"]
           for name, f in FOUND.items()}
    return {**out, "narrowed_p2": narrowed_p2(space), **{p: space.point(p) for p in POINTS}}


def narrowed_p2(space) -> dict:
    """yolo26n-p2 narrowed by the search's warm start for these sets (3 classes, 256 px) under yolo11n."""
    from ultranas import ultra
    from ultranas.warm_start import MARGIN, narrowed_to

    def gflops(g: dict) -> float:
        return ultra.gflops(ultra.build_model(space.render(g, 3)), 256)

    g, _ = narrowed_to(space, space.point("yolo26n-p2"), MARGIN * gflops(space.point("yolo11n")), gflops)
    return g


def make_set(out: Path, name: str) -> tuple[Path, Path]:
    """The set's data YAML (train on train) and its judge YAML (val = test)."""
    import yaml

    from ultranas.synthetic import make_synthetic

    data = out / "data" / name / "data.yaml"
    if not data.exists():
        make_synthetic(data.parent, **SETS[name])
    cfg = yaml.safe_load(data.read_text())
    judge = data.with_name("judge.yaml")
    judge.write_text(yaml.safe_dump({**cfg, "path": str(data.parent), "val": cfg["test"]}))
    return data, judge


def train(a) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from ultranas.estimation import compressed_schedule
    from ultranas.final_train import _train_final
    from ultranas.space import load_space

    out, space = Path(a.out), load_space("yolo")
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "results.jsonl"
    done = {json.loads(line)["job"] for line in done_path.read_text().splitlines()} if done_path.exists() else set()
    chosen = {label: g for label, g in designs().items() if label in a.designs}
    sets = {name: make_set(out, name) for name in a.sets}
    (out / "yaml").mkdir(exist_ok=True)
    for label, g in chosen.items():
        (out / "yaml" / f"{label}.yaml").write_text(space.to_yaml(g, 3))
    jobs = []
    for seed in a.seeds:  # seed-major: a run cut short still has every design with the same seeds
        for set_name, (data, judge) in sets.items():
            for label, g in chosen.items():
                job = f"{set_name}__{label}__s{seed}"
                if job in done:
                    continue
                yaml_path = out / "yaml" / f"{label}.yaml"
                imgsz = space.imgsz(g, SETS[set_name]["imgsz"])
                args = dict(compressed_schedule(a.epochs, a.batch), imgsz=imgsz, batch=a.batch, device=a.device,
                            seed=seed, deterministic=False)
                jobs.append({"job": job, "yaml": str(yaml_path), "data": str(data), "verdict": str(judge),
                             "project": str(out / "train"), "name": job, "verbose": False, "args": args,
                             "threads": a.threads})
    print(f"reseed: {len(jobs)} trainings, {a.jobs} at a time on {a.device}", flush=True)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=mp.get_context("spawn")) as pool, \
            done_path.open("a") as log:
        futures = {pool.submit(_train_final, job): job for job in jobs}
        for n, fut in enumerate(as_completed(futures), 1):
            job = futures[fut]
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001 -- one training's failure: the others go on, a rerun retries it
                print(f"reseed: {n}/{len(jobs)} {job['job']} failed ({type(e).__name__}: {e}); run again to retry",
                      flush=True)
                continue
            keep = out / "matches" / f"{job['job']}.npz"
            keep.parent.mkdir(exist_ok=True)
            Path(r["matches"]).replace(keep)
            log.write(json.dumps({"job": job["job"], "map": r["map"], "map50": r["map50"], "train_s": r["train_s"],
                                  "imgsz": job["args"]["imgsz"], "device": a.device}) + "\n")
            log.flush()
            print(f"reseed: {n}/{len(jobs)} {job['job']}: mAP50-95 {r['map']:.4f} ({r['train_s']:.0f} s, "
                  f"{time.time() - t0:.0f} s in)", flush=True)


def latencies(names: list[str], deploy: int, reference: str) -> dict:
    """Each design's latency ratio to ``reference`` at its own input size, one round-robin session (this CPU)."""
    from ultranas.objectives._timing import make_runner, round_robin
    from ultranas.space import load_space

    space, gs = load_space("yolo"), designs()
    names = [reference, *[n for n in names if n != reference]]
    runners = [make_runner(space.render(gs[n], 3), space.imgsz(gs[n], deploy)) for n in names]
    medians, load = round_robin(runners, rounds=7)
    ref = medians[0]
    return {n: {"ms": round(statistics.median(m), 3), "ratio": round(statistics.median([x / y for x, y in zip(m, ref)]),
                                                                       3), "others": load.others}
            for n, m in zip(names, medians)}


def _named(path: Path):
    """A training's per-image matches, its images named by file name (runs on other machines had other folders)."""
    import dataclasses

    from ultranas.bootstrap import ImageMatches

    m = ImageMatches.load(path)
    return dataclasses.replace(m, files=[Path(f).name for f in m.files])


def report(a) -> None:
    from ultranas.bootstrap import gap, resampled_maps

    out = Path(a.out)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    lat = latencies(list(designs()), SETS["s0"]["imgsz"], a.reference)
    res = {"tag": a.tag, "sets": {k: {**v, "object_size": list(v["object_size"])} for k, v in SETS.items()},
           "epochs": a.epochs, "device": sorted({r["device"] for r in rows}), "latency_vs_reference": lat,
           "latency_note": "ratios at each design's own input size, one round-robin session on the report's CPU "
                           "('others': the share of the CPU other processes used meanwhile)",
           "device_note": a.device_note,
           "results": {}}
    for set_name in sorted({r["job"].split("__")[0] for r in rows}):
        by = {}
        for r in rows:
            s, label, seed = r["job"].split("__")
            if s == set_name:
                by.setdefault(label, {})[int(seed[1:])] = r
        seeds = sorted(set.intersection(*(set(v) for v in by.values())))  # the seeds every design has
        dropped = sorted(f"{label} s{s}" for label, v in by.items() for s in v if s not in seeds)
        group = {label: [_named(out / "matches" / f"{set_name}__{label}__s{s}.npz") for s in seeds] for label in by}
        boot = resampled_maps(group, 1000, seed=0)
        in_band = [n for n in by if n not in (*FOUND, *DERIVED) and lat[n]["ratio"] <= 1.0]
        models = {}
        for label in group:
            vals = [by[label][s]["map"] for s in seeds]
            models[label] = {"values": [round(v, 4) for v in vals], "mean": round(statistics.fmean(vals), 4),
                             "sd": round(statistics.stdev(vals), 4) if len(vals) > 1 else None, **lat[label]}
        best_hand = max(in_band, key=lambda n: models[n]["mean"])
        for label in (*FOUND, *DERIVED):
            if label in group:
                for other in {o: 0 for o in (a.reference, best_hand) if o in group}:
                    g = gap(group[label], group[other], boot[label], boot[other])
                    models[label][f"vs_{other}"] = {"gap_pts": round(100 * g.value, 2),
                                                    "ci_low_pts": round(100 * g.low, 2),
                                                    "ci_high_pts": round(100 * g.high, 2), "verdict": g.verdict}
        res["results"][set_name] = {"seeds": seeds, "dropped": dropped, "n_images": len(next(iter(group.values()))[0].files),
                                    "best_hand_in_band": best_hand, "hand_in_band": in_band, "models": models}
    if a.check:  # the same trainings on another device (another platform's numerics: AMP on a GPU, fp32 on a CPU)
        res["check"] = {Path(c).name: [json.loads(line) for line in (Path(c) / "results.jsonl").read_text().splitlines()]
                        for c in a.check.split(",")}
        res["check_note"] = a.check_note
    path = RESULTS / f"reseed_{a.tag}.json"
    path.write_text(json.dumps(res, indent=2))
    print(json.dumps(res["results"], indent=1))
    print(f"reseed: wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("train", "report"))
    ap.add_argument("--out", required=True, help="working folder (sets, trainings, results.jsonl)")
    ap.add_argument("--sets", default="s0,s1")
    ap.add_argument("--designs", default=",".join([*FOUND, *DERIVED, *POINTS]))
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--epochs", type=int, default=15, help="as the searches' final stage")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training")
    ap.add_argument("--reference", default="yolo11n")
    ap.add_argument("--tag", default="small_objects")
    ap.add_argument("--check", default="", help="report: working folders of the same trainings on other devices")
    ap.add_argument("--check-note", default="", help="report: what the check shows, in a line")
    ap.add_argument("--device-note", default="", help="report: the training device, in words (GPU model, precision)")
    a = ap.parse_args()
    a.sets, a.designs = a.sets.split(","), a.designs.split(",")
    a.seeds = [int(s) for s in a.seeds.split(",")]
    train(a) if a.phase == "train" else report(a)


if __name__ == "__main__":
    main()
