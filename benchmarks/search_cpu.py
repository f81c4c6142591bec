"""Wall time of the README's main job, ``ultranas search --data coco8.yaml`` (default budget), on this machine.

Prints JSON and writes benchmarks/results/search_cpu.json. Goal: <= 180 s on the 2-core CPU machine.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ultranas.objectives._targets import _cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "ultranas", "search", "--data", "coco8.yaml"], cwd=tmp,
                              capture_output=True, text=True)
        wall = time.time() - t0
        run = Path(tmp) / "runs" / "nas" / "exp"
        rows = list(csv.DictReader((run / "comparison.csv").read_text().splitlines())) if proc.returncode == 0 else []
        trials = len((run / "leaderboard.csv").read_text().splitlines()) - 1 if proc.returncode == 0 else 0
    result = {"command": "ultranas search --data coco8.yaml", "returncode": proc.returncode, "wall_s": round(wall, 1),
              "goal_s": 180, "meets_goal": wall <= 180, "trials": trials, "comparison": rows,
              "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_cpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
