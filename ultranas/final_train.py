"""The final stage's trainings: every design with every final seed on all of ``train``, each then validated on the
verdict split with its matches kept per image (for the confidence intervals); cached in the study and, if given,
in ``--final-cache`` across runs; ``--final-workers`` at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from . import ultra
from .bootstrap import ImageMatches
from .config import final_workers
from .data import _label_dir, class_names, list_images, load_data_yaml
from .estimation import compressed_schedule
from .fsutil import atomic_write_text
from .progress import Ticker, final_status
from .study import StudyRecord
from .verdict import Stats

KEY_VERSION = "v2"  # v2: judged on the verdict split, with per-image matches


def _validate(best: str | Path, verdict: str, imgsz: int, batch: int, device: str) -> dict:
    """mAP of ``best`` on the verdict split (``verdict``'s val) as the trainer's final validation runs it, and its
    per-image matches saved beside the training (``verdict_matches.npz``)."""
    metrics, per_image = ultra.validate_per_image(best, verdict, imgsz, 2 * batch, device)
    path = ImageMatches.from_images(per_image).save(Path(best).parent.parent / "verdict_matches.npz")
    return {**metrics, "matches": str(path), "n_images": len(per_image)}


def _train_final(job: dict) -> dict:
    """One final training and its validation on the verdict split (in a worker process when ``--final-workers`` > 1)."""
    import torch

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    t0 = time.time()
    try:
        metrics, best = ultra.train(job["yaml"], job["data"], job["project"], job["name"], verbose=job["verbose"],
                                    **job["args"])
    finally:
        if job.get("inherited"):  # the per-seed starting weights from --pretrained: not kept
            Path(job["args"]["pretrained"]).unlink(missing_ok=True)
    train_s = round(time.time() - t0, 1)
    judged = _validate(best, job["verdict"], job["args"]["imgsz"], job["args"]["batch"], job["args"]["device"])
    return {**metrics, "trainer_map": metrics["map"], **judged, "best": str(best), "train_s": train_s,
            **job.get("inherited", {})}


class FinalCache:
    """Final results by key: in the study's ``final`` cache and, if given, a JSON-lines file shared across runs
    (its rows keyed ``final:<key>``)."""

    def __init__(self, study, path: str | None):
        self.stored, self.path, self.rows = StudyRecord(study).cache("final"), Path(path) if path else None, {}
        if self.path and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.rows[rec["key"]] = rec["result"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from an interrupted run: that training is redone

    def get(self, key: str, need_weights: bool) -> dict | None:
        hit = self.stored.get(key) or self.rows.get("final:" + key)
        if hit and (not need_weights or Path(hit["best"]).is_file()) and Path(hit.get("matches", "")).is_file():
            return hit
        return None

    def put(self, key: str, result: dict) -> None:
        self.stored.put(key, result)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps({"key": "final:" + key, "result": result}) + "\n")


def data_id(verdict_yaml: Path) -> str:
    """The final data's identity: the train and verdict folders, class names and every image's and label's name,
    size and modification time there (not the run the YAML is written in)."""
    cfg = load_data_yaml(verdict_yaml)
    h = hashlib.sha1(json.dumps([cfg["train"], cfg["val"], cfg["names"]]).encode())
    for split in ("train", "val"):
        folder = Path(cfg[split])
        for f in [*list_images(folder), *sorted(_label_dir(folder).rglob("*.txt"))]:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def train_all(ctx, designs: dict[str, tuple], need_weights: set[str]) -> dict[str, list[dict]]:
    """Train every design (label -> (candidate, genotype)) with every final seed; returns label -> per-seed results."""
    cfg = ctx.cfg
    cache = FinalCache(ctx.study, cfg.final_cache)
    ident = data_id(ctx.judge_data)
    jobs, results = [], {label: [None] * len(cfg.final_seeds) for label in designs}
    names = list(class_names(ctx.full_data).values())
    for label, (cand, g) in designs.items():
        yaml_path = ctx.run_dir / "final" / f"{label}.yaml"
        atomic_write_text(yaml_path, ctx.space.to_yaml(g, ctx.nc))
        init, origin, inherit = None, "", ctx.inherit
        if cfg.final_init == "supernet":
            init, origin = _inherited(ctx, label, cand), f"|init:{ctx.run_dir}"
        elif inherit is not None:  # fine-tuned from the user's checkpoints: each point from its own
            origin = f"|pretrained:{inherit.ident}"
        for i, seed in enumerate(cfg.final_seeds):
            key = (f"{KEY_VERSION}|{cfg.data}|{ident}|{cand.design_hash}|{cand.imgsz}|e{cfg.final_epochs}"
                   f"|b{cfg.batch}|f{cfg.fraction}|s{seed}" + origin)
            if (hit := cache.get(key, label in need_weights)) is not None:
                results[label][i] = hit
                continue
            args = dict(compressed_schedule(cfg.final_epochs, cfg.batch), imgsz=cand.imgsz, batch=cfg.batch,
                        device=cfg.device, seed=seed, deterministic=False, fraction=cfg.fraction)
            inherited = {}
            if inherit is not None:  # written per seed: what is not inherited starts as that seed's would
                init, inherited = inherit.checkpoint(cand.model_dict, g, names, ctx.run_dir / "final" /
                                                     f"{label}.s{seed}.inherited.pt", seed)
                if not any(job[1] == label for job in jobs):
                    print(f"ultranas: final {label} starts from {inherited['inherited']:.0%} of its parameters "
                          f"inherited from {inherited['inherited_from']}", flush=True)
            if init:
                args["pretrained"] = str(init)  # Ultralytics loads it into the model built from the YAML
            digest = hashlib.sha1(("final:" + key).encode()).hexdigest()[:6]  # as the stored key names it
            name = f"{label}-s{seed}-{digest}"  # another budget: its own folder
            jobs.append(({"yaml": str(yaml_path), "data": str(ctx.full_data), "verdict": str(ctx.judge_data),
                          "project": str(ctx.run_dir / "final"), "name": name, "verbose": cfg.verbose, "args": args,
                          "inherited": inherited},
                         label, i, key))
    workers = final_workers(cfg)
    if jobs:
        sizes = sorted({job["args"]["imgsz"] for job, *_ in jobs})
        print(f"ultranas: final stage: {len(jobs)} training(s) at {'/'.join(map(str, sizes))} px (each design at its "
              f"own size), {cfg.final_epochs} epochs, "
              f"seeds {','.join(map(str, cfg.final_seeds))}, on all of train, judged on {ctx.splits.judge_on}"
              + (f", {workers} at a time" if workers > 1 else ""), flush=True)
    folders, t0 = [Path(job["project"]) / job["name"] for job, *_ in jobs], time.time()
    bar = tqdm(total=len(jobs), desc="ultranas final", unit="training", dynamic_ncols=True,
               disable=not jobs or not ctx.progress)
    try:
        with Ticker(bar, lambda: final_status(folders, cfg.final_epochs, t0, time.time)):
            for n, (job, label, i, key, result) in enumerate(_run(jobs, workers), 1):
                cache.put(key, result)
                results[label][i] = result
                bar.write(f"ultranas: final {n}/{len(jobs)}: {label} seed {job['args']['seed']}: mAP50-95 "
                          f"{result['map']:.4f} on {result['n_images']} {ctx.splits.judge_on} images "
                          f"({result['train_s']:.0f} s)")
                sys.stdout.flush()  # a log file or pipe sees each training as it ends
                bar.update()
    finally:
        bar.close()
    return results


def _inherited(ctx, label: str, cand) -> Path:
    """The design's weights inherited from the run's supernet (batch norm re-estimated), as a checkpoint."""
    path = ctx.run_dir / "final" / f"{label}.inherited.pt"
    if not path.is_file():
        ultra.save_trained(ctx.estimator.model(cand), path)
    return path


def _run(jobs: list[tuple], workers: int):
    """Yield (job, label, index, key, result) as trainings finish; in this process, or in ``workers`` processes."""
    if workers <= 1 or len(jobs) <= 1:
        for job, label, i, key in jobs:
            yield job, label, i, key, _train_final(job)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_train_final, {**job, "threads": threads}): (job, label, i, key)
                   for job, label, i, key in jobs}
        for fut in as_completed(futures):
            job, label, i, key = futures[fut]
            yield job, label, i, key, fut.result()


def int8_all(ctx, int8, designs: dict[str, tuple], results: dict[str, list[dict]]) -> dict[str, dict]:
    """Each final design shipped in INT8 (OpenVINO, NNCF): mAP50-95 of every seed's weights on the verdict split,
    the drop from fp32, and the INT8 latency (``openvino-cpu-int8``); cached in the study beside the trainings."""
    from .objectives.int8 import Int8DropObjective
    from .objectives.latency import cached_latency

    judge = Int8DropObjective(ctx.judge_data, calib_images=int8.calib_images, single_cls=int8.single_cls)
    out, ident, stored = {}, data_id(ctx.judge_data), StudyRecord(ctx.study).cache("final-int8")
    for label, (cand, _) in designs.items():
        runs = []
        for res in results[label]:
            weights = hashlib.sha1(Path(res["best"]).read_bytes()).hexdigest()[:16]
            key = f"{weights}|{ident}|{cand.imgsz}|{judge.version}"
            if (hit := stored.get(key)) is None:
                hit = judge.metrics(res["best"], cand.imgsz)
                stored.put(key, hit)
            runs.append(hit)
        lat = cached_latency(cand.model_dict, cand.design_hash, cand.imgsz, "openvino-cpu-int8", ctx.meter.cache)
        maps = Stats.of(runs, "int8_map")
        out[label] = {"map50_95": maps.as_dict(), "drop_mean": Stats.of(runs, "int8_drop").mean,
                      "latency_ms": lat["median_ms"], "latency_target": "openvino-cpu-int8"}
        print(f"ultranas: INT8 {label}: mAP50-95 {maps.mean:.4f} (drop {out[label]['drop_mean']:+.4f}), "
              f"{lat['median_ms']:.2f} ms on openvino-cpu-int8", flush=True)
    return out
