"""Final stage: for each reference, the best searched design no slower than it (at the deploy size), retrained with
every final seed beside the reference and every hand-designed point under the same latency, all with the very same
budget; written as ``found_<scale>.pt`` with the verdict in ``comparison.csv``.

Trainings are cached (in the study, and in ``--final-cache`` across runs) and may run ``--final-workers`` at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import optuna

from . import __version__, ultra
from .bands import make_bands
from .config import final_workers
from .estimation import compressed_schedule
from .fsutil import atomic_write_csv, atomic_write_text
from .verdict import Stats, print_table, verdict_lines

TS = optuna.trial.TrialState


def labels(references: list[str]) -> dict[str, str]:
    """``found_<scale letter>`` where that letter is unique among the references, else ``found_<reference>``."""
    letters = [r[-1] if r[-1] in "nsmlx" else r for r in references]
    return {r: f"found_{x if letters.count(x) == 1 else r}" for r, x in zip(references, letters)}


# -- training jobs ----------------------------------------------------------------------------------------------
def _train_final(job: dict) -> dict:
    """One final training (runs in a worker process when ``--final-workers`` > 1)."""
    import torch

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    t0 = time.time()
    metrics, best = ultra.train(job["yaml"], job["data"], job["project"], job["name"], verbose=job["verbose"],
                                **job["args"])
    return {**metrics, "best": str(best), "train_s": round(time.time() - t0, 1)}


class FinalCache:
    """Final results by key: in the study's user attributes and, if given, a JSON-lines file shared across runs."""

    def __init__(self, study, path: str | None):
        self.study, self.path, self.rows = study, Path(path) if path else None, {}
        if self.path and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.rows[rec["key"]] = rec["result"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from an interrupted run: that training is redone

    def get(self, key: str, need_weights: bool) -> dict | None:
        hit = self.study.user_attrs.get(key) or self.rows.get(key)
        if hit and (not need_weights or Path(hit["best"]).is_file()):
            return hit
        return None

    def put(self, key: str, result: dict) -> None:
        self.study.set_user_attr(key, result)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps({"key": key, "result": result}) + "\n")


def train_all(ctx, designs: dict[str, tuple], need_weights: set[str]) -> dict[str, list[dict]]:
    """Train every design (label -> (candidate, genotype)) with every final seed; returns label -> per-seed results."""
    cfg = ctx.cfg
    cache = FinalCache(ctx.study, cfg.final_cache)
    data_id = hashlib.sha1(Path(ctx.data).read_bytes()).hexdigest()[:12]  # the checked copy: same data, same id
    jobs, results = [], {label: [None] * len(cfg.final_seeds) for label in designs}
    for label, (cand, g) in designs.items():
        yaml_path = ctx.run_dir / "final" / f"{label}.yaml"
        atomic_write_text(yaml_path, ctx.space.to_yaml(g, ctx.nc))
        init = _inherited(ctx, label, cand) if cfg.final_init == "supernet" else None
        for i, seed in enumerate(cfg.final_seeds):
            key = (f"final:{cfg.data}|{data_id}|{cand.design_hash}|{cand.imgsz}|e{cfg.final_epochs}"
                   f"|b{cfg.batch}|f{cfg.fraction}|s{seed}" + (f"|init:{ctx.run_dir}" if init else ""))
            if (hit := cache.get(key, label in need_weights)) is not None:
                results[label][i] = hit
                continue
            args = dict(compressed_schedule(cfg.final_epochs, cfg.batch), imgsz=cand.imgsz, batch=cfg.batch,
                        device=cfg.device, seed=seed, deterministic=False, fraction=cfg.fraction)
            if init:
                args["pretrained"] = str(init)  # Ultralytics loads it into the model built from the YAML
            jobs.append(({"yaml": str(yaml_path), "data": str(ctx.data), "project": str(ctx.run_dir / "final"),
                          "name": f"{label}-s{seed}", "verbose": cfg.verbose, "args": args}, label, i, key))
    workers = final_workers(cfg)
    if jobs:
        print(f"ultranas: final stage: {len(jobs)} training(s) at {cfg.imgsz} px, {cfg.final_epochs} epochs, "
              f"seeds {','.join(map(str, cfg.final_seeds))}" + (f", {workers} at a time" if workers > 1 else ""),
              flush=True)
    for n, (job, label, i, key, result) in enumerate(_run(jobs, workers), 1):
        cache.put(key, result)
        results[label][i] = result
        print(f"ultranas: final {n}/{len(jobs)}: {label} seed {job['args']['seed']}: mAP50-95 {result['map']:.4f} "
              f"({result['train_s']:.0f} s)", flush=True)
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


