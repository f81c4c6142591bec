"""Run reports: ``leaderboard.csv`` (every trial), ``pareto.png`` (score against latency, bands and front) and
``comparison.png`` (the final stage's gaps with their intervals)."""

from __future__ import annotations

import optuna

from .fsutil import atomic_savefig, atomic_write_csv
from .study import records

TS = optuna.trial.TrialState


def leaderboard_rows(study: optuna.Study, objective_names: list[str]) -> list[dict]:
    rows = []
    for t in records(study):
        info, metrics = t.info, t.metrics
        row = {"trial": t.number, "state": t.state.name, "point": t.point or "", "origin": t.origin or "",
               "hash": t.hash or ""}
        for name, value in zip(objective_names, t.values or []):
            row[name] = round(value, 6)
        row.update({"score": metrics.get("score"), "map50": metrics.get("map50"),
                    "latency_ms": info.get("latency_ms"), "band": info.get("band") or "",
                    **{f"latency_vs_{r}": round(v["ratio"], 3) for r, v in info.get("latency_vs", {}).items()},
                    "params": info.get("params"), "gflops": info.get("gflops"),
                    **{k: info.get(k) for k in ("imgsz", "proxy_imgsz", "build_s", "latency_s")},
                    **{k: metrics.get(k) for k in ("data_s", "train_s", "val_s")}, "time_s": t.time_s,
                    **{k: metrics[k] for k in ("inherited", "inherited_from") if k in metrics},
                    "duplicate_of": "" if t.duplicate_of is None else t.duplicate_of, "failure": t.failure or ""})
        rows.append(row)
    rows.sort(key=lambda r: (r["state"] != "COMPLETE", -(r["score"] if r["score"] is not None else -1e9)))
    return rows


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (latency down, score up)."""
    return [i for i, (lat, sc) in enumerate(points)
            if not any(l2 <= lat and s2 >= sc and (l2, s2) != (lat, sc) for l2, s2 in points)]


def plot_pareto(rows: list[dict], path, score: str = "map", references: tuple[str, ...] = ()) -> None:
    """Search score against latency: every design coloured by its latency band, the Pareto front, hand-designed points
    labelled and each reference's latency drawn as the edge of its band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["state"] == "COMPLETE" and r["latency_ms"] is not None and r["score"] is not None
            and r["duplicate_of"] == ""]
    fig, ax = plt.subplots(figsize=(7, 5))
    if done:
        pts = [(r["latency_ms"], r["score"]) for r in done]
        bands = sorted({r["band"] for r in done}, key=lambda b: (b == "", b))
        for i, band in enumerate(bands):
            mine = [p for p, r in zip(pts, done) if r["band"] == band]
            ax.scatter([p[0] for p in mine], [p[1] for p in mine], s=22, alpha=0.7, color=f"C{i % 10}",
                       label=f"band of {band}" if band else "outside the bands")
        front = set(pareto_front(pts))
        fx = sorted((pts[i] for i in front), key=lambda p: p[0])
        ax.plot([p[0] for p in fx], [p[1] for p in fx], "-", color="black", lw=1, label="Pareto front")
        for r in done:
            if r["point"]:
                ax.scatter([r["latency_ms"]], [r["score"]], marker="s", s=40, facecolors="none", edgecolors="black")
                ax.annotate(r["point"], (r["latency_ms"], r["score"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        for ref in references:
            ms = next((r["latency_ms"] for r in done if r["point"] == ref), None)
            if ms is not None:
                ax.axvline(ms, ls="--", lw=0.8, color="gray")
        scores = [p[1] for p in pts]
        if max(scores) - min(scores) < 1e-9:
            ax.set_ylim(scores[0] - 0.05, scores[0] + 0.05)
            ax.text(0.5, 0.9, "every design scored the same: no accuracy signal", transform=ax.transAxes,
                    ha="center", color="tab:red")
        if score == "map" and min(scores) >= 0:
            ax.set_ylim(bottom=0)
    ax.set_xlabel("latency (ms; dashed: a reference's, the edge of its band)")
    ax.set_ylabel(f"search score ({score})")
    ax.set_title(f"ultranas search: {len(done)} designs (squares: hand-designed)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing completed: no legend to draw
        ax.legend(loc="lower right", fontsize=8)
    atomic_savefig(fig, path)
    plt.close(fig)


def plot_comparison(rows: list[dict], path) -> None:
    """The final stage, one panel per reference: each model's gap to the reference (points of mAP50-95, with its 95 %
    interval) against its latency ratio; a gap is real only where its bar clears 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = list(dict.fromkeys(r["reference"] for r in rows))
    if not refs:
        return
    fig, axes = plt.subplots(1, len(refs), figsize=(6 * len(refs), 4.5), squeeze=False)
    style = {"found": ("*", "tab:red", 14), "reference": ("s", "black", 8), "hand-designed": ("o", "tab:blue", 7)}
    for ax, ref in zip(axes[0], refs):
        mine = [r for r in rows if r["reference"] == ref]
        for r in mine:
            marker, color, size = style.get(r["role"], ("o", "gray", 7))
            gap = 0.0 if r["gap_pts"] == "" else float(r["gap_pts"])
            err = None if r["gap_pts"] == "" else [[gap - float(r["ci_low_pts"])], [float(r["ci_high_pts"]) - gap]]
            ax.errorbar([float(r["latency_ratio"])], [gap], yerr=err, fmt=marker, color=color, ms=size, capsize=4)
            ax.annotate(f"{r['model']} {float(r['map50_95_mean']):.3f}", (float(r["latency_ratio"]), gap),
                        textcoords="offset points", xytext=(6, -12 if r["role"] == "found" else 4), fontsize=8,
                        color=color)
        ax.axhline(0, color="gray", lw=0.8)
        ax.axvline(1, color="gray", lw=0.8, ls="--")
        ax.set_xlabel(f"latency / {ref}'s (timed side by side)")
        ax.set_ylabel(f"mAP50-95 gap to {ref} (points, 95 % interval)")
        ax.set_title(f"under {ref}: judged on {mine[0]['judged_on']} ({mine[0]['n_images']} images, "
                     f"{mine[0]['seeds']} seeds)", fontsize=10)
        ax.grid(alpha=0.3)
    atomic_savefig(fig, path)
    plt.close(fig)


def write_reports(ctx) -> None:
    rows = leaderboard_rows(ctx.study, [o.name for o in ctx.objectives])
    atomic_write_csv(ctx.run_dir / "leaderboard.csv", rows)
    plot_pareto(rows, ctx.run_dir / "pareto.png", ctx.cfg.proxy if ctx.cfg.estimator == "zero-cost" else ctx.cfg.score,
                tuple(ctx.cfg.references))
