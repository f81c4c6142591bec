"""The calibration's picture (cheap score vs reference, one panel per estimator) and its printed summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fsutil import atomic_savefig


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