# -- choosing what to compare -----------------------------------------------------------------------------------
def _pool(ctx) -> list[optuna.trial.FrozenTrial]:
    """Completed, trained designs, best first: re-ranked ones (``--rerank``) by their mAP, then by search score."""
    from .rerank import rank_key, records, rerank_setting

    done = [t for t in ctx.study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
            if "genotype" in t.user_attrs and not t.user_attrs.get("duplicate_of") and "metrics" in t.user_attrs]
    known = records(ctx.study, rerank_setting(ctx.cfg)) if ctx.cfg.rerank else {}
    return sorted(done, key=lambda t: rank_key(t, known))


def select(ctx, ref_cand, reference: str, pool, tries: int = 8):
    """The best-scoring trial whose latency, timed interleaved with the reference here and now, is not higher."""
    for t in pool[:tries * 4]:
        vs = t.user_attrs.get("info", {}).get("latency_vs", {}).get(reference)
        cand = ctx.candidate(t.user_attrs["genotype"], ctx.run_dir)
        if vs is None:
            vs = ctx.meter.versus(cand, ref_cand)
        if vs["ratio"] > 1.0 + ctx.meter.margin:
            continue  # clearly slower: no need to time it again
        tries -= 1
        check = ctx.meter.versus(cand, ref_cand, interleave=True)
        ctx.meter.release(cand)
        if check["ratio"] <= 1.0:
            return t, cand, check
        print(f"ultranas: trial {t.number} re-timed here at {check['ratio']:.3f}x {reference}'s latency "
              f"(searched at {vs['ratio']:.3f}x): not allowed, trying the next design", flush=True)
        if tries <= 0:
            break
    return None, None, None


def final_stage(ctx) -> list[dict]:
    """Retrain the winners, their references and the hand-designed points under each reference's latency; write
    ``found_*.pt`` and ``comparison.csv``; print the table and one verdict per reference."""
    cfg, pool = ctx.cfg, _pool(ctx)
    names = labels(cfg.references)
    plan = []
    bands = make_bands(cfg.references, {r: ctx.meter.reference(ctx.reference(r))["median_ms"] for r in cfg.references})
    for band in bands:
        reference, ref = band.reference, ctx.reference(band.reference)
        winner, found, check = select(ctx, ref, reference, pool)
        points = {}  # hand-designed points in the reference's band: no slower, and slower than the next faster one
        for name, g in ctx.space.points.items():
            cand = ctx.candidate(g, ctx.run_dir)
            vs = {r: ctx.meter.versus(cand, ctx.reference(r)) for r in filter(None, (reference, band.faster))}
            if band.holds(vs) or name == reference:  # the reference always stands beside its found design
                points[name] = (cand, vs[reference])
        plan.append((reference, ref, winner, found or ref, check or {"ratio": 1.0, "how": "same design"}, points))
    designs, need_weights = {}, set()
    for *_, found, _check, points in plan:
        for cand in (found, *(c for c, _ in points.values())):
            ctx.judge(cand)  # latency facts for the table (measured once, cached)
        flabel = _design_label(ctx, found)
        designs[flabel] = (found, found.genotype)
        need_weights.add(flabel)
        for name, (cand, _) in points.items():
            designs.setdefault(name, (cand, cand.genotype))
    int8 = next((o for o in ctx.objectives if o.name == "int8_drop"), None)
    results = train_all(ctx, designs, set(designs) if int8 else need_weights)
    int8_facts = int8_all(ctx, int8, designs, results) if int8 else {}
    rows = []
    for reference, ref, winner, found, check, points in plan:
        flabel, out = _design_label(ctx, found), ctx.run_dir / f"{names[reference]}.pt"
        stats = {label: Stats.of(results[label]) for label in [flabel, *points]}
        best_hand = max(points, key=lambda p: stats[p].mean) if points else reference
        lines = verdict_lines(names[reference], stats[flabel], reference, stats[reference], best_hand,
                              stats[best_hand], check["ratio"], flabel if flabel in ctx.space.points else None,
                              winner is None)
        best_seed = max(range(len(cfg.final_seeds)), key=lambda i: results[flabel][i]["map"])
        nas_info = {
            "ultranas_version": __version__, "space": ctx.space.name, "space_version": ctx.space.version,
            "genotype": found.genotype, "hash": found.design_hash, "imgsz": found.imgsz,
            "proxy_imgsz": found.proxy_imgsz, "reference": reference, "objectives": list(cfg.objectives),
            "search_trial": winner.number if winner else None,
            "search_score": winner.user_attrs["metrics"]["score"] if winner else None,
            "rerank": ctx.study.user_attrs.get(f"rerank:{found.design_hash}") if winner else None,
            "is_hand_designed": flabel in ctx.space.points, "same_as_reference": found.design_hash == ref.design_hash,
            "run": str(ctx.run_dir.resolve()), "data": cfg.data, "final_epochs": cfg.final_epochs,
            "final_seeds": list(cfg.final_seeds), "best_seed": cfg.final_seeds[best_seed],
            "map50_95": stats[flabel].as_dict(), "reference_map50_95": stats[reference].as_dict(),
            "best_hand_designed": best_hand, "best_hand_designed_map50_95": stats[best_hand].as_dict(),
            "latency_ms": found.info.get("latency_ms"), "latency_ratio": round(check["ratio"], 4),
            "latency_how": check["how"], "latency_target": cfg.latency_target, "verdict": lines,
        }
        if flabel in int8_facts:
            nas_info["int8"] = int8_facts[flabel]
        ultra.write_nas_checkpoint(results[flabel][best_seed]["best"], out, nas_info)
        for label, cand, role in [(flabel, found, "found"), *((p, points[p][0], "reference" if p == reference else
                                                             "hand-designed") for p in points)]:
            ratio = check["ratio"] if role == "found" else points[label][1]["ratio"]
            rows.append(_row(cfg, reference, out.stem if role == "found" else label, role, cand, results[label],
                             ratio, lines[0] if role == "found" else "", int8_facts.get(label)))
        for line in lines:
            print(f"ultranas: {line}")
    atomic_write_csv(ctx.run_dir / "comparison.csv", rows)
    print_table(rows)
    scores = [t.user_attrs["metrics"]["score"] for t in pool]
    if scores and max(scores) - min(scores) < 1e-6:
        print("ultranas: warning: every design scored the same, so the choice above rests on latency alone. The data "
              "or the budget gives no accuracy signal (coco8 from scratch never does): use a learnable dataset, more "
              "--epochs or a larger --proxy-imgsz, and check with 'ultranas calibrate'.")
    return rows


