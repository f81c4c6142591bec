"""``ultranas calibrate``: does a cheap estimator rank designs like a (seed-averaged) reference training does?

Reports Kendall tau and Spearman rho with bootstrap 90 % intervals, over all designs and within a cost band
(GFLOPs within +-20 % of a reference point's), beside params and GFLOPs as the proxies to beat; refuses to
report a tau when the reference's spread across designs is within its own seed noise.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from scipy import stats

from .. import ultra
from ..data import class_names, safe_data_yaml
from ..errors import UserError
from ..fsutil import atomic_savefig, atomic_write_json
from ..objectives._base import Candidate
from ..space import load_space
from ._base import SCORES, signed_score


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="coco8.yaml")
    p.add_argument("--space", default="yolo")
    p.add_argument("--n", type=int, default=12, help="designs (the space's points first, then random samples)")
    p.add_argument("--proxy", default="short-train",
                   help="comma list: short-train[:map|loss_drop|val_loss|train_loss], zero-cost:<proxy>")
    p.add_argument("--proxy-epochs", type=int, default=2)
    p.add_argument("--proxy-imgsz", type=int, default=None, help="short-train proxy image size (default --imgsz)")
    p.add_argument("--trainer", default="ultralytics", choices=("ultralytics", "fast"),
                   help="trainer of the reference and the short-train proxy")
    p.add_argument("--reference-cache", default=None,
                   help="JSON-lines file of reference results: reused when present, appended when new")
    p.add_argument("--reference-epochs", type=int, default=10)
    p.add_argument("--seeds", default="0,1", help="reference seeds (>= 2 to measure seed noise)")
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--band", type=float, default=0.2, help="cost band: GFLOPs within +-band of --band-point")
    p.add_argument("--band-point", default="yolo11n")
    p.add_argument("--band-samples", type=int, default=0, help="random designs drawn inside the cost band")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--project", default="runs/calibrate")
    p.add_argument("--name", default="exp")
    p.add_argument("--verbose", action="store_true")


def rank_correlation(x, y, n_boot: int = 1000, seed: int = 0) -> dict:
    """Kendall tau and Spearman rho with bootstrap 90 % intervals (resampling designs)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return {"n": len(x), "tau": None, "rho": None}
    tau, rho = stats.kendalltau(x, y).statistic, stats.spearmanr(x, y).statistic
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if len(set(idx)) < 3:
            continue
        t, r = stats.kendalltau(x[idx], y[idx]).statistic, stats.spearmanr(x[idx], y[idx]).statistic
        if np.isfinite(t) and np.isfinite(r):
            taus.append(t)
            rhos.append(r)

    def ci(v):
        return [round(float(np.percentile(v, 5)), 3), round(float(np.percentile(v, 95)), 3)] if v else None

    def fin(v):
        return round(float(v), 3) if np.isfinite(v) else None

    return {"n": len(x), "tau": fin(tau), "tau_ci90": ci(taus), "rho": fin(rho), "rho_ci90": ci(rhos)}


def seed_noise(ref_runs: list[list[float]]) -> dict:
    """Per-design std over seeds (the noise) against the std of design means (the signal).

    Also the noise ceiling: ``seed_pair_tau``, Kendall tau between the rankings of two reference seeds (mean over
    seed pairs) — what a perfect estimator could reach against one seed — and ``reliability``, the share of the
    seed-averaged reference's variance across designs that is not seed noise (``1 - noise**2 / k / spread**2``).
    """
    per_design = [float(np.std(r, ddof=1)) for r in ref_runs if len(r) > 1]
    noise = float(np.mean(per_design)) if per_design else None
    spread = float(np.std([np.mean(r) for r in ref_runs], ddof=1)) if len(ref_runs) > 1 else 0.0
    ranks = noise is not None and spread > 2 * noise and spread > 1e-4
    k = min((len(r) for r in ref_runs), default=0)
    pair_taus = []
    for i in range(k):
        for j in range(i + 1, k):
            t = stats.kendalltau([r[i] for r in ref_runs], [r[j] for r in ref_runs]).statistic
            if np.isfinite(t):
                pair_taus.append(float(t))
    reliability = None
    if noise is not None and spread > 0:
        reliability = round(max(0.0, 1 - noise ** 2 / k / spread ** 2), 3)
    return {"seed_std": noise, "design_std": spread, "reference_ranks": bool(ranks),
            "seed_pair_tau": round(float(np.mean(pair_taus)), 3) if pair_taus else None, "reliability": reliability}


