"""``NAS``: a model from a real tiny search predicts, validates, trains and exports like ``YOLO``; unsafe files are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ultranas import NAS
from ultranas.errors import UserError
from ultranas.space import load_space

IMAGES = "ultranas/datasets/coco8/images/val"
TUNE_IMGSZ = 128  # the size the ``tuned`` fixture trained at


def test_found_model_carries_its_search(found):
    model = NAS(found)
    info = model.nas_info
    assert info["space"] == "yolo" and info["reference"] == "yolo11n"
    g = info["genotype"]
    space = load_space(info["space"])
    assert space.design_hash(g, nc=80) == info["hash"]
    from ultranas.ultra import build_model, count_params

    assert count_params(model.model) == count_params(build_model(space.render(g, 80)))


def _boxes_xyxy(label: Path, w: int, h: int) -> list[tuple[int, list[float]]]:
    out = []
    for line in label.read_text().split("\n"):
        if line.strip():
            c, x, y, bw, bh = (float(v) for v in line.split())
            out.append((int(c), [(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h]))
    return out


def _iou(a, b) -> float:
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_train_learns_and_the_trained_model_predicts_and_validates(found, tuned, synthetic):
    from ultralytics import YOLO

    before, after = NAS(found).model, NAS(tuned).model
    assert dict(after.names) == {0: "circle", 1: "square", 2: "triangle"} and after.nc == after.model[-1].nc == 3
    first = next(k for k, v in after.state_dict().items() if v.dim() == 4)  # the stem conv: trained, not copied
    assert not torch.equal(before.state_dict()[first].float(), after.state_dict()[first].float())
    metrics = NAS(tuned).val(data=str(synthetic), imgsz=TUNE_IMGSZ, batch=16, device="cpu", plots=False,
                             verbose=False)
    assert metrics.box.map50 > 0.25, metrics.box.map50  # it learned the shapes (measured 0.49; predicting nothing: 0)
    assert metrics.box.map <= metrics.box.map50 <= 1.0
    images = sorted((synthetic.parent / "images" / "val").iterdir())
    results = NAS(tuned).predict([str(p) for p in images], imgsz=TUNE_IMGSZ, conf=0.001, verbose=False)
    assert len(results) == len(images)
    placed, right, total = 0, 0, 0
    for image, r in zip(images, results):  # a short run's scores are low: judge its k best boxes, k = objects
        h, w = r.orig_shape
        gt = _boxes_xyxy(synthetic.parent / "labels" / "val" / f"{image.stem}.txt", w, h)
        best = list(zip(r.boxes.cls.int().tolist(), r.boxes.xyxy.tolist()))[:len(gt)]  # sorted by confidence
        total += len(gt)
        placed += sum(any(_iou(pb, gb) > 0.5 for _, pb in best) for _, gb in gt)
        right += sum(any(pc == gc and _iou(pb, gb) > 0.5 for pc, pb in best) for gc, gb in gt)
    # measured 53 and 30 of 67 objects; boxes predicted at random (or for other images) find almost none
    assert placed >= 0.5 * total and right >= 0.25 * total, (placed, right, total)
    plain = YOLO(str(tuned)).predict([str(p) for p in images[:4]], imgsz=TUNE_IMGSZ, conf=0.001, verbose=False)
    for ours, theirs in zip(results[:4], plain):  # NAS predicts exactly as Ultralytics' YOLO on the same weights
        assert ours.boxes.data.shape == theirs.boxes.data.shape and len(ours.boxes) > 0
        assert torch.allclose(ours.boxes.data, theirs.boxes.data, atol=1e-4)


def test_a_checkpoint_whose_head_names_its_class_count_trains_a_head_for_the_new_classes(synthetic, tmp_path):
    """A design saved with ``Detect, [80]`` (not ``[nc]``) fine-tuned on 3 classes gets a 3-class head: an 80-class
    head would predict classes the data lacks, which Ultralytics' COCO JSON writer cannot map (IndexError)."""
    import yaml

    space = load_space("yolo")
    model = space.render(space.point("yolo11n"), 80)
    assert model["head"][-1][3] == ["nc"]  # rendered designs take the data's class count
    model["head"][-1][3] = [80]
    (tmp_path / "fixed.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    NAS(tmp_path / "fixed.yaml").save(tmp_path / "fixed.pt")
    assert NAS(tmp_path / "fixed.pt").model.model[-1].nc == 80
    NAS(tmp_path / "fixed.pt").train(data=str(synthetic), epochs=1, imgsz=64, batch=16, device="cpu", workers=0,
                                     project=str(tmp_path), name="ft", plots=False, amp=False, val=False)
    trained = NAS(tmp_path / "ft" / "weights" / "last.pt").model
    assert trained.model[-1].nc == trained.nc == 3 and len(trained.names) == 3


def test_cli_coco_eval_on_a_trained_found_model(tuned, synthetic, tmp_path, run_cli):
    """README: ``ultranas val model=found_n.pt data=... coco_eval=true`` (+ save_dir, max_dets) through the CLI gives
    the numbers of the Python API, and its predictions.json holds every detection it reports."""
    import json
    import re

    from ultranas.coco import coco_eval

    proc = run_cli("val", f"model={tuned}", f"data={synthetic}", "coco_eval=true", f"imgsz={TUNE_IMGSZ}",
                   "max_dets=300", f"save_dir={tmp_path / 'val'}")
    assert proc.returncode == 0, proc.stderr[-1500:]
    line = next(ln for ln in proc.stdout.splitlines() if "pycocotools" in ln)
    numbers = [float(x) for x in re.findall(r"\d+\.\d{4}", line.split("(")[0])]
    detections = int(re.search(r"(\d+) validator detections, COCOeval maxDets 300", line).group(1))
    assert detections == len(json.loads((tmp_path / "val" / "predictions.json").read_text())) > 0
    api = coco_eval(NAS(tuned), synthetic, imgsz=TUNE_IMGSZ, max_dets=300)
    expected = [api["ultralytics_map"], api["cocoeval_map"], api["ultralytics_map50"], api["cocoeval_map50"]]
    assert numbers == pytest.approx([round(v, 4) for v in expected], abs=1e-4), line
    assert api["detections"] == detections and api["cocoeval_map"] > 0.1
    assert numbers[1] == pytest.approx(numbers[0], abs=0.01)  # COCOeval agrees with Ultralytics' own mAP


def test_plain_yolo_loads_found_checkpoint(found):
    from ultralytics import YOLO

    yolo = YOLO(str(found))
    assert yolo.task == "detect"
    assert sum(p.numel() for p in yolo.model.parameters()) == sum(p.numel() for p in NAS(found).model.parameters())


@pytest.mark.parametrize("which", ["found", "yolo11n", "yolo26n"])
def test_onnx_export_matches_pytorch(found, tmp_path, which):
    import shutil

    local = tmp_path / "model.pt"
    if which == "found":
        shutil.copy(found, local)
    else:  # fixed designs, so both head types are always covered
        space = load_space("yolo")
        (tmp_path / "design.yaml").write_text(space.to_yaml(space.point(which), nc=80))
        NAS(tmp_path / "design.yaml").save(local)
    path = NAS(local).export(format="onnx", imgsz=64, dynamic=False, simplify=True)
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]  # static shape, as TensorRT wants
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    onnx_out = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    torch_model = NAS(local).model.float().eval()
    if getattr(torch_model.model[-1], "one2one_cv2", None) is not None:
        torch_model.end2end = True  # an end-to-end head exports NMS-free: compare with its one-to-one output
    with torch.no_grad():
        torch_out = torch_model(torch.from_numpy(x))
    torch_out = (torch_out[0] if isinstance(torch_out, (list, tuple)) else torch_out).numpy()
    assert onnx_out.shape == torch_out.shape
    if torch_model.end2end:  # top-k of an untrained head is all ties: compare the ranked scores, not which anchor won
        np.testing.assert_allclose(np.sort(onnx_out[0, :, 4]), np.sort(torch_out[0, :, 4]), rtol=1e-3, atol=1e-5)
    else:
        np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-3, atol=1e-3)


