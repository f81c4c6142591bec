"""The bad-input suite's tools: small broken inputs (datasets, spaces, model files, runs) and :func:`check`, which runs
one command line and asserts the promise: one ``ultranas: error:`` line naming the problem, exit 2, no traceback,
nothing created, changed or removed under the test's tmp dir, within a time limit and (optionally) a memory cap.

A case is ``name: (make_args(tmp) -> argv, expected substring)``; test modules keep their cases in such tables."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import torch
import yaml

from ultranas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
COCO8 = ROOT / "ultranas" / "datasets" / "coco8"
NOT_UTF8 = b"\xff\xfe\x00bad"
TINY = ["--trials", "1", "--epochs", "1", "--imgsz", "32", "--no-final"]


def dataset(tmp: Path, *, labels=True, label_line="0 0.5 0.5 0.2 0.2", names=("a", "b"), nc=None, label=None,
             label_dir=False, image=None, **extra) -> Path:
    """A two-image dataset; ``label``/``image`` bytes replace the train split's file, ``extra`` goes to the YAML."""
    root = tmp / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(next((COCO8 / "images" / "val").iterdir()), root / "images" / split / "x.jpg")
        if image is not None and split == "train":
            (root / "images" / split / "x.jpg").write_bytes(image)
        if labels:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            target = root / "labels" / split / "x.txt"
            if label_dir and split == "train":
                target.mkdir()
            else:
                target.write_bytes(label if label is not None and split == "train" else (label_line + "\n").encode())
    data = {"path": str(root), "train": "images/train", "val": "images/val",
            "names": names if isinstance(names, dict) else list(names), **extra}
    if nc is not None:
        data["nc"] = nc
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def space_file(tmp: Path, edit) -> Path:
    raw = yaml.safe_load(load_space("yolo").path.read_text())
    edit(raw)
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def text(tmp: Path, name: str, text: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def model_yaml(tmp: Path, **edit) -> Path:
    """The rendered yolo11n with ``edit`` applied to its top-level keys (or to layer 0 with ``row=``)."""
    space = load_space("yolo")
    model = space.render(space.point("yolo11n"), 2)
    if "row" in edit:
        model["backbone"][0] = edit.pop("row")
    model.update(edit)
    return text(tmp, "m.yaml", yaml.safe_dump(model))


def det_pt(tmp: Path) -> Path:
    from ultranas.ultra import build_model

    space = load_space("yolo")
    path = tmp / "det.pt"
    torch.save({"model": build_model(space.render(space.point("yolo11n"), 2))}, path)
    return path


def mutant_pt(tmp: Path) -> Path:
    """A detection checkpoint of a design of the yolo space that is none of its points (yolo11n, narrower P4)."""
    from ultranas.ultra import build_model

    space = load_space("yolo")
    g = {**space.complete(space.point("yolo11n")), "P4.width": 96}
    path = tmp / "mutant.pt"
    torch.save({"model": build_model(space.render(g, 2))}, path)
    return path


def cls_pt(tmp: Path) -> Path:
    from ultralytics.nn.tasks import ClassificationModel

    path = tmp / "cls.pt"
    torch.save({"model": ClassificationModel(cfg="yolo11n-cls.yaml", nc=3, verbose=False)}, path)
    return path


def run_dir(tmp: Path, study: bytes | None = b"this is not sqlite" * 100) -> Path:
    """A run directory made by 'ultranas search' (a tiny args.yaml) with ``study`` as its study.db (None: none)."""
    from ultranas.config import SearchConfig

    run = tmp / "run"
    run.mkdir()
    cfg = SearchConfig(project=str(tmp), trials=1, epochs=1, imgsz=32, final=False)
    (run / "args.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    if study is not None:
        (run / "study.db").write_bytes(study)
    return run


def sqlite_file(tmp: Path) -> Path:
    path = tmp / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    return path


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def check(tmp_path: Path, run_cli, make_args, expected: str, timeout: float = 600, mem_mb: int | None = None) -> None:
    """Run ``make_args(tmp_path)`` in ``tmp_path/work`` and assert the bad-input promise (see the module docstring);
    ``mem_mb`` caps the command's address space growth over the imported CLI (``cli_forked`` only)."""
    work = tmp_path / "work"
    work.mkdir()
    args = [str(a) for a in make_args(tmp_path)]
    if args[0] == "search" and "--project" not in args and "--resume" not in args:
        args += ["--project", str(work / "runs")]
    before = snapshot(tmp_path)
    extra = {"timeout": timeout} | ({"mem_mb": mem_mb} if mem_mb else {})
    proc = run_cli(*args, cwd=work, **extra)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ultranas: error:") and expected in err, err
    assert proc.returncode == 2, err
    assert snapshot(tmp_path) == before  # nothing created, changed or removed
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*"))
