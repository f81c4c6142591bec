"""Runtime of each zero-cost proxy per design (runtime only; ranking fidelity is measured elsewhere).

    python benchmarks/zero_cost_quick.py                                   # synthetic shapes set, imgsz 96
    python benchmarks/zero_cost_quick.py --data ../shared/datasets/cards/data.yaml --imgsz 128 --designs 8
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from ultranas import ultra  # noqa: E402
from ultranas.data import class_names, resolve_data  # noqa: E402
from ultranas.estimation._zero_cost import ZERO_COST_PROXIES, load_batches, seeded  # noqa: E402
from ultranas.space import load_space  # noqa: E402
from ultranas.synthetic import make_synthetic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data YAML (default: a synthetic set in a temp dir)")
    ap.add_argument("--space", default="yolo")
    ap.add_argument("--imgsz", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--designs", type=int, default=5, help="yolo11n (if in the space) plus sampled designs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data = resolve_data(args.data) if args.data else make_synthetic(Path(tmp) / "syn", 16, 4, args.imgsz, args.seed)
        nc = len(class_names(data))
        space = load_space(args.space)
        genotypes = {}
        if "yolo11n" in space.points:
            genotypes["yolo11n"] = space.point("yolo11n")
        rng = random.Random(args.seed)
        while len(genotypes) < args.designs:
            g = space.sample(rng)
            genotypes[space.design_hash(g, nc)] = g

        start = time.perf_counter()
        batch = load_batches(data, args.imgsz, args.batch, 1, args.seed)[0]
        print(f"data {data} | imgsz {args.imgsz} | batch {tuple(batch['img'].shape)} "
              f"loaded in {time.perf_counter() - start:.2f}s | torch threads {torch.get_num_threads()}")
        names = list(ZERO_COST_PROXIES)
        print(f"{'design':14s} {'params':>8s} {'build_s':>8s} " + " ".join(f"{n + '_s':>14s}" for n in names))
        times: dict[str, list[float]] = {n: [] for n in names}
        for label, g in genotypes.items():
            start = time.perf_counter()
            with seeded(args.seed):
                model = ultra.build_model(space.render(g, nc=nc))
            build_s = time.perf_counter() - start
            row = f"{label:14s} {ultra.count_params(model) / 1e6:7.2f}M {build_s:8.2f} "
            for name in names:
                start = time.perf_counter()
                ZERO_COST_PROXIES[name](model, batch, seed=args.seed)
                times[name].append(time.perf_counter() - start)
                row += f"{times[name][-1]:14.3f} "
            print(row, flush=True)
        print(f"{'median':14s} {'':8s} {'':8s} " + " ".join(f"{statistics.median(times[n]):14.3f}" for n in names))
        print(f"{'max':14s} {'':8s} {'':8s} " + " ".join(f"{max(times[n]):14.3f}" for n in names))


if __name__ == "__main__":
    main()
