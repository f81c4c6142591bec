"""What does shipping in INT8 cost and buy? The final-stage models of finished searches, as OpenVINO INT8.

    python benchmarks/int8_drop.py runs/bench/search_outcome/cards/evolution runs/bench/search_outcome/synthetic/evolution \
        --out benchmarks/results/int8_drop_cpu.json

For every final training of each run (``final/<design>-s<seed>/weights/best.pt``): mAP50-95 in fp32 (PyTorch) and
as ``export(format="openvino", int8=True)`` ships it (NNCF calibrated on up to 128 training images), both on the
run's val split at its deploy size (``ultra.int8_openvino_metrics``, what the ``int8_drop`` objective measures);
and each design's latency on ``openvino-cpu`` (fp32) and ``openvino-cpu-int8`` timed interleaved (1 thread), so
the INT8 speed-up is a ratio from one moment. Prints the JSON and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from ultranas import ultra  # noqa: E402
from ultranas.data import split_size  # noqa: E402
from ultranas.fsutil import atomic_write_json  # noqa: E402
from ultranas.objectives.latency import compare_latency, host_fingerprint, make_runner  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def one_run(run: Path, calib_images: int) -> dict:
    cfg = yaml.safe_load((run / "args.yaml").read_text())
    data, imgsz = run / "data.yaml", int(cfg["imgsz"])
    fraction = min(1.0, calib_images / split_size(data, "train"))
    designs = {}
    for weights in sorted(run.glob("final/*-s*/weights/best.pt")):
        label, seed = weights.parent.parent.name.rsplit("-s", 1)
        t0 = time.time()
        m = ultra.int8_openvino_metrics(weights, data, imgsz, calib_fraction=fraction)
        print(f"{run.name} {label} seed {seed}: fp32 {m['int8_fp32_map']:.4f} int8 {m['int8_map']:.4f} "
              f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        designs.setdefault(label, {"seeds": []})["seeds"].append({"seed": int(seed), **m})
    for label, d in designs.items():
        runs = d["seeds"]
        d.update({k: round(statistics.fmean(r[k] for r in runs), 4) for k in ("int8_fp32_map", "int8_map", "int8_drop")})
        d["int8_drop_sd"] = round(statistics.stdev(r["int8_drop"] for r in runs), 4) if len(runs) > 1 else None
        model = yaml.safe_load((run / "final" / f"{label}.yaml").read_text())
        fp32 = make_runner(model, imgsz, "openvino-cpu")
        int8 = make_runner(model, imgsz, "openvino-cpu-int8")
        timing = compare_latency(int8, fp32, rounds=7)
        d.update(int8_ms=round(timing["a_ms"], 3), fp32_ms=round(timing["b_ms"], 3),
                 int8_latency_ratio=round(timing["ratio"], 3))
    return {"data": cfg["data"], "imgsz": imgsz, "val_images": split_size(data, "val"),
            "calib_images": round(fraction * split_size(data, "train")), "designs": designs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished search run directories (with final/)")
    ap.add_argument("--calib-images", type=int, default=128)
    ap.add_argument("--out", default=str(RESULTS / "int8_drop_cpu.json"))
    args = ap.parse_args()
    t0 = time.time()
    out = {"config": {**vars(args), "host": host_fingerprint()},
           "runs": {str(Path(r)): one_run(Path(r), args.calib_images) for r in args.runs},
           "wall_s": round(time.time() - t0, 1)}
    atomic_write_json(args.out, out)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
