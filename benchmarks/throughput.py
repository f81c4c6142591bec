"""Training throughput and mAP: the stock Ultralytics trainer vs FastTrainer, same designs, data, budget and seeds.

Ultralytics runs through ``ultranas.ultra.train`` with ``compressed_schedule`` (one design at a time, as the
short-train estimator does); FastTrainer trains each design alone and then all K designs at once on the same
batches. Prints JSON and writes benchmarks/results/throughput_<cpu|cuda>.json. Examples:
    python benchmarks/throughput.py                                  # synthetic set, 128 px, yolov8n + yolo11n
    python benchmarks/throughput.py --data ../shared/datasets/cards --imgsz 320 --epochs 20 --device 0

img/s counts training images per second of the training loop (Ultralytics: first batch to last epoch's end,
timed with its own callbacks; FastTrainer: its loop), so data decoding, model setup and validation are left out
of ``img_per_s_*`` and kept in ``wall_s`` / ``img_per_s_*_wall``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import ultranas  # noqa: F401  (offline runtime and Ultralytics' thread settings before torch)

# isort: split
import torch
import yaml
from ultralytics.utils.callbacks import base as ultralytics_callbacks

from ultranas import ultra
from ultranas.data import load_data_yaml, resolve_data
from ultranas.estimation import compressed_schedule
from ultranas.estimation._device_data import DeviceDataset, torch_device
from ultranas.estimation._fast_train import FastTrainer, bf16_supported
from ultranas.space import load_space
from ultranas.synthetic import make_synthetic

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("map", "map50")


@contextlib.contextmanager
def loop_timer(times: dict):
    """Time Ultralytics' training loop with its own callbacks: start of training to the last epoch's end."""

    def start(trainer):
        times["start"] = time.perf_counter()

    def epoch_end(trainer):
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        times["end"] = time.perf_counter()

    events = {"on_train_start": start, "on_train_epoch_end": epoch_end}
    for event, fn in events.items():
        ultralytics_callbacks.default_callbacks[event].append(fn)
    try:
        yield times
    finally:
        for event, fn in events.items():
            ultralytics_callbacks.default_callbacks[event].remove(fn)


def ultralytics_run(model_yaml: Path, data: Path, work: Path, a, seed: int) -> dict:
    times, t0 = {}, time.perf_counter()
    with loop_timer(times):
        metrics, _ = ultra.train(model_yaml, data, work, f"{model_yaml.stem}-s{seed}", imgsz=a.imgsz, batch=a.batch,
                                 device=a.device, seed=seed, deterministic=False, workers=a.workers,
                                 **compressed_schedule(a.epochs, a.batch))
    return {**{k: metrics[k] for k in METRICS}, "loop_s": times["end"] - times["start"],
            "wall_s": time.perf_counter() - t0}


def fast_run(dataset: DeviceDataset, model_dicts: list[dict], a, seed: int, amp) -> list[dict]:
    t0 = time.perf_counter()
    results = FastTrainer(dataset, a.imgsz, a.epochs, a.batch, a.device, seed, amp=amp).train(model_dicts)
    wall = time.perf_counter() - t0
    return [{**{k: r[k] for k in METRICS}, "loop_s": r["train_s"], "wall_s": wall, "gpu_mem_gb": r.get("gpu_mem_gb")}
            for r in results]


def summarise(runs: dict[str, list[dict]], images: int, epochs: int) -> dict:
    """Per design: mAP over seeds; overall: img/s of one design (loop and wall), K sequential designs."""
    work = images * epochs
    per_design = {d: {"map": statistics.mean(r["map"] for r in rs), "map50": statistics.mean(r["map50"] for r in rs),
                      "maps": [round(r["map"], 4) for r in rs], "loop_s": [round(r["loop_s"], 2) for r in rs],
                      "wall_s": [round(r["wall_s"], 2) for r in rs]} for d, rs in runs.items()}
    loops = [r["loop_s"] for rs in runs.values() for r in rs]
    walls = [r["wall_s"] for rs in runs.values() for r in rs]
    k_loop = sum(statistics.mean(r["loop_s"] for r in rs) for rs in runs.values())
    return {"per_design": per_design, "map_mean": statistics.mean(p["map"] for p in per_design.values()),
            "img_per_s_1": work / statistics.mean(loops), "img_per_s_1_wall": work / statistics.mean(walls),
            "img_per_s_k_sequential": len(runs) * work / k_loop}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=None, help="data YAML or folder (default: the synthetic set in a temp dir)")
    p.add_argument("--designs", default="yolov8n,yolo11n", help="points of the yolo space")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0, help="Ultralytics loader workers (0: as ultranas trains)")
    p.add_argument("--no-fp32", action="store_true", help="skip the fp32 fast-trainer variant (bf16 CPUs)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    device = torch_device(a.device)
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = resolve_data(a.data) if a.data else make_synthetic(tmp / "synthetic", 128, 32, 128, seed=0)
        nc = len(load_data_yaml(data)["names"])
        space, designs = load_space("yolo"), a.designs.split(",")
        model_dicts = {d: space.render(space.point(d), nc) for d in designs}
        for d, md in model_dicts.items():
            (tmp / f"{d}.yaml").write_text(yaml.safe_dump(md, sort_keys=False))

        t0 = time.perf_counter()
        dataset = DeviceDataset(data, a.imgsz, device)
        decode_s, images = time.perf_counter() - t0, len(dataset)
        variants = {"fast": None}
        if device.type == "cpu" and bf16_supported(device) and not a.no_fp32:
            variants["fast_fp32"] = False  # like for like with Ultralytics' fp32 CPU training
        ultra_runs = {d: [] for d in designs}
        single = {v: {d: [] for d in designs} for v in variants}
        together = {v: [] for v in variants}
        for s in seeds:  # interleaved, so a change in machine load hits both trainers alike
            for d in designs:
                ultra_runs[d].append(ultralytics_run(tmp / f"{d}.yaml", data, tmp / "runs", a, s))
                for v, amp in variants.items():
                    single[v][d].append(fast_run(dataset, [model_dicts[d]], a, s, amp)[0])
            for v, amp in variants.items():
                together[v].append(fast_run(dataset, list(model_dicts.values()), a, s, amp))
        fast = {}
        for v, amp in variants.items():
            summary = summarise(single[v], images, a.epochs)
            k_loop = statistics.mean(rs[0]["loop_s"] for rs in together[v])
            summary.update(
                amp="bf16" if (amp is None and bf16_supported(device)) or amp else "fp32",
                img_per_s_k_concurrent=len(designs) * images * a.epochs / k_loop,
                k_concurrent_maps={d: [round(rs[i]["map"], 4) for rs in together[v]] for i, d in enumerate(designs)},
                k_concurrent_max_map_diff_vs_single=max(abs(rs[i]["map"] - single[v][d][j]["map"])
                                                        for j, rs in enumerate(together[v])
                                                        for i, d in enumerate(designs)))
            if device.type == "cuda":
                summary["gpu_mem_gb_1"] = max(r["gpu_mem_gb"] for rs in single[v].values() for r in rs)
                summary["gpu_mem_gb_k"] = max(rs[0]["gpu_mem_gb"] for rs in together[v])
            fast[v] = summary

    ultra_summary = summarise(ultra_runs, images, a.epochs)
    result = {
        "device": str(device), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "data": str(a.data or "synthetic: 128 train / 32 val images at 128 px (ultranas.synthetic)"),
        "designs": designs, "ultralytics_workers": a.workers, "imgsz": a.imgsz, "epochs": a.epochs,
        "batch": a.batch, "seeds": seeds,
        "train_images": images, "fast_decode_s": round(decode_s, 2), "ultralytics": ultra_summary, **fast,
    }
    for name in fast:
        f = fast[name]
        result[f"ratio_{name}_vs_ultralytics"] = {
            "speed_1": f["img_per_s_1"] / ultra_summary["img_per_s_1"],
            "speed_1_wall": f["img_per_s_1_wall"] / ultra_summary["img_per_s_1_wall"],
            "speed_k": f["img_per_s_k_concurrent"] / ultra_summary["img_per_s_k_sequential"],
            "map": f["map_mean"] / ultra_summary["map_mean"] if ultra_summary["map_mean"] > 0 else None,
            "map_per_design": {d: f["per_design"][d]["map"] / u["map"] if u["map"] > 0 else None
                               for d, u in ultra_summary["per_design"].items()},
        }
    result["wall_s"] = round(time.time() - t_start, 1)
    result = json.loads(json.dumps(result), parse_float=lambda x: round(float(x), 4))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"throughput_{'cuda' if device.type == 'cuda' else 'cpu'}{a.tag}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
