"""The calibration's verdict: rank correlations per estimator, whether the reference can rank at all, the
recommended estimator, and applying that recommendation to a search's settings (``--calibration``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserError
from ._rank_stats import rank_correlation, seed_noise


def summarize(rows: list[dict], proxies: list[str], a, seeds: list[int]) -> dict:
    """The report: rank correlations of each estimator (and params, GFLOPs) with the seed-averaged reference, over
    all designs and inside the cost band, their costs, the reference's noise, the verdict and the recommendation."""
    ref = [float(np.mean(r["reference_runs"])) for r in rows]
    band_row = next((r for r in rows if r["design"] == a.band_point), None)
    center = band_row["gflops"] if band_row else float(np.median([r["gflops"] for r in rows]))
    band = [i for i, r in enumerate(rows) if abs(r["gflops"] - center) <= a.band * center]
    noise = seed_noise([r["reference_runs"] for r in rows])
    noise["band"] = seed_noise([rows[i]["reference_runs"] for i in band]) if len(band) > 2 else None
    ref_s = float(np.mean([r["reference_s"] for r in rows]))
    scores = {p: [r["proxy"][p] for r in rows] for p in proxies}
    scores["params"] = [r["params"] for r in rows]  # the baselines any estimator must beat: bigger ranks higher
    scores["gflops"] = [r["gflops"] for r in rows]
    out = {"designs": len(rows), "reference_epochs": a.reference_epochs, "reference_seeds": seeds,
           "proxy_epochs": a.proxy_epochs, "proxy_imgsz": a.proxy_imgsz or a.imgsz, "trainer": a.trainer,
           "batch": a.batch,
           "imgsz": a.imgsz, "data": str(a.data), "band": {"point": a.band_point, "gflops": center, "size": len(band)},
           "noise": noise, "estimators": {}}
    for p, s in scores.items():
        cost = float(np.mean([r["proxy_s"][p] for r in rows])) / ref_s if p in proxies else 0.0
        out["estimators"][p] = {
            "all": rank_correlation(s, ref),
            "band": rank_correlation([s[i] for i in band], [ref[i] for i in band]),
            "cost_ratio": round(cost, 4),
        }
        if p.startswith("short-train"):  # images x pixels trained, proxy / one reference run: free of timing noise
            px = (a.proxy_imgsz or a.imgsz) ** 2 * a.proxy_epochs / (a.imgsz ** 2 * a.reference_epochs)
            out["estimators"][p]["nominal_cost_ratio"] = round(px, 4)
    if not noise["reference_ranks"]:
        out["verdict"] = (f"the reference cannot rank these designs: its spread across designs "
                          f"(std {noise['design_std']:.4f}) is within seed noise (std {noise['seed_std'] or 0:.4f}); "
                          "tau values are not meaningful. Use learnable data, more epochs or larger images.")
        out["recommended"] = None
    else:
        def key(p):
            e = out["estimators"][p]
            t = e["band"]["tau"] if e["band"]["tau"] is not None else e["all"]["tau"]
            return -1 if t is None else t
        best = max(proxies, key=key)
        out["recommended"] = best if key(best) > max(key("params"), key("gflops")) else None
        out["verdict"] = (f"{best} ranks best (band tau {out['estimators'][best]['band']['tau']}, all tau "
                          f"{out['estimators'][best]['all']['tau']}); "
                          + ("it beats params and GFLOPs." if out["recommended"] else "it does NOT beat params/GFLOPs."))
    out["rows"] = rows
    return out


def apply_calibration(cfg, path: str | Path) -> str:
    """Set ``cfg``'s estimator from a saved ``calibration.json``; returns a one-line account of what was chosen."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--calibration {path}: cannot read a calibration.json ({e})") from None
    if not isinstance(report, dict) or "recommended" not in report:
        raise UserError(f"--calibration {path}: not a calibration.json written by 'ultranas calibrate'")
    best = report["recommended"]
    if best is None:
        return f"calibration {path} recommends no estimator ({report.get('verdict', '')[:120]}); keeping --estimator {cfg.estimator}"
    base, _, score = best.partition(":")
    if base in ("short-train", "supernet"):  # training estimators: the proxy as calibrated
        cfg.estimator, cfg.epochs, cfg.score = base, int(report["proxy_epochs"]), score or "map"
        cfg.proxy_imgsz = int(report.get("proxy_imgsz") or report["imgsz"])  # never the deploy size (--imgsz)
        cfg.batch = int(report.get("batch") or cfg.batch)  # files before 2026-11 lack it
        if base == "short-train":
            cfg.trainer = report.get("trainer", "ultralytics")
    elif best.startswith("zero-cost:"):
        cfg.estimator, cfg.proxy = "zero-cost", best.split(":", 1)[1]
        cfg.batch = int(report.get("batch") or cfg.batch)  # the proxy's batch as it was calibrated
    tau = report.get("estimators", {}).get(best, {}).get("band", {}).get("tau")
    return f"calibration {path}: using {best} (band tau {tau})"