def _sample_designs(space, n: int, seed: int, band_samples: int = 0, band: float = 0.2, band_point: str = "yolo11n",
                    imgsz: int = 64) -> list[tuple[str, dict]]:
    """The space's points, then random designs; the first ``band_samples`` of them within the cost band."""
    designs, seen, rng = [], set(), random.Random(seed)
    for name, g in space.points.items():
        designs.append((name, g))
        seen.add(space.design_hash(g))
    center = None
    if band_samples and band_point in space.points:
        center = ultra.gflops(ultra.build_model(space.render(space.point(band_point))), imgsz)
    in_band = 0
    while len(designs) < n:
        g = space.sample(rng)
        if center is not None and in_band < band_samples:
            if abs(ultra.gflops(ultra.build_model(space.render(g)), imgsz) - center) > band * center:
                continue
            in_band += 1
        if (h := space.design_hash(g)) not in seen:
            seen.add(h)
            designs.append((f"sample{len(designs)}", g))
    return designs[:max(n, len(space.points))]


def _train_estimator(data, a, epochs: int, imgsz: int | None = None):
    from . import make_estimator

    return make_estimator("short-train", data, epochs=epochs, imgsz=a.imgsz, batch=a.batch, device=a.device,
                          seeds=(a.seed,), verbose=a.verbose, trainer=a.trainer, train_imgsz=imgsz)


def _proxy_estimators(specs: list[str], data, a) -> dict[str, tuple]:
    """``{spec: (estimator, result key)}``; every ``short-train[:score]`` spec shares one training run."""
    out, short = {}, None
    for spec in specs:
        base, _, key = spec.partition(":")
        if base == "short-train":
            key = key or "map"
            if key not in SCORES:
                raise UserError(f"unknown --proxy '{spec}': short-train scores are {', '.join(SCORES)}")
            if key != "map" and a.trainer != "fast":
                raise UserError(f"--proxy {spec} needs --trainer fast (it records training and validation losses)")
            short = short or _train_estimator(data, a, a.proxy_epochs, a.proxy_imgsz)
            out[spec] = (short, key)
        elif base == "zero-cost" and key:
            from ._zero_cost import ZeroCostEstimator

            out[spec] = (ZeroCostEstimator(data, proxy=key, imgsz=a.imgsz, seed=a.seed, device=a.device), "score")
        else:
            raise UserError(f"unknown --proxy '{spec}': use short-train[:map|loss_drop|val_loss|train_loss] or "
                            "zero-cost:<name>")
    return out


