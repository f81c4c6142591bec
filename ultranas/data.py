"""Dataset resolution and validation: bundled coco8, a user-pointed coco128, or any data YAML, checked up front.

Nothing here downloads. A dataset with missing images or labels fails with one line that names the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .errors import UserError

PACKAGE_DATASETS = Path(__file__).parent / "datasets"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
COCO128_ENV = "ULTRANAS_COCO128"


def resolve_data(data: str | os.PathLike, coco128_dir: str | os.PathLike | None = None) -> Path:
    """Return the absolute path of a data YAML: ``coco8.yaml`` is bundled, ``coco128.yaml`` is user-pointed."""
    name = str(data)
    if name in ("coco8", "coco8.yaml") and not Path(name).exists():
        return (PACKAGE_DATASETS / "coco8" / "data.yaml").resolve()
    if name in ("coco128", "coco128.yaml") and not Path(name).exists():
        root = coco128_dir or os.environ.get(COCO128_ENV)
        if not root:
            raise UserError(
                f"coco128.yaml is not bundled: point at a local copy with --coco128 DIR or ${COCO128_ENV}=DIR "
                "(a folder with data.yaml, images/ and labels/)"
            )
        path = Path(root).expanduser()
        path = path / "data.yaml" if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"coco128 data YAML not found at {path}: check --coco128 / ${COCO128_ENV}")
        return path.resolve()
    path = Path(name).expanduser()
    if path.is_dir() and (path / "data.yaml").is_file():
        path = path / "data.yaml"
    if not path.is_file():
        raise UserError(f"data YAML not found: {path} (give a path to a data YAML, or 'coco8.yaml' for the bundled set)")
    return path.resolve()


def _label_dir(image_dir: Path) -> Path:
    parts = list(image_dir.parts)
    if "images" not in parts:
        raise UserError(f"image folder {image_dir} has no 'images' component: labels are looked up in its 'labels' twin")
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts)


def load_data_yaml(path: Path) -> dict:
    """Parse and sanity-check a data YAML (``train``, ``val``, ``names``) without touching the images."""
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"data YAML {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"data YAML {path} must be a mapping with train, val and names")
    for key in ("train", "val"):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise UserError(f"data YAML {path}: key '{key}' must be a folder of images (one string)")
    names = cfg.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names or not all(isinstance(k, int) for k in names):
        raise UserError(f"data YAML {path}: 'names' must be a non-empty list or an index→name mapping")
    if sorted(names) != list(range(len(names))):
        raise UserError(f"data YAML {path}: 'names' indices must be 0..{len(names) - 1} without gaps")
    if "nc" in cfg and cfg["nc"] != len(names):
        raise UserError(f"data YAML {path}: nc={cfg['nc']} but {len(names)} names are listed: make them agree")
    cfg["names"] = names
    root = Path(cfg["path"]) if cfg.get("path") else Path(path).parent
    cfg["_root"] = root if root.is_absolute() else (Path(path).parent / root).resolve()
    return cfg


def check_dataset(data: str | os.PathLike, coco128_dir=None, check_labels: bool = True) -> Path:
    """Resolve ``data`` and verify images and labels exist and labels are well-formed. Returns the YAML path."""
    path = resolve_data(data, coco128_dir)
    cfg = load_data_yaml(path)
    nc = len(cfg["names"])
    for split in ("train", "val"):
        image_dir = (cfg["_root"] / cfg[split]).resolve()
        if not image_dir.is_dir():
            raise UserError(f"{split} images not found: {image_dir} (from {path})")
        images = [p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise UserError(f"no {split} images in {image_dir} (from {path})")
        label_dir = _label_dir(image_dir)
        if not label_dir.is_dir():
            raise UserError(f"{split} labels not found: {label_dir} (YOLO .txt labels beside images/, from {path})")
        if check_labels:
            _check_labels(label_dir, nc, path)
    return path


def _check_labels(label_dir: Path, nc: int, data_path: Path) -> None:
    files = list(label_dir.rglob("*.txt"))
    if not files:
        raise UserError(f"no label files in {label_dir} (from {data_path})")
    for file in files:
        for n, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            where = f"{file}:{n}"
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                raise UserError(f"label {where} is not numeric: '{line[:60]}'") from None
            if len(values) != 5:
                raise UserError(f"label {where} has {len(values)} values, a detection label needs 5 (cls x y w h)")
            cls, box = values[0], values[1:]
            if cls != int(cls) or not 0 <= cls < nc:
                raise UserError(f"label {where} has class id {values[0]:g}, the data YAML has classes 0..{nc - 1}")
            if not all(0.0 <= v <= 1.0 for v in box) or box[2] <= 0 or box[3] <= 0:
                raise UserError(f"label {where} has a box outside [0, 1] or of zero size: normalise xywh to the image")


def class_names(data_yaml: Path) -> dict[int, str]:
    return load_data_yaml(data_yaml)["names"]
