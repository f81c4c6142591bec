"""No code from a data YAML, ever: Ultralytics runs a data YAML's ``download:`` when a split it reads is missing.

Two routes reach it: a relative ``path:`` (ultranas resolves it from the YAML's folder, Ultralytics from the current
directory or its datasets dir) and a ``test:`` split ultranas did not check. Each bait below really runs its
``download:`` when handed to Ultralytics directly (checked first); through ultranas the marker never appears.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ultranas.errors import UserError

COCO8 = Path(__file__).resolve().parent.parent / "ultranas" / "datasets" / "coco8"
TINY_TRAIN = ["epochs=1", "imgsz=32", "batch=2", "workers=0", "plots=False"]


def _download(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def _images(root: Path, split: str, n: int = 2) -> None:
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for src in sorted((COCO8 / "images" / "train").iterdir())[:n]:
        shutil.copy(src, root / "images" / split / src.name)
        shutil.copy(COCO8 / "labels" / "train" / f"{src.stem}.txt", root / "labels" / split / f"{src.stem}.txt")


@pytest.fixture
def bait(tmp_path) -> dict:
    """Two data YAMLs whose ``download:`` writes ``PWNED``, a work dir to run from, and a detection checkpoint."""
    cfg_dir = tmp_path / "cfg"
    _images(cfg_dir / "ds", "train")
    _images(cfg_dir / "ds", "val")
    names = [f"c{i}" for i in range(80)]
    marker = tmp_path / "PWNED"
    relative = cfg_dir / "relative.yaml"  # path: ds -> <yaml folder>/ds for ultranas, <cwd or DATASETS_DIR>/ds for Ultralytics
    relative.write_text(yaml.safe_dump({"path": "ds", "train": "images/train", "val": "images/val", "names": names,
                                        "download": _download(marker)}))
    missing_test = cfg_dir / "missing_test.yaml"  # a test split nobody has
    missing_test.write_text(yaml.safe_dump({"path": str(cfg_dir / "ds"), "train": "images/train", "val": "images/val",
                                            "test": "images/test", "names": names, "download": _download(marker)}))
    work = tmp_path / "work"
    work.mkdir()
    return {"relative": relative, "missing_test": missing_test, "marker": marker, "work": work, "tmp": tmp_path}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from ultranas.space import load_space
    from ultranas.ultra import build_model

    space = load_space("yolo")
    path = tmp_path_factory.mktemp("ckpt") / "det.pt"
    torch.save({"model": build_model(space.render(space.point("yolov8n"), 80))}, path)
    return path


def test_the_bait_runs_when_ultralytics_reads_the_yaml_itself(bait, monkeypatch):
    from ultralytics.data.utils import check_det_dataset

    monkeypatch.chdir(bait["work"])
    check_det_dataset(str(bait["relative"]))
    assert bait["marker"].read_text() == "ran"  # route 1 is live
    bait["marker"].unlink()
    check_det_dataset(str(bait["missing_test"]), split="test")
    assert bait["marker"].read_text() == "ran"  # route 2 is live
    bait["marker"].unlink()


def test_the_checked_copy_is_absolute_and_has_no_download(bait, monkeypatch):
    from ultralytics.data.utils import check_det_dataset

    from ultranas.data import is_checked_copy, safe_data_yaml

    monkeypatch.chdir(bait["work"])
    copy = safe_data_yaml(bait["relative"], bait["tmp"] / "run")
    text = yaml.safe_load(copy.read_text())
    assert copy == bait["tmp"] / "run" / "data.yaml" and is_checked_copy(copy)
    assert "download" not in text and Path(text["path"]).is_absolute()
    assert text["train"] == str((bait["relative"].parent / "ds" / "images" / "train").resolve())
    assert safe_data_yaml(copy) == copy  # a checked copy is used as is
    data = check_det_dataset(str(copy))  # Ultralytics reads the folders ultranas checked
    assert data["train"] == text["train"] and not bait["marker"].exists()
    with pytest.raises(UserError, match="test images not found"):
        safe_data_yaml(bait["missing_test"], bait["tmp"] / "run2")
    assert not (bait["tmp"] / "run2").exists() and not bait["marker"].exists()


CLI = {
    "val, relative path": ("relative", ["val", "model={ckpt}", "data={data}", "imgsz=32", "batch=2"], 0),
    "val split=test, missing test": ("missing_test", ["val", "model={ckpt}", "data={data}", "split=test"], 2),
    "val, missing test": ("missing_test", ["val", "model={ckpt}", "data={data}"], 2),
    "train, relative path": ("relative", ["train", "model={ckpt}", "data={data}", "project={work}/runs", *TINY_TRAIN], 0),
    "train, missing test": ("missing_test", ["train", "model={ckpt}", "data={data}", *TINY_TRAIN], 2),
    "predict, relative path": ("relative", ["predict", "model={ckpt}", "data={data}", "source={data_dir}/ds/images/val",
                                            "imgsz=32", "project={work}/runs"], 0),
    "search, relative path": ("relative", ["search", "--data", "{data}", "--trials", "1", "--epochs", "1",
                                           "--imgsz", "32", "--batch", "2", "--no-final", "--project", "{work}/runs"], 0),
    "search, missing test": ("missing_test", ["search", "--data", "{data}", "--trials", "1", "--epochs", "1",
                                              "--imgsz", "32", "--no-final", "--project", "{work}/runs"], 2),
}


@pytest.mark.parametrize("case", list(CLI))
def test_no_download_is_ever_run_through_the_cli(case, bait, checkpoint, run_cli):
    which, template, code = CLI[case]
    fill = {"ckpt": checkpoint, "data": bait[which], "work": bait["work"], "data_dir": bait[which].parent}
    proc = run_cli(*[a.format(**fill) for a in template], cwd=bait["work"])
    assert not bait["marker"].exists(), f"{case}: the data YAML's download ran"
    assert proc.returncode == code, proc.stderr[-2000:]
    if code == 2:
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "test images not found" in proc.stderr


def test_no_download_through_the_fast_trainer(bait, run_cli):
    proc = run_cli("search", "--data", bait["relative"], "--trials", "1", "--epochs", "1", "--imgsz", "32",
                   "--batch", "2", "--trainer", "fast", "--no-final", "--project", bait["work"] / "runs",
                   cwd=bait["work"])
    assert not bait["marker"].exists(), "the data YAML's download ran"
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_download_through_the_python_api(bait, checkpoint, monkeypatch):
    from ultranas import NAS

    monkeypatch.chdir(bait["work"])
    model = NAS(str(checkpoint))
    metrics = model.val(data=str(bait["relative"]), imgsz=32, batch=2, plots=False, verbose=False)
    assert metrics.box.map >= 0 and not bait["marker"].exists()
    with pytest.raises(UserError, match="test images not found"):
        model.val(data=str(bait["missing_test"]), split="test", imgsz=32)
    assert not bait["marker"].exists()
