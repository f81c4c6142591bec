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


@pytest.fixture(scope="module")
def found(default_run):
    return default_run / "found_n.pt"


def test_found_model_carries_its_search(found):
    model = NAS(found)
    info = model.nas_info
    assert info["space"] == "yolo" and info["reference"] == "yolo11n"
    g = info["genotype"]
    space = load_space(info["space"])
    assert space.design_hash(g, nc=80) == info["hash"]
    from ultranas.ultra import build_model, count_params

    assert count_params(model.model) == count_params(build_model(space.render(g, 80)))


def test_predict_val_train_round_trip(found, coco8, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    model = NAS(found)
    results = model.predict(str(root / IMAGES), imgsz=64, verbose=False)
    assert len(results) == 4 and all(r.boxes is not None for r in results)
    metrics = model.val(data=str(coco8), imgsz=64, batch=4, device="cpu", plots=False, verbose=False)
    assert 0.0 <= metrics.box.map <= 1.0
    model.train(data=str(coco8), epochs=1, imgsz=64, batch=4, device="cpu", workers=0, project=str(tmp_path),
                name="ft", plots=False, amp=False)
    assert (tmp_path / "ft" / "weights" / "best.pt").is_file()
    assert NAS(tmp_path / "ft" / "weights" / "best.pt").model is not None


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
    ts = NAS(path).export(format="torchscript", imgsz=64)
    assert Path(ts).resolve().parent == tmp_path.resolve()
    assert torch.jit.load(ts)(torch.zeros(1, 3, 64, 64)) is not None


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

    with pytest.raises(Exception):  # noqa: B017
        YOLO(str(bad))
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
