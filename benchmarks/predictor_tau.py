"""Could a learned predictor steer the search? Held-out Kendall tau of predictors fitted on a search's own trials.

Reads the finished trials of ``benchmarks/search_outcome.py`` runs (both strategies pooled), featurizes each design's
genotype (numeric decisions as numbers, every decision one-hot, log params) and reports, over repeated 5-fold cross-validation,
the tau between each predictor's held-out prediction and the trial's search score, beside one-feature baselines
(params, latency). No training happens here: it costs seconds.

    python benchmarks/predictor_tau.py runs/bench/search_outcome/cards runs/bench/search_outcome/synthetic
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import yaml

RESULTS = Path(__file__).resolve().parent / "results"


def trials(run_dir: Path) -> list[tuple[dict, float, float, float]]:
    """(genotype, search score, params, latency ms, strategy) of every counted finished trial of both strategies; a
    design both trained (the hand-designed points) once, so it is never in a training and a test fold at once."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows, seen = [], set()
    for strategy in ("evolution", "random"):
        study = optuna.load_study(study_name=strategy, storage=f"sqlite:///{run_dir / strategy / 'study.db'}")
        for t in study.get_trials(deepcopy=False):
            if t.state.name == "COMPLETE" and not t.user_attrs.get("uncounted") and "genotype" in t.user_attrs \
                    and t.user_attrs.get("hash") not in seen:
                seen.add(t.user_attrs.get("hash"))
                info = t.user_attrs["info"]
                rows.append((t.user_attrs["genotype"], t.user_attrs["metrics"]["score"], info["params"],
                             info["latency"]["median_ms"], strategy))
    return rows


def featurize(rows) -> np.ndarray:
    keys = sorted({k for g, *_ in rows for k in g})
    levels = {k: sorted({str(g.get(k)) for g, *_ in rows}) for k in keys}
    out = []
    for g, _, params, *_ in rows:
        x = []
        for k in keys:
            v = g.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                x.append(float(v))
            x += [float(str(v) == level) for level in levels[k]]
        out.append(x + [math.log(params)])
    return np.asarray(out)


def predictors() -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import RidgeCV

    return {"ridge": lambda: RidgeCV(alphas=np.logspace(-2, 3, 12)),
            "gradient_boosting": lambda: HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05,
                                                                       min_samples_leaf=5, random_state=0),
            "random_forest": lambda: RandomForestRegressor(300, min_samples_leaf=2, random_state=0, n_jobs=1)}


def held_out_tau(rows, repeats: int = 3) -> dict:
    from scipy.stats import kendalltau
    from sklearn.model_selection import KFold

    X, y = featurize(rows), np.array([r[1] for r in rows])
    params, latency = np.array([r[2] for r in rows]), np.array([r[3] for r in rows])
    models = predictors()
    taus: dict[str, list[float]] = {name: [] for name in [*models, "params", "latency"]}
    for rep in range(repeats):
        for train, test in KFold(5, shuffle=True, random_state=rep).split(X):
            for name, make in models.items():
                taus[name].append(kendalltau(make().fit(X[train], y[train]).predict(X[test]), y[test]).statistic)
            taus["params"].append(kendalltau(params[test], y[test]).statistic)
            taus["latency"].append(kendalltau(latency[test], y[test]).statistic)
    return {name: {"tau_mean": round(float(np.nanmean(v)), 3), "tau_sd_over_folds": round(float(np.nanstd(v)), 3)}
            for name, v in taus.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="search_outcome.py run folders (<project>/<tag>)")
    ap.add_argument("--out", default=str(RESULTS / "predictor_tau.json"))
    a = ap.parse_args()
    result = {"cv": "5-fold, 3 repeats, held-out Kendall tau vs the trial's search score", "runs": {}}
    for run in map(Path, a.runs):
        rows = trials(run)
        cfg = yaml.safe_load((run / "evolution" / "args.yaml").read_text())
        score = f"{cfg['estimator']}, {cfg['trainer']} trainer, {cfg['proxy_imgsz']} px, {cfg['epochs']} epochs, " \
                f"score {cfg['score']}"
        evolution = [r for r in rows if r[4] == "evolution"]
        result["runs"][run.name] = {"designs": len(rows), "search_score": score, **held_out_tau(rows),
                                    "evolution_only": {"designs": len(evolution), **held_out_tau(evolution)}}
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
