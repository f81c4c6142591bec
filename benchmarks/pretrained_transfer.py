"""Does inheriting a user's pretrained weights pay? Offline stand-in for COCO-pretrained checkpoints, on this machine.

1. ``pretrain``: a large generated source set (18 classes: 3 shapes x 6 colour families, thousands of images, a
   stand-in for COCO: nothing can be downloaded here) and yolo11n / yolo26n trained on it from Ultralytics' own YAMLs
   with the stock trainer: the ``best.pt`` files a user would have.
2. ``share``: every design one decision away from each reference (yolo11n, yolo26n), and the share of its
   parameters inherited from that reference's checkpoint on the target data's class count.
3. ``finetune``: designs trained on the target data (default cards) from scratch and from inherited weights, with the
   same schedule and seeds (the final stage's trainer, judged on val with per-image matches): paired-bootstrap 95 %
   intervals of inherited - scratch per design.
4. ``search``: ``ultranas search --pretrained`` on the target data; its verdict (found_n vs the fine-tuned yolo11n).

Stages resume from what is in ``--work``; the JSON goes to ``benchmarks/results/pretrained_transfer_<tag>.json``.

    python benchmarks/pretrained_transfer.py --stages pretrain,share,finetune,search
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CARDS = ROOT.parent / "shared" / "datasets" / "cards" / "data.yaml"
REFERENCES = ("yolo11n", "yolo26n")


def args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="pretrain,share,finetune,search")
    ap.add_argument("--data", default=str(CARDS), help="the target data YAML")
    ap.add_argument("--tag", default="cards")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "pretrained_transfer"))
    ap.add_argument("--source", default="2500,250,160", metavar="N_TRAIN,N_VAL,IMGSZ", help="generated source set")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=192, help="target data: training and deploy size")
    ap.add_argument("--epochs", type=int, default=15, help="finetune: epochs of each training (both inits)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--designs", default="yolo11n,yolo11n:P4.width=96,yolo11n:N3.block=C2f",
                    help="finetune: points, or point:decision=value (one mutation)")
    ap.add_argument("--time-limit", type=float, default=40, help="search: minutes of the planned run")
    return ap.parse_args()


def pretrain(a, work: Path) -> dict:
    from ultranas import ultra
    from ultranas.estimation import compressed_schedule
    from ultranas.synthetic import make_synthetic

    n_train, n_val, size = map(int, a.source.split(","))
    src = work / "source"
    if not (src / "done").is_file():  # written last: a killed generation is redone
        make_synthetic(src, n_train=n_train, n_val=n_val, imgsz=size, seed=123, max_objects=6,
                       object_size=(0.08, 0.4), colours=6)
        (src / "done").write_text("")
    out = {"source": {"n_train": n_train, "n_val": n_val, "imgsz": size, "classes": 18, "epochs": a.pretrain_epochs}}
    for ref in REFERENCES:
        dest = work / f"{ref}.pt"
        info = work / f"{ref}.json"
        if not dest.is_file():
            t0 = time.time()
            metrics, best = ultra.train(f"{ref}.yaml", src / "data.yaml", work / "pretrain", ref, **compressed_schedule(
                a.pretrain_epochs, 16), imgsz=size, batch=16, device="cpu", seed=0, deterministic=False)
            shutil.copy(best, dest)
            info.write_text(json.dumps({"map50_95": metrics["map"], "train_s": round(time.time() - t0)}))
        out[ref] = json.loads(info.read_text())
        print(f"pretrained {ref}: mAP50-95 {out[ref]['map50_95']:.3f} on the source set ({out[ref]['train_s']} s)")
    return out


def mutations(space, g: dict) -> list[tuple[str, object, dict]]:
    out = []
    for d, choices in space.decisions.items():
        for c in choices:
            m = {**g, d: c}
            if c != g[d] and d != "input_scale" and space.check(m)[0] and space.design_hash(m) != space.design_hash(g):
                out.append((d, c, m))
    return out


def share(a, work: Path) -> dict:
    from ultranas import ultra
    from ultranas.data import class_names
    from ultranas.inherit import Inheritance
    from ultranas.space import load_space

    space, names = load_space("yolo"), list(class_names(a.data).values())
    nc, out = len(names), {}
    for ref in REFERENCES:
        inh = Inheritance([str(work / f"{ref}.pt")], space)
        g = space.complete(space.points[ref])
        rows = []
        for d, c, m in mutations(space, g):
            model = ultra.build_model(space.render(m, nc), nc=nc)
            got = inh.apply(model, m, names)["inherited"]
            rows.append({"decision": d, "choice": c, "inherited": got, "params": ultra.count_params(model)})
        shares = [r["inherited"] for r in rows]
        smaller = [r["inherited"] for r in rows if r["params"] <= ultra.count_params(inh.sources[0].model)]
        out[ref] = {"designs": len(rows), "median": statistics.median(shares), "min": min(shares),
                    "share_at_least_90": round(sum(s >= 0.9 for s in shares) / len(shares), 3),
                    "no_larger_designs": len(smaller),
                    "no_larger_share_at_least_90": round(sum(s >= 0.9 for s in smaller) / max(1, len(smaller)), 3),
                    "lowest": sorted(rows, key=lambda r: r["inherited"])[:8]}
        print(f"{ref}: {len(rows)} one-mutation designs, median {out[ref]['median']:.3f} inherited, "
              f"{out[ref]['share_at_least_90']:.0%} at >= 90 % ({out[ref]['no_larger_share_at_least_90']:.0%} of those "
              f"no larger than {ref})")
    return out


def design(space, spec: str) -> dict:
    point, _, change = spec.partition(":")
    g = space.complete(space.points[point])
    if change:
        d, v = change.split("=")
        choices = space.decisions[d]
        g[d] = next(c for c in choices if str(c) == v)
    return g


def finetune(a, work: Path) -> dict:
    from ultranas.bootstrap import ImageMatches, gap, resampled_maps
    from ultranas.data import class_names, safe_data_yaml
    from ultranas.final_train import _train_final
    from ultranas.inherit import Inheritance
    from ultranas.space import load_space

    space, names = load_space("yolo"), list(class_names(a.data).values())
    nc, data = len(names), safe_data_yaml(a.data, work / "target")
    inh = Inheritance([str(work / f"{r}.pt") for r in REFERENCES], space)
    seeds = [int(s) for s in a.seeds.split(",")]
    out, cache = {}, work / "finetune.jsonl"
    done = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            rec = json.loads(line)
            done[rec["key"]] = rec["result"]
    for spec in a.designs.split(","):
        g = design(space, spec)
        folder = work / "finetune" / spec.replace(":", "_").replace("=", "-")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.yaml").write_text(space.to_yaml(g, nc))
        runs, facts = {}, {}
        for kind in ("scratch", "inherited"):
            runs[kind] = []
            for seed in seeds:
                key = f"{spec}|{kind}|e{a.epochs}|{a.imgsz}|s{seed}"
                if key not in done:
                    args = {"imgsz": a.imgsz, "batch": 16, "device": "cpu", "seed": seed, "deterministic": False}
                    from ultranas.estimation import compressed_schedule

                    args.update(compressed_schedule(a.epochs, 16))
                    if kind == "inherited":
                        init, facts = inh.checkpoint(space.render(g, nc), g, names, folder / f"inherited-s{seed}.pt",
                                                     seed)
                        args["pretrained"] = str(init)
                    done[key] = _train_final({"yaml": str(folder / "model.yaml"), "data": str(data),
                                              "verdict": str(data), "project": str(folder),
                                              "name": f"{kind}-s{seed}", "verbose": False, "args": args})
                    with cache.open("a") as f:
                        f.write(json.dumps({"key": key, "result": done[key]}) + "\n")
                runs[kind].append(done[key])
                print(f"{spec} {kind} seed {seed}: mAP50-95 {done[key]['map']:.4f} ({done[key]['train_s']:.0f} s)",
                      flush=True)
        if not facts:
            _, facts = inh.checkpoint(space.render(g, nc), g, names, folder / "inherited.pt", 0)
        matches = {k: [ImageMatches.load(r["matches"]) for r in v] for k, v in runs.items()}
        boot = resampled_maps(matches)
        g_ = gap(matches["inherited"], matches["scratch"], boot["inherited"], boot["scratch"])
        out[spec] = {**facts, **{f"{k}_map50_95": [round(r["map"], 4) for r in v] for k, v in runs.items()},
                     "gap_pts": round(100 * g_.value, 2), "ci_pts": [round(100 * g_.low, 2), round(100 * g_.high, 2)],
                     "verdict": g_.verdict, "train_s": {k: [r["train_s"] for r in v] for k, v in runs.items()}}
        print(f"{spec}: inherited {facts['inherited']:.0%} from {facts['inherited_from']}; inherited - scratch "
              f"{g_.pts()}: {g_.verdict}", flush=True)
    return {"epochs": a.epochs, "imgsz": a.imgsz, "seeds": seeds, "designs": out}


def search(a, work: Path) -> dict:
    run = work / "search"
    pretrained = ",".join(str(work / f"{r}.pt") for r in REFERENCES)
    cmd = [sys.executable, "-m", "ultranas", "search", "--data", a.data, "--imgsz", str(a.imgsz), "--time-limit",
           str(a.time_limit), "--pretrained", pretrained, "--references", "yolo11n", "--project", str(run),
           "--name", "exp"]
    results = run / "exp" / "comparison.csv"
    t0 = time.time()
    if not results.is_file():
        resume = (run / "exp").is_dir()
        subprocess.run([sys.executable, "-m", "ultranas", "search", "--resume", str(run / "exp")] if resume else cmd,
                       check=True)
    return {"command": " ".join(cmd[2:]), "wall_s": round(time.time() - t0),
            "comparison": list(csv.DictReader(results.open())) if results.is_file() else None}


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> None:
    a = args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"pretrained_transfer_{a.tag}.json"
    out = json.loads(path.read_text()) if path.is_file() else {}
    out.update(machine={"cpu": cpu_name(), "cores": os.cpu_count()}, data=a.data)
    for stage in a.stages.split(","):
        t0 = time.time()
        out[stage] = {"pretrain": pretrain, "share": share, "finetune": finetune, "search": search}[stage](a, work)
        out[stage]["stage_s"] = round(time.time() - t0)
        path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: v for k, v in out.items() if k != "share"}, indent=2, default=str)[:4000])


if __name__ == "__main__":
    main()