def _design_label(ctx, cand) -> str:
    for name, g in ctx.space.points.items():
        if ctx.space.design_hash(g, ctx.nc) == cand.design_hash:
            return name
    return f"design-{cand.design_hash}"


def int8_all(ctx, int8, designs: dict[str, tuple], results: dict[str, list[dict]]) -> dict[str, dict]:
    """Each final design shipped in INT8 (OpenVINO, NNCF): mAP50-95 of every seed's weights, the drop from fp32,
    and the INT8 latency (``openvino-cpu-int8``); cached in the study beside the trainings."""
    from .objectives.latency import cached_latency

    out = {}
    for label, (cand, _) in designs.items():
        runs = []
        for res in results[label]:
            weights = hashlib.sha1(Path(res["best"]).read_bytes()).hexdigest()[:16]
            key = f"final-int8:{weights}|{cand.imgsz}|{int8.version}"
            if (hit := ctx.study.user_attrs.get(key)) is None:
                hit = int8.metrics(res["best"], cand.imgsz)
                ctx.study.set_user_attr(key, hit)
            runs.append(hit)
        lat = cached_latency(cand.model_dict, cand.design_hash, cand.imgsz, "openvino-cpu-int8", ctx.meter.cache)
        maps = Stats.of(runs, "int8_map")
        out[label] = {"map50_95": maps.as_dict(), "drop_mean": Stats.of(runs, "int8_drop").mean,
                      "latency_ms": lat["median_ms"], "latency_target": "openvino-cpu-int8"}
        print(f"ultranas: INT8 {label}: mAP50-95 {maps.mean:.4f} (drop {out[label]['drop_mean']:+.4f}), "
              f"{lat['median_ms']:.2f} ms on openvino-cpu-int8", flush=True)
    return out


def _row(cfg, reference, model, role, cand, runs, ratio, verdict, int8: dict | None = None) -> dict:
    s = Stats.of(runs)
    row = {"reference": reference, "model": model, "role": role, "hash": cand.design_hash}
    row.update({f"map50_95_s{seed}": round(r["map"], 4) for seed, r in zip(cfg.final_seeds, runs)})
    row.update({"map50_95_mean": round(s.mean, 4), "map50_95_sd": round(s.sd, 4) if s.n > 1 else "",
                "map50_mean": round(sum(r["map50"] for r in runs) / len(runs), 4), "seeds": s.n,
                "latency_ms": round(cand.info.get("latency_ms") or 0.0, 3), "latency_ratio": round(ratio, 3),
                "params": cand.info["params"], "gflops": round(cand.info["gflops"], 3), "imgsz": cand.imgsz,
                "proxy_imgsz": cand.proxy_imgsz, "final_epochs": cfg.final_epochs,
                "train_s": round(sum(r["train_s"] for r in runs), 1), "verdict": verdict})
    if int8:
        row.update({"int8_map50_95_mean": round(int8["map50_95"]["mean"], 4), "int8_drop": round(int8["drop_mean"], 4),
                    "int8_latency_ms": round(int8["latency_ms"], 3)})
    return row
