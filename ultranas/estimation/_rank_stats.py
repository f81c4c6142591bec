"""Rank statistics of a calibration: Kendall/Spearman with bootstrap intervals, and the reference's seed noise."""

from __future__ import annotations

import numpy as np
from scipy import stats


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
