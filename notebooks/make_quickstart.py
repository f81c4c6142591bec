"""Write ``notebooks/quickstart.ipynb`` from the cells below; with ``--execute``, run it top to bottom in a temporary
folder first and store its outputs (the committed notebook is the executed one; a test checks them).

    python notebooks/make_quickstart.py notebooks/quickstart.ipynb --execute   # about 4 minutes on a 2-core CPU
"""

import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETTINGS = "input_scales=[1], trainer=\"fast\", proxy_imgsz=96, epochs=10, batch=16, trials=10, final_epochs=10,"
cells = [
    new_markdown_cell("""# ultranas quickstart

A small search on a generated set of shapes, small enough to learn on a laptop CPU in a few minutes: the search,
its Pareto plot, the final verdict with confidence intervals, the found model predicting on an image, an ONNX
export, and pycocotools' COCOeval agreeing with Ultralytics. Two image sizes, as in Ultralytics: `imgsz` is the
**deploy size** (latency, the final retrain, `found_n.pt`) and `proxy_imgsz` what candidates train at while
searching. The set has a `test` split, so the search selects designs on `val` and the verdict judges them on `test`,
which the search never reads. On your own data, give `time_limit` alone and ultranas plans the schedule (see the
README)."""),
    new_code_cell("""import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a notebook without ipywidgets
from ultranas import NAS, search  # noqa: E402
from ultranas.synthetic import make_synthetic  # noqa: E402

out = Path("runs/notebook").resolve()
data = make_synthetic(out / "shapes", n_train=128, n_val=48, n_test=64, imgsz=96, seed=0)
run = search(data=str(data), imgsz=96, SETTINGS
             references=["yolo11n"], final_seeds=[0, 1], project=str(out), name="quickstart", progress=False)""".replace("SETTINGS", SETTINGS)),
    new_markdown_cell("Every design evaluated (screened ones never trained), and the search score against latency at the deploy size:"),
    new_code_cell("""import csv

from IPython.display import Image, display

for row in csv.DictReader((run / "leaderboard.csv").read_text().splitlines()):
    trained = row["state"] == "COMPLETE"
    print(f"{row['trial']:>3} {row['state']:<9} {row['point'] or 'searched':<9} {int(row['params']):>9,} params  "
          + (f"{float(row['latency_ms']):.2f} ms  score {float(row['score']):.3f}" if trained
             else f"not trained: {row['failure'][:60]}"))
display(Image(filename=str(run / "pareto.png")))"""),
    new_markdown_cell("""The final stage: found_n beside yolo11n and the hand-designed points of the same latency band, each trained with
every final seed at its own size; the verdict gives every gap a 95 % interval over the verdict images and the seeds:"""),
    new_code_cell("""cols = ("model", "role", "judged_on", "map50_95_mean", "map50_95_sd", "gap_pts", "ci_low_pts", "ci_high_pts",
        "latency_ratio", "imgsz")
print("  ".join(f"{k:>13}" for k in cols))
for row in csv.DictReader((run / "comparison.csv").read_text().splitlines()):
    print("  ".join(f"{row[k]:>13}" for k in cols))
print("\\n".join(NAS(run / "found_n.pt").nas_info["verdict"]))
display(Image(filename=str(run / "comparison.png")))"""),
    new_markdown_cell("`found_n.pt` is an Ultralytics checkpoint plus the search's record; `NAS` uses it like `YOLO`:"),
    new_code_cell("""from PIL import Image as PILImage

model = NAS(run / "found_n.pt")
print(model.nas_info["genotype"])
image = sorted((data.parent / "images" / "test").iterdir())[0]
result = model.predict(str(image), conf=0.02, verbose=False)[0]
print(len(result.boxes), "boxes:", ", ".join(f"{result.names[int(c)]} {p:.2f}" for c, p in zip(result.boxes.cls,
                                                                                           result.boxes.conf)))
drawn = result.plot(labels=False, line_width=1)[..., ::-1]  # boxes drawn by Ultralytics (BGR -> RGB)
display(PILImage.fromarray(drawn).resize((288, 288), PILImage.NEAREST))"""),
    new_markdown_cell("Export to ONNX and run it with onnxruntime:"),
    new_code_cell("""import numpy as np
import onnxruntime as ort

size = model.nas_info["imgsz"]
onnx_path = model.export(format="onnx", imgsz=size)
session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
outputs = session.run(None, {"images": np.zeros((1, 3, size, size), dtype=np.float32)})
print(Path(onnx_path).name, [o.shape for o in outputs])"""),
    new_markdown_cell("pycocotools' official COCOeval agrees with Ultralytics' mAP when both score the same detections (found_n on the test split):"),
    new_code_cell("""from ultranas.coco import coco_eval

r = coco_eval(NAS(run / "found_n.pt"), data, imgsz=model.nas_info["imgsz"], split="test")
print(f"mAP50-95  Ultralytics {r['ultralytics_map']:.4f}   pycocotools COCOeval {r['cocoeval_map']:.4f}")
print(f"mAP50     Ultralytics {r['ultralytics_map50']:.4f}   pycocotools COCOeval {r['cocoeval_map50']:.4f}")"""),
]
nb = new_notebook(cells=cells, metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
path = Path(sys.argv[1])
if "--execute" in sys.argv:
    from nbclient import NotebookClient
    with tempfile.TemporaryDirectory() as tmp:
        NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute()
nbformat.write(nb, path)
print("wrote", path)
