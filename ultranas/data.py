"""Dataset resolution and validation: bundled coco8, a user-pointed coco128, or any data YAML, checked up front.

Nothing here downloads, and nothing from a data YAML is ever run: Ultralytics executes a data YAML's ``download:``
when a split is missing, so ultranas hands it only the checked copy :func:`safe_data_yaml` writes. A dataset with
missing images or labels fails with one line that names the path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from .dataset_files import check_label_cache, label_rows, read_regular, require_regular, walk_files
from .errors import UserError
from .safe_yaml import MAX_BYTES, safe_load

PACKAGE_DATASETS = Path(__file__).parent / "datasets"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
COCO128_ENV = "ULTRANAS_COCO128"
SPLITS = ("train", "val", "test")
SAFE_KEYS = {"path", "train", "val", "test", "nc", "names", "channels"}
SAMPLE_IMAGES = 8  # images decoded per split before anything trains
MARKER = "# ultranas: checked data YAML (absolute folders, no download) from"


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
        path = _expand(root, "--coco128")
        path = path / "data.yaml" if path.is_dir() else path
        if not os.path.lexists(path):
            raise UserError(f"coco128 data YAML not found at {path}: check --coco128 / ${COCO128_ENV}")
        require_regular(path, "coco128 data YAML")
        return path.resolve()
    path = _expand(name, "data YAML")
    if path.is_dir() and os.path.lexists(path / "data.yaml"):
        path = path / "data.yaml"
    if not os.path.lexists(path):
        raise UserError(f"data YAML not found: {path} (give a path to a data YAML, or 'coco8.yaml' for the bundled set)")
    require_regular(path, "data YAML")  # a FIFO would block the read
    return path.resolve()


def _expand(name: str | os.PathLike, what: str) -> Path:
    """``name`` as a path, ``~`` expanded; a NUL byte or an unknown ``~user`` fails naming ``what``."""
    if "\0" in str(name):
        raise UserError(f"{what} {str(name)[:80]!r} contains a NUL byte")
    try:
        return Path(name).expanduser()
    except RuntimeError:  # ~user without such a user
        raise UserError(f"{what} {str(name)[:80]!r}: cannot expand '~' (no such user's home folder)") from None


def list_images(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``folder``, sorted, found as Ultralytics' dataset finds them: recursively (through linked
    folders), by suffix (``.jpg`` ..., case-insensitive), skipping hidden files and folders; no folder, no images.
    Anything Ultralytics would open as an image there (any of its formats) must be a regular file, or this raises."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in walk_files(folder, ultralytics_image_suffixes(), "image") if p.suffix.lower() in suffixes]


def ultralytics_image_suffixes() -> set[str]:
    """The suffixes Ultralytics reads as images (``.jpg``, ..., ``.heic``), lower case."""
    from . import ultra

    return {f".{f}" for f in ultra.IMG_FORMATS} | IMAGE_SUFFIXES


def _label_dir(image_dir: Path) -> Path:
    parts = list(image_dir.parts)
    if "images" not in parts:
        raise UserError(f"image folder {image_dir} has no 'images' component: labels are looked up in its 'labels' twin")
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts)


def load_data_yaml(path: Path) -> dict:
    """Parse and sanity-check a data YAML (``train``, ``val``, optional ``test``, ``names``) without reading images."""
    text = read_regular(path, "data YAML", MAX_BYTES)  # a FIFO is refused unopened, a huge file unread
    try:
        cfg = safe_load(text.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"data YAML {path} is not valid YAML: {(str(e).splitlines() or ['unreadable'])[0]}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"data YAML {path} must be a mapping with train, val and names")
    for key in SPLITS:
        if key == "test" and cfg.get(key) in (None, ""):
            cfg.pop(key, None)  # no test split: nothing to check, nothing Ultralytics reads
        elif not isinstance(cfg.get(key), str) or not cfg[key] or "\0" in cfg[key]:
            raise UserError(f"data YAML {path}: key '{key}' must be a folder of images (one string)")
    if cfg.get("path") is not None and (not isinstance(cfg["path"], str) or not cfg["path"] or "\0" in cfg["path"]):
        raise UserError(f"data YAML {path}: key 'path' must be the dataset folder (one string)")
    names = cfg.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names or not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
        raise UserError(f"data YAML {path}: 'names' must be a non-empty list or an index→name mapping")
    if sorted(names) != list(range(len(names))):
        raise UserError(f"data YAML {path}: 'names' indices must be 0..{len(names) - 1} without gaps")
    if bad := [v for v in names.values() if not isinstance(v, (str, int, float)) or isinstance(v, bool)]:
        raise UserError(f"data YAML {path}: class name {str(bad[0])[:40]!r} must be a plain string")
    if "nc" in cfg and (isinstance(cfg["nc"], bool) or cfg["nc"] != len(names)):
        raise UserError(f"data YAML {path}: nc={str(cfg['nc'])[:20]} but {len(names)} names are listed: make them agree")
    if cfg.get("channels") not in (None, 1, 3) or isinstance(cfg.get("channels"), bool):
        raise UserError(f"data YAML {path}: channels must be 1 or 3, got {str(cfg['channels'])[:20]}")
    cfg["names"] = {k: str(v) for k, v in names.items()}
    root = _expand(cfg["path"], f"data YAML {path}: path") if cfg.get("path") else Path(path).parent
    cfg["_root"] = root if root.is_absolute() else (Path(path).parent / root).resolve()
    return cfg


def splits(cfg: dict) -> list[str]:
    """The splits a data YAML defines and Ultralytics may read: train, val, and test when present."""
    return [s for s in SPLITS if cfg.get(s)]


def check_dataset(data: str | os.PathLike, coco128_dir=None, check_labels: bool = True) -> Path:
    """Resolve ``data`` and verify every split: images and labels exist as regular files, labels are well-formed, a
    sample of images decodes. Returns the YAML path (the user's file; :func:`safe_data_yaml` writes what Ultralytics
    may read). Without ``check_labels`` only what opening the files needs is checked (kinds, link loops, caches)."""
    path = resolve_data(data, coco128_dir)
    cfg = load_data_yaml(path)
    nc = len(cfg["names"])
    for split in splits(cfg):
        images, labels = split_files_checked(cfg, split, path)
        if check_labels:
            _check_labels(labels, nc, path)
            _check_images(images)
    return path


def split_files_checked(cfg: dict, split: str, source: Path, strict: bool = True) -> tuple[list[Path], list[Path]]:
    """(images, label files) of a split of a parsed data YAML, each a regular file Ultralytics may open, no link loop
    in its folders, and no label cache that is anything but a plain one. ``strict``: a missing or empty image or
    label folder fails too, naming ``source``."""
    image_dir = (cfg["_root"] / cfg[split]).resolve()
    if not image_dir.is_dir():
        raise UserError(f"{split} images not found: {image_dir} (from {source})")
    label_dir = _label_dir(image_dir)  # before the walk: an 'images' folder, not any folder at all
    every_image = walk_files(image_dir, ultralytics_image_suffixes(), "image")
    images = [p for p in every_image if p.suffix.lower() in IMAGE_SUFFIXES]
    if strict and not images:
        raise UserError(f"no {split} images in {image_dir} (from {source})")
    if strict and not label_dir.is_dir():
        raise UserError(f"{split} labels not found: {label_dir} (YOLO .txt labels beside images/, from {source})")
    labels = walk_files(label_dir, {".txt"}, "label") if label_dir.is_dir() else []
    if strict and not labels:
        raise UserError(f"no label files in {label_dir} (from {source})")
    from . import ultra

    for cache in {Path(f).parent.with_suffix(".cache") for f in ultra.img2label_paths(every_image)}:
        if os.path.lexists(cache):  # Ultralytics unpickles it: only numpy arrays and plain values may be in it
            check_label_cache(cache)
    return images, labels


def _check_images(images: list[Path]) -> None:
    """Decode up to ``SAMPLE_IMAGES`` images spread over the split: a broken image fails now, not mid-training."""
    from PIL import Image

    step = max(1, len(images) // SAMPLE_IMAGES)
    for file in images[::step][:SAMPLE_IMAGES]:
        try:
            with Image.open(file) as im:
                im.load()
        except Exception as e:  # unidentified, truncated, decompression bomb, unreadable
            first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            raise UserError(f"image {file} cannot be decoded: {first}") from None


def _check_labels(files: list[Path], nc: int, data_path: Path) -> None:
    """Every row of every label file is ``cls x y w h``: a class id in 0..nc-1, a box normalised to the image."""
    for file in files:
        for where, values in label_rows(file):
            if len(values) != 5:
                raise UserError(f"label {where} has {len(values)} values, a detection label needs 5 (cls x y w h)")
            cls, box = values[0], values[1:]
            if cls != int(cls) or not 0 <= cls < nc:
                raise UserError(f"label {where} has class id {cls:g}, the data YAML {data_path} has classes "
                                f"0..{nc - 1}")
            if not all(0.0 <= v <= 1.0 for v in box) or box[2] <= 0 or box[3] <= 0:
                raise UserError(f"label {where} has a box outside [0, 1] or of zero size: normalise xywh to the image")


def safe_data_yaml(data: str | os.PathLike, out_dir: str | os.PathLike | None = None, coco128_dir=None,
                   check_labels: bool = True) -> Path:
    """Check ``data`` and write the copy Ultralytics may read: absolute ``path`` and split folders (resolved as
    ultranas resolves them), ``names``/``nc``, and nothing else, so no ``download:`` is ever executed.

    Written to ``out_dir/data.yaml`` (a search's run directory) or, without ``out_dir``, to
    ``$ULTRANAS_HOME/data/`` under a name unique to the source file and its content (kept, so a checkpoint's
    ``train_args`` stay valid). A copy written here is returned as is.
    """
    path = resolve_data(data, coco128_dir)
    if is_checked_copy(path):
        cfg = load_data_yaml(path)
        for split in splits(cfg):  # its folders may have changed since: no FIFO, link loop or pickle now either
            split_files_checked(cfg, split, path, strict=False)
        return path
    check_dataset(path, check_labels=check_labels)
    cfg = load_data_yaml(path)
    text = checked_text(path, cfg["_root"], {s: (cfg["_root"] / cfg[s]).resolve() for s in splits(cfg)}, cfg)
    if out_dir is None:
        from .runtime import HOME

        key = hashlib.sha1(text.encode()).hexdigest()[:12]
        out = HOME / "data" / f"{path.parent.name or 'data'}-{path.stem}-{key}.yaml"
    else:
        out = Path(out_dir) / "data.yaml"
    from .fsutil import atomic_write_text

    try:
        return atomic_write_text(out, text)
    except OSError as e:
        raise UserError(f"cannot write the checked data YAML {out}: {e.strerror}") from None


def checked_text(source: Path, root: Path, folders: dict[str, Path], cfg: dict) -> str:
    """A checked data YAML's text: the marker naming ``source``, absolute ``path`` and split ``folders`` (split ->
    folder), ``nc``/``names`` (and ``channels``) of the parsed ``cfg``, and nothing else."""
    safe = {"path": str(Path(root).resolve()), **{s: str(f) for s, f in folders.items()},
            "nc": len(cfg["names"]), "names": cfg["names"]}
    if cfg.get("channels"):
        safe["channels"] = cfg["channels"]
    text = f"{MARKER} {json.dumps(str(source))}\n" + yaml.safe_dump(safe, sort_keys=False, allow_unicode=True)
    if not set(yaml.safe_load(text)) <= SAFE_KEYS:  # nothing but what was checked (the comment stays one line)
        raise RuntimeError(f"checked copy of {source} would hold more than {sorted(SAFE_KEYS)}")
    return text


def is_checked_copy(path: Path) -> bool:
    """A data YAML written by :func:`safe_data_yaml`: marker line, only known keys, absolute existing folders."""
    try:
        with open(path, "rb") as f:
            if not f.readline(len(MARKER) + 1).startswith(MARKER.encode()):
                return False
        cfg = load_data_yaml(path)
    except (OSError, UserError):
        return False
    folders = [cfg.get("path") or ""] + [cfg[s] for s in splits(cfg)]
    return set(cfg) - {"_root"} <= SAFE_KEYS and all(Path(p).is_absolute() for p in folders) \
        and all(Path(cfg[s]).is_dir() for s in splits(cfg))


def class_names(data_yaml: Path) -> dict[int, str]:
    return load_data_yaml(data_yaml)["names"]


def split_size(data_yaml: str | os.PathLike, split: str = "train") -> int:
    """How many images a split of a data YAML holds (0 for a split it does not define)."""
    cfg = load_data_yaml(Path(data_yaml))
    return len(list_images((cfg["_root"] / cfg[split]).resolve())) if cfg.get(split) else 0