def test_end_to_end_head_exports_nms_free(tmp_path):
    space = load_space("yolo")
    path = tmp_path / "design.yaml"
    path.write_text(space.to_yaml(space.point("yolo26n"), nc=3))
    onnx_path = NAS(path).export(format="onnx", imgsz=64)
    out = onnx.load(onnx_path).graph.output[0].type.tensor_type.shape
    anchors = sum((64 // s) ** 2 for s in (8, 16, 32))
    assert [d.dim_value for d in out.dim] == [1, min(300, anchors), 6]  # top-k (box, score, class): no NMS
    assert not any(n.op_type == "NonMaxSuppression" for n in onnx.load(onnx_path).graph.node)


def test_torchscript_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ultralytics' exporter writes a YAML-built model's export into the current folder
    space = load_space("yolo")
    path = tmp_path / "design.yaml"
    path.write_text(space.to_yaml(space.point("yolo11n"), nc=3))
    model = NAS(path)  # one instance: a model built from YAML starts from random weights
    ts = model.export(format="torchscript", imgsz=64)
    assert Path(ts).resolve().parent == tmp_path.resolve()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    scripted = torch.jit.load(ts)(x)
    with torch.no_grad():
        eager = model.model.float().eval()(x)  # the exporter worked on a copy
    eager = eager[0] if isinstance(eager, (list, tuple)) else eager
    assert scripted.shape == eager.shape == (1, 4 + 3, sum((64 // s) ** 2 for s in (8, 16, 32)))
    torch.testing.assert_close(scripted, eager, rtol=1e-3, atol=1e-3)  # the same network, not just some output


def test_engine_export_fails_clearly_without_tensorrt(found):
    with pytest.raises(UserError, match="tensorrt|CUDA"):
        NAS(found).export(format="engine", imgsz=64)


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    torch.save({"model": Evil(), "epoch": 1}, bad)
    with pytest.raises(UserError, match="cannot be loaded safely"):
        NAS(bad)
    assert not marker.exists()
    from ultralytics import YOLO  # the runtime makes plain YOLO loads safe too

    with pytest.raises(TypeError, match="references types outside the supported Ultralytics checkpoint format"):
        YOLO(str(bad))  # refused by the restricted unpickler, not by some later failure after the code ran
    assert not marker.exists()


def test_corrupt_truncated_and_foreign_checkpoints(found, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(found.read_bytes()[:2000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    from ultralytics.nn.tasks import ClassificationModel

    cls = tmp_path / "cls.pt"
    torch.save({"model": ClassificationModel(cfg="yolo11n-cls.yaml", nc=3, verbose=False)}, cls)
    for path, message in ((truncated, "cannot be loaded"), (garbage, "cannot be loaded"), (cls, "not a detection"),
                          (tmp_path / "missing.pt", "not found")):
        with pytest.raises(UserError, match=message) as e:
            NAS(path)
        assert len(str(e.value).splitlines()) == 1


def test_fp16_onnx_for_tensorrt_is_valid_static_and_close(tmp_path):
    """What TensorRT would consume: an fp16, static-shaped ONNX that checks, runs and matches the fp32 export."""
    import shutil
    from collections import Counter

    space = load_space("yolo")
    path = tmp_path / "design.yaml"
    path.write_text(space.to_yaml(space.point("yolo11n"), nc=3))
    fp32 = shutil.copy(NAS(path).export(format="onnx", imgsz=64), tmp_path / "fp32.onnx")
    fp16 = NAS(path).export(format="onnx", imgsz=64, half=True)
    graph = onnx.load(fp16)
    onnx.checker.check_model(graph)
    kinds = Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in graph.graph.initializer)
    assert kinds.most_common(1)[0][0] == "FLOAT16"
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    y16 = ort.InferenceSession(fp16, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    y32 = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    np.testing.assert_allclose(y16, y32, atol=1e-2 * float(np.abs(y32).max()))


def test_cli_modes_mirror_ultralytics(found, tmp_path, run_cli):
    from pathlib import Path

    image = sorted((Path(__file__).resolve().parent.parent / IMAGES).iterdir())[0]
    local = tmp_path / "found_n.pt"
    local.write_bytes(found.read_bytes())
    pred = run_cli("predict", f"model={local}", f"source={image}", "imgsz=64", f"project={tmp_path}", "name=p")
    assert pred.returncode == 0 and (tmp_path / "p" / image.name).is_file(), pred.stderr[-500:]
    val = run_cli("val", f"model={local}", "data=coco8.yaml", "imgsz=64", "batch=4")
    assert val.returncode == 0 and "mAP50-95" in val.stdout, val.stderr[-500:]
    exp = run_cli("export", f"model={local}", "format=onnx", "imgsz=64")
    assert exp.returncode == 0 and (tmp_path / "found_n.onnx").is_file(), exp.stderr[-500:]
    info = run_cli("info", local)
    assert info.returncode == 0 and "genotype" in info.stdout and "reference: yolo11n" in info.stdout
