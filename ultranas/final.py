"""Final stage: for each reference baseline, the best searched design no slower than it, retrained with the very
same budget as the baseline, written as ``found_<scale>.pt``, and compared in ``comparison.csv``."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from . import __version__, ultra
from .errors import UserError
from .estimation import compressed_schedule
from .fsutil import atomic_write_csv, atomic_write_text

TS = optuna.trial.TrialState


def _label(reference: str) -> str:
    return reference[-1] if reference[-1] in "nsmlx" else reference


def _train_once(ctx, cand, label: str) -> dict:
    """Train ``cand`` with the final budget, reusing an earlier result of the same design (resume, or 2 references)."""
    cfg = ctx.cfg
    key = f"final:{cand.design_hash}:{cfg.final_epochs}:{cand.imgsz}:{cfg.seed}"
    cached = ctx.study.user_attrs.get(key)
    if cached and Path(cached["best"]).is_file():
        return cached
    yaml_path = ctx.run_dir / "final" / f"{label}.yaml"
    atomic_write_text(yaml_path, ctx.space.to_yaml(cand.genotype, ctx.nc))
    t0 = time.time()
    args = dict(compressed_schedule(cfg.final_epochs, cfg.batch), imgsz=cand.imgsz, batch=cfg.batch,
                device=cfg.device, seed=cfg.seed, deterministic=False, fraction=cfg.fraction)
    metrics, best = ultra.train(yaml_path, ctx.data, ctx.run_dir / "final", label, verbose=cfg.verbose, **args)
    result = {**metrics, "best": str(best), "train_s": round(time.time() - t0, 1)}
    ctx.study.set_user_attr(key, result)
    return result


def select(ctx, max_latency: float) -> optuna.trial.FrozenTrial | None:
    """Best completed design (highest score, then lowest latency) with latency <= ``max_latency``."""
    pool = [t for t in ctx.study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
            if "genotype" in t.user_attrs and not t.user_attrs.get("duplicate_of")
            and t.user_attrs.get("info", {}).get("latency_ms", float("inf")) <= max_latency]
    if not pool:
        return None
    return max(pool, key=lambda t: (t.user_attrs["metrics"]["score"], -t.user_attrs["info"]["latency_ms"]))


def final_stage(ctx) -> list[dict]:
    """Retrain the winners and their references; write found_*.pt and comparison.csv; print the table."""
    rows = []
    for reference in ctx.cfg.references:
        try:
            ref_g = ctx.space.point(reference)
        except UserError:
            print(f"ultranas: reference '{reference}' is not a point of space {ctx.space.name}; skipped")
            continue
        ref = ctx.candidate(ref_g, ctx.run_dir / "references" / reference)
        winner = select(ctx, ref.info["latency_ms"])
        g = winner.user_attrs["genotype"] if winner else ref_g
        found = ctx.candidate(g, ctx.run_dir / "references" / f"found_{_label(reference)}")
        found_res = _train_once(ctx, found, f"found_{_label(reference)}")
        ref_res = _train_once(ctx, ref, reference)
        out = ctx.run_dir / f"found_{_label(reference)}.pt"
        nas_info = {
            "ultranas_version": __version__, "space": ctx.space.name, "space_version": ctx.space.version,
            "genotype": g, "hash": found.design_hash, "imgsz": found.imgsz, "reference": reference,
            "objectives": list(ctx.cfg.objectives), "search_trial": winner.number if winner else None,
            "search_score": winner.user_attrs["metrics"]["score"] if winner else None,
            "run": str(ctx.run_dir.resolve()), "data": str(ctx.data), "final_epochs": ctx.cfg.final_epochs,
            "latency_ms": found.info["latency_ms"], "latency_target": ctx.cfg.latency_target,
        }
        ultra.write_nas_checkpoint(found_res["best"], out, nas_info)
        for model, cand, res in ((out.stem, found, found_res), (reference, ref, ref_res)):
            rows.append({"reference": reference, "model": model, "hash": cand.design_hash,
                         "map50_95": round(res["map"], 4), "map50": round(res["map50"], 4),
                         "latency_ms": round(cand.info["latency_ms"], 3), "params": cand.info["params"],
                         "gflops": round(cand.info["gflops"], 3), "imgsz": cand.imgsz,
                         "final_epochs": ctx.cfg.final_epochs, "train_s": res["train_s"],
                         "same_design": found.design_hash == ref.design_hash})
    atomic_write_csv(ctx.run_dir / "comparison.csv", rows)
    print_table(rows)
    scores = [t.user_attrs["metrics"]["score"] for t in ctx.study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
              if "metrics" in t.user_attrs]
    if scores and max(scores) - min(scores) < 1e-6:
        print("ultranas: warning: every design scored the same, so the choice above rests on latency alone. The data "
              "or the budget gives no accuracy signal (coco8 from scratch never does): use a learnable dataset, more "
              "--epochs or a larger --imgsz, and check with 'ultranas calibrate'.")
    return rows


def print_table(rows: list[dict]) -> None:
    cols = ("model", "map50_95", "map50", "latency_ms", "params", "gflops")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols] if rows else [len(c) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))
