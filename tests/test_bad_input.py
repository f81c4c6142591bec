"""Bad input through the real CLI: one line naming the problem, non-zero exit, no traceback, nothing half-written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from ultranas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
COCO8 = ROOT / "ultranas" / "datasets" / "coco8"
TINY = ["--trials", "1", "--epochs", "1", "--imgsz", "32", "--no-final"]


def _dataset(tmp: Path, *, labels=True, label_line="0 0.5 0.5 0.2 0.2", names=("a", "b"), nc=None) -> Path:
    root = tmp / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(next((COCO8 / "images" / "val").iterdir()), root / "images" / split / "x.jpg")
        if labels:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / "x.txt").write_text(label_line + "\n")
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": list(names)}
    if nc is not None:
        data["nc"] = nc
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def _space(tmp: Path, edit) -> Path:
    raw = yaml.safe_load(load_space("yolo").path.read_text())
    edit(raw)
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _text(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


CASES = {
    "missing data yaml": (lambda t: ["search", "--data", t / "nope.yaml"], "data YAML not found"),
    "malformed data yaml": (lambda t: ["search", "--data", _text(t, "d.yaml", "train: [unclosed")], "not valid YAML"),
    "data yaml not a mapping": (lambda t: ["search", "--data", _text(t, "d.yaml", "- a\n- b\n")], "must be a mapping"),
    "no images": (lambda t: ["search", "--data", _text(t, "d.yaml", "train: images/train\nval: images/val\nnames: [a]\n")],
                  "train images not found"),
    "no labels": (lambda t: ["search", "--data", _dataset(t, labels=False)], "labels not found"),
    "class id out of range": (lambda t: ["search", "--data", _dataset(t, label_line="7 0.5 0.5 0.2 0.2")],
                              "class id 7"),
    "box out of range": (lambda t: ["search", "--data", _dataset(t, label_line="0 1.5 0.5 0.2 0.2")], "outside [0, 1]"),
    "class count mismatch": (lambda t: ["search", "--data", _dataset(t, nc=5)], "nc=5 but 2 names"),
    "empty space": (lambda t: ["search", "--space", _text(t, "s.yaml", "")], "empty"),
    "malformed space": (lambda t: ["search", "--space", _text(t, "s.yaml", "blocks: {a: [")], "not valid YAML"),
    "unknown module in space": (lambda t: ["search", "--space", _space(t, lambda r: r["blocks"].update(X=["Evil", ["$c"]]))],
                                "not allowed"),
    "width out of range": (lambda t: ["search", "--space", _space(t, lambda r: r["decisions"].update(stem=[3]))],
                           "decisions.stem"),
    "eval bait in space": (lambda t: ["search", "--space", _space(t, lambda r: r["blocks"].update(
        X=["C2f", ["$c", "__import__('os').system('touch pwned')"]]))], "only numbers"),
    "eval bait in model yaml": (lambda t: ["predict", f"model={_evil_model(t)}", "source=x.jpg"], "not allowed"),
    "unknown module in model yaml": (lambda t: ["val", f"model={_text(t, 'm.yaml', BAD_MODULE)}"], "not an allowed"),
    "unknown strategy": (lambda t: ["search", "--strategy", "magic"], "unknown strategy 'magic'"),
    "unknown objective": (lambda t: ["search", "--objectives", "map,beauty"], "unknown objective 'beauty'"),
    "zero trials": (lambda t: ["search", "--trials", "0"], "--trials must be a positive integer"),
    "negative epochs": (lambda t: ["search", "--epochs", "-3"], "--epochs must be a positive integer"),
    "non-numeric budget": (lambda t: ["search", "--trials", "many"], "invalid int value"),
    "imgsz not a stride multiple": (lambda t: ["search", "--imgsz", "50"], "multiple of 32"),
    "unwritable output dir": (lambda t: ["search", *TINY, "--project", _text(t, "afile", "x") / "runs"],
                              "cannot create the output folder"),
    "corrupted study database": (lambda t: ["search", "--resume", _corrupt_run(t)], "cannot open the study storage"),
    "corrupted checkpoint": (lambda t: ["info", _text(t, "bad.pt", "garbage")], "cannot be loaded safely"),
    "non-detection checkpoint": (lambda t: ["info", _cls_pt(t)], "not a detection model"),
    "loss score without the fast trainer": (lambda t: ["search", "--score", "val_loss"], "needs --estimator short-train --trainer fast"),
    "unknown calibration proxy": (lambda t: ["calibrate", "--proxy", "short-train:accuracy"], "unknown --proxy"),
    "unknown device": (lambda t: ["search", *TINY, "--device", "7"], "device '7' is not available"),
    "conflicting flags": (lambda t: ["search", "--max-latency", "5", "--latency-le", "yolo11n"], "conflict"),
    "resume with other settings": (lambda t: ["search", "--resume", t, "--trials", "3"], "args.yaml"),
    "unknown space": (lambda t: ["search", "--space", "nosuchspace"], "space not found"),
    "unknown latency target": (lambda t: ["search", "--latency-target", "abacus"], "abacus"),
    "unknown reference point": (lambda t: ["space", "render", "yolo", "--point", "yolo99z"], "no point 'yolo99z'"),
    "export engine without tensorrt": (lambda t: ["export", f"model={_cls_free_pt(t)}", "format=engine"], "tensorrt"),
}


BAD_MODULE = "backbone: [[-1, 1, os.system, [1]]]\nhead: []\n"


def _evil_model(tmp: Path) -> Path:
    space = load_space("yolo")
    model = dict(space.render(space.point("yolo11n")), activation="__import__('os').system('touch pwned')")
    return _text(tmp, "m.yaml", yaml.safe_dump(model))


def _corrupt_run(tmp: Path) -> Path:
    run = tmp / "run"
    run.mkdir()
    from ultranas.config import SearchConfig

    (run / "args.yaml").write_text(yaml.safe_dump(SearchConfig(project=str(tmp)).to_dict()))
    (run / "study.db").write_bytes(b"this is not sqlite" * 100)
    return run


def _cls_pt(tmp: Path) -> Path:
    from ultralytics.nn.tasks import ClassificationModel

    path = tmp / "cls.pt"
    torch.save({"model": ClassificationModel(cfg="yolo11n-cls.yaml", nc=3, verbose=False)}, path)
    return path


def _cls_free_pt(tmp: Path) -> Path:
    from ultranas.ultra import build_model

    space = load_space("yolo")
    path = tmp / "det.pt"
    torch.save({"model": build_model(space.render(space.point("yolo11n"), 3))}, path)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, run_cli):
    make_args, expected = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    args = [str(a) for a in make_args(tmp_path)]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    proc = run_cli(*args, "--project", str(work / "runs"), cwd=work) if args[0] == "search" and "--project" not in args \
        and "--resume" not in args else run_cli(*args, cwd=work)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ultranas: error:") and expected in err, err
    assert not (work / "runs").exists()  # no run directory left behind
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*"))
    after = {p: p.stat().st_mtime_ns for p in before if p.exists()}
    assert after == before  # nothing already written was touched
