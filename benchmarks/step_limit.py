"""The step limit at the proxy size, beside the fast and the stock trainer, and the proxy's wall vs nominal cost.

One run, one design (yolo11n by default), fixed threads:
- ``limit``: a bare training step (forward, Ultralytics' loss, backward, SGD step) on one batch already in memory,
  repeated: what this CPU can do at this size, with nothing else in the loop;
- ``fast``: the fast trainer (device-resident data, batched augmentation, EMA, clipping, LR schedule), its loop only;
- ``stock``: Ultralytics' trainer (data loader, augmentation pipeline), its training epochs only;
- ``cost``: the calibrated proxy's whole estimate (training + validation) against the calibration reference's
  (128 px, 16 epochs) on the same design: wall ratio vs nominal ratio (images x pixels).

    python benchmarks/step_limit.py --data ../shared/datasets/cards/data.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cards" / "data.yaml"


def bare_step_rate(md: dict, dataset, imgsz: int, batch: int, steps: int) -> float:
    """Images per second of forward + loss + backward + SGD step on one batch held in memory."""
    from ultranas import ultra
    from ultranas.estimation._fast_train import FastTrainer, _to_float

    trainer = FastTrainer(dataset, imgsz, 1, batch, "cpu", 0)
    run = trainer._build(md)
    b = dataset.batch(torch.arange(batch))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=trainer.amp):
            preds = run.model(b["img"])
        loss, _ = ultra.detection_loss(run.model, b, _to_float(preds))
        loss.backward()
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def fast_rate(md: dict, dataset, imgsz: int, batch: int, epochs: int) -> dict:
    from ultranas.estimation._fast_train import FastTrainer

    t0 = time.perf_counter()
    r = FastTrainer(dataset, imgsz, epochs, batch, "cpu", 0).train([md])[0]
    return {"img_per_s": r["img_per_s"], "train_s": r["train_s"], "val_s": r["val_s"],
            "wall_s": round(time.perf_counter() - t0, 2)}


def stock_rate(yaml_path: Path, data: str, imgsz: int, batch: int, epochs: int, n_train: int, work: str) -> dict:
    from ultranas import ultra
    from ultranas.estimation import compressed_schedule

    metrics, _ = ultra.train(yaml_path, data, work, "stock", imgsz=imgsz, batch=batch, device="cpu", seed=0,
                             deterministic=False, **compressed_schedule(epochs, batch))
    return {"img_per_s": round(n_train * epochs / metrics["train_s"], 2), "train_s": metrics["train_s"],
            "data_s": metrics["data_s"], "val_s": metrics["val_s"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--design", default="yolo11n")
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--batches", default="16,8", help="the calibrated proxy's batch first")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference-imgsz", type=int, default=128)
    p.add_argument("--reference-epochs", type=int, default=16)
    p.add_argument("--no-reference", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from ultranas.data import class_names, safe_data_yaml
    from ultranas.estimation import make_estimator
    from ultranas.estimation._device_data import DeviceDataset
    from ultranas.objectives import Candidate
    from ultranas.space import load_space

    t_start = time.time()
    data = str(safe_data_yaml(a.data))
    space = load_space("yolo")
    g = space.point(a.design)
    nc = len(class_names(data))
    md = space.render(g, nc)
    dataset = DeviceDataset(data, a.imgsz, "cpu", "train")
    out = {"data": a.data, "design": a.design, "imgsz": a.imgsz, "epochs": a.epochs, "threads": a.threads,
           "train_images": len(dataset), "cpu_count": os.cpu_count(), "amp_bf16": None, "by_batch": {}}
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = Path(tmp) / f"{a.design}.yaml"
        yaml_path.write_text(space.to_yaml(g, nc))
        for batch in [int(b) for b in a.batches.split(",")]:
            limit = bare_step_rate(md, dataset, a.imgsz, batch, a.steps)
            fast = fast_rate(md, dataset, a.imgsz, batch, a.epochs)
            stock = stock_rate(yaml_path, data, a.imgsz, batch, a.epochs, len(dataset), tmp)
            out["by_batch"][batch] = {
                "limit_img_per_s": round(limit, 2), "fast": fast, "stock": stock,
                "fast_share_of_limit": round(fast["img_per_s"] / limit, 3),
                "stock_share_of_limit": round(stock["img_per_s"] / limit, 3)}
            print(json.dumps({batch: out["by_batch"][batch]}), flush=True)
        from ultranas.estimation._fast_train import bf16_supported

        out["amp_bf16"] = bf16_supported(torch.device("cpu"))
        if not a.no_reference:  # the calibrated proxy's whole estimate vs the calibration reference's, this design
            batch = int(a.batches.split(",")[0])
            cost = {}
            for label, imgsz, epochs in (("proxy", a.imgsz, a.epochs),
                                         ("reference", a.reference_imgsz, a.reference_epochs)):
                est = make_estimator("short-train", data, epochs=epochs, imgsz=imgsz, batch=batch, device="cpu",
                                     trainer="fast", score="loss_drop")
                cand = Candidate(g, md, space.design_hash(g, nc), imgsz, Path(tmp) / label)
                t0 = time.perf_counter()
                r = est.estimate(cand)
                cost[label] = {"wall_s": round(time.perf_counter() - t0, 2), "train_s": r["train_s"],
                               "val_s": r["val_s"], "data_s": r["data_s"], "imgsz": imgsz, "epochs": epochs}
            nominal = (a.imgsz ** 2 * a.epochs) / (a.reference_imgsz ** 2 * a.reference_epochs)
            wall = cost["proxy"]["wall_s"] / cost["reference"]["wall_s"]
            out["cost"] = {**cost, "batch": batch, "nominal_ratio": round(nominal, 4), "wall_ratio": round(wall, 4),
                           "wall_over_nominal": round(wall / nominal, 2)}
    out["wall_s"] = round(time.time() - t_start, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "step_limit_cpu.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
