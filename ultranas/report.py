"""Run reports: ``leaderboard.csv`` (every trial) and ``pareto.png`` (mAP against latency, front highlighted)."""

from __future__ import annotations

import optuna

from .fsutil import atomic_savefig, atomic_write_csv

TS = optuna.trial.TrialState


def leaderboard_rows(study: optuna.Study, objective_names: list[str]) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        info, metrics = t.user_attrs.get("info", {}), t.user_attrs.get("metrics", {})
        row = {"trial": t.number, "state": t.state.name, "point": t.user_attrs.get("point", ""),
               "hash": t.user_attrs.get("hash", "")}
        for name, value in zip(objective_names, t.values or []):
            row[name] = round(value, 6)
        row.update({"score": metrics.get("score"), "map50": metrics.get("map50"),
                    "latency_ms": info.get("latency_ms"), "band": info.get("band") or "",
                    **{f"latency_vs_{r}": round(v["ratio"], 3) for r, v in info.get("latency_vs", {}).items()},
                    "params": info.get("params"), "gflops": info.get("gflops"),
                    **{k: info.get(k) for k in ("build_s", "latency_s")},
                    **{k: metrics.get(k) for k in ("data_s", "train_s", "val_s")}, "time_s": t.user_attrs.get("time_s"),
                    "duplicate_of": t.user_attrs.get("duplicate_of", ""), "failure": t.user_attrs.get("failure", "")})
        rows.append(row)
    rows.sort(key=lambda r: (r["state"] != "COMPLETE", -(r["score"] if r["score"] is not None else -1e9)))
    return rows


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (latency down, score up)."""
    return [i for i, (lat, sc) in enumerate(points)
            if not any(l2 <= lat and s2 >= sc and (l2, s2) != (lat, sc) for l2, s2 in points)]


def plot_pareto(rows: list[dict], path, score: str = "map") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["state"] == "COMPLETE" and r["latency_ms"] is not None and r["score"] is not None
            and not r["duplicate_of"]]
    fig, ax = plt.subplots(figsize=(7, 5))
    if done:
        pts = [(r["latency_ms"], r["score"]) for r in done]
        front = set(pareto_front(pts))
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="lightgray", edgecolors="gray", label="designs")
        fx = sorted((pts[i] for i in front), key=lambda p: p[0])
        ax.plot([p[0] for p in fx], [p[1] for p in fx], "o-", color="tab:red", label="Pareto front")
        for r in done:
            if r["point"]:
                ax.annotate(r["point"], (r["latency_ms"], r["score"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=8, color="tab:blue")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel(f"search score ({score})")
    ax.set_title(f"ultranas search: {len(done)} designs")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    atomic_savefig(fig, path)
    plt.close(fig)


def write_reports(ctx) -> None:
    rows = leaderboard_rows(ctx.study, [o.name for o in ctx.objectives])
    atomic_write_csv(ctx.run_dir / "leaderboard.csv", rows)
    plot_pareto(rows, ctx.run_dir / "pareto.png", ctx.cfg.score if ctx.cfg.estimator == "short-train" else ctx.cfg.proxy)
