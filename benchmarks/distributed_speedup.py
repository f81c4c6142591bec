"""Wall time of the same search budget with 1 worker and with 2 workers sharing a PostgreSQL study.

Each process uses one torch thread (OMP_NUM_THREADS=1) so that 2 workers on a 2-core machine compare fairly with 1.
Prints JSON and writes benchmarks/results/distributed_speedup.json.
    python benchmarks/distributed_speedup.py --trials 8 --epochs 3 --imgsz 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ultranas.local_postgres import LocalPostgres

RESULTS = Path(__file__).resolve().parent / "results"


def run(url: str, name: str, workers: int, a, cwd: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    search = subprocess.Popen([sys.executable, "-m", "ultranas", "search", "--storage", url, "--name", name,
                               "--trials", str(a.trials), "--epochs", str(a.epochs), "--imgsz", str(a.imgsz),
                               "--strategy", "random", "--objectives", "map", "--no-final", "--no-warm-start",
                               "--seed", "0", "--project", str(cwd)], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)  # the study exists before workers join
    extra = [subprocess.Popen([sys.executable, "-m", "ultranas", "worker", "--storage", url, "--name", name,
                               "--quiet"], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers - 1)]
    rc = search.wait()
    for p in extra:
        p.wait()
    if rc != 0:
        raise SystemExit(f"search with {workers} worker(s) failed (exit {rc})")
    return time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--imgsz", type=int, default=64)
    a = p.parse_args()
    with LocalPostgres() as url, tempfile.TemporaryDirectory() as tmp:
        one = run(url, "one", 1, a, Path(tmp))
        two = run(url, "two", 2, a, Path(tmp))
    result = {"trials": a.trials, "epochs": a.epochs, "imgsz": a.imgsz, "data": "coco8.yaml",
              "wall_s_1_worker": round(one, 1), "wall_s_2_workers": round(two, 1), "speedup": round(one / two, 2),
              "cpu_count": os.cpu_count(), "threads_per_worker": 1}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed_speedup.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