def calibrate(**kwargs) -> dict:
    """Run the calibration (keyword arguments as the CLI flags); returns and saves ``calibration.json``."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    a = defaults.parse_args([])
    for k, v in kwargs.items():
        setattr(a, k, v)
    seeds = [int(s) for s in str(a.seeds).split(",") if s.strip()] if isinstance(a.seeds, str) else list(a.seeds)
    if a.n < 3 or a.reference_epochs <= 0 or a.proxy_epochs <= 0:
        raise UserError("--n must be >= 3 and epochs positive")
    data = safe_data_yaml(a.data)  # Ultralytics reads only the checked copy
    nc, space = len(class_names(data)), load_space(a.space)
    from ultralytics.utils.files import increment_path

    proxies = [p.strip() for p in str(a.proxy).split(",") if p.strip()]
    estimators = _proxy_estimators(proxies, data, a)  # bad specs fail before anything is written
    run_dir = increment_path(Path(a.project) / a.name, mkdir=True)
    reference = _train_estimator(data, a, a.reference_epochs)
    cache = ReferenceCache(a.reference_cache, data, a)
    rows = []
    from tqdm import tqdm

    designs = _sample_designs(space, a.n, a.seed, a.band_samples, a.band, a.band_point, a.imgsz)
    for label, g in tqdm(designs, desc="calibrate", unit="design"):
        cand = Candidate(g, space.render(g, nc), space.design_hash(g, nc), space.imgsz(g, a.imgsz),
                         run_dir / "designs" / label)
        cand.workdir.mkdir(parents=True, exist_ok=True)
        (cand.workdir / "model.yaml").write_text(space.to_yaml(g, nc))
        model = ultra.build_model(cand.model_dict)
        row = {"design": label, "hash": cand.design_hash, "params": ultra.count_params(model),
               "gflops": ultra.gflops(model, cand.imgsz), "reference_runs": [], "proxy": {}, "proxy_s": {}}
        costs = []
        for s in seeds:
            if (hit := cache.get(cand, s)) is None:
                reference.seeds, t0 = (s,), time.time()
                hit = {"map": reference.estimate(cand)["score"], "train_s": time.time() - t0}
                cache.put(cand, s, hit)
            row["reference_runs"].append(hit["map"])
            costs.append(hit["train_s"])
        row["reference_s"] = float(np.mean(costs))
        done = {}  # estimator -> (result, seconds): scores of one run are read once each
        for p, (est, key) in estimators.items():
            if id(est) not in done:
                t0 = time.time()
                done[id(est)] = (est.estimate(cand), time.time() - t0)
            result, row["proxy_s"][p] = done[id(est)]
            row["proxy"][p] = signed_score(result, key)  # a lower loss ranks higher
        rows.append(row)
    report = summarize(rows, proxies, a, seeds)
    report["run"] = str(run_dir)
    atomic_write_json(run_dir / "calibration.json", report)
    plot(rows, proxies, run_dir / "calibration.png")
    print_report(report)
    return report


class ReferenceCache:
    """Reference results in a JSON-lines file, keyed by design, data, trainer, budget and seed.

    Lets a calibration add proxies (or seeds) later without retraining the reference; ``path=None`` keeps nothing.
    """

    def __init__(self, path, data, a):
        self.path = Path(path) if path else None
        self.context = f"{Path(str(data)).resolve()}|{a.trainer}|e{a.reference_epochs}|b{a.batch}"
        self.rows = {}
        if self.path and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.rows[rec["key"]] = rec
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run: that result is simply recomputed

    def _key(self, cand: Candidate, seed: int) -> str:
        return f"{self.context}|{cand.design_hash}|{cand.imgsz}|s{seed}"

    def get(self, cand: Candidate, seed: int) -> dict | None:
        return self.rows.get(self._key(cand, seed))

    def put(self, cand: Candidate, seed: int, result: dict) -> None:
        rec = {"key": self._key(cand, seed), **result}
        self.rows[rec["key"]] = rec
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:  # one line per result: a crash loses at most the line being written
                f.write(json.dumps(rec) + "\n")


def summarize(rows: list[dict], proxies: list[str], a, seeds: list[int]) -> dict:
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
    if best.partition(":")[0] == "short-train":
        cfg.estimator, cfg.epochs = "short-train", int(report["proxy_epochs"])
        cfg.proxy_imgsz = int(report.get("proxy_imgsz") or report["imgsz"])  # never the deploy size (--imgsz)
        cfg.trainer = report.get("trainer", "ultralytics")
        cfg.score = best.partition(":")[2] or "map"
    elif best.startswith("zero-cost:"):
        cfg.estimator, cfg.proxy = "zero-cost", best.split(":", 1)[1]
    tau = report.get("estimators", {}).get(best, {}).get("band", {}).get("tau")
    return f"calibration {path}: using {best} (band tau {tau})"


def plot(rows: list[dict], proxies: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [*proxies, "gflops"]
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.8), squeeze=False)
    ref = [np.mean(r["reference_runs"]) for r in rows]
    err = [np.std(r["reference_runs"]) for r in rows]
    for ax, p in zip(axes[0], cols):
        x = [r["proxy"][p] if p in proxies else r["gflops"] for r in rows]
        ax.errorbar(x, ref, yerr=err, fmt="o", capsize=3)
        for xi, yi, r in zip(x, ref, rows):
            if not r["design"].startswith("sample"):
                ax.annotate(r["design"], (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(p)
        ax.set_ylabel("reference mAP50-95 (seed mean)")
        ax.grid(alpha=0.3)
    fig.suptitle("ultranas calibrate: cheap score vs reference")
    atomic_savefig(fig, path)
    plt.close(fig)


def print_report(report: dict) -> None:
    print(f"calibration over {report['designs']} designs ({report['run']}):")
    for p, e in report["estimators"].items():
        print(f"  {p:<24} tau {e['all']['tau']} {e['all'].get('tau_ci90')}  band tau {e['band']['tau']} "
              f"{e['band'].get('tau_ci90')}  cost {e['cost_ratio']:.3f}x")
    print(f"  {report['verdict']}")
