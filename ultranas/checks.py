"""Range checks for every setting a user gives: ``search``'s flags, ``calibrate``'s, ``space``'s and the key=value
arguments of ``predict``/``val``/``train``/``export``. One rule each, one line when a value breaks it.

Each check takes the name the user typed (``--epochs``, ``imgsz``) and the value; it returns the value (converted where
the rule allows, e.g. a whole float to an int) or raises :class:`UserError` saying what was expected and what came.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .errors import UserError

STRIDE, MIN_IMGSZ, MAX_IMGSZ = 32, 32, 4096  # the detector's largest stride; search's --imgsz bounds
MAX_BATCH, MAX_EPOCHS, MAX_NC, MAX_SEED = 4096, 10_000, 10_000, 2**31 - 1
MAX_SAMPLES, MAX_IMAGES = 100_000, 1_000_000  # 'space sample --n'; 'data coco-subset --n' (COCO train has 118k)
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DEVICE = re.compile(r"cpu|mps(:0)?|(cuda:)?\d{1,3}(,(cuda:)?\d{1,3}){0,63}")
MAX_PIXELS = 16384  # a mode's imgsz: Ultralytics rounds any whole size up to the stride


def shown(value, limit: int = 40) -> str:
    """``value`` as a message shows it: its repr, cut to ``limit`` characters (user text can be anything)."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to write out
        return "a number too large to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real, finite number (not a bool, nan or inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(name: str, value, lo: int = 1, hi: int = MAX_SEED, note: str = "") -> int:
    """A whole number in ``[lo, hi]``; ``note`` explains a special value, e.g. ``" (0: off)"``."""
    if not is_int(value) or not lo <= value <= hi:
        raise UserError(f"{name} must be an integer in [{lo:,}, {hi:,}]{note}, got {shown(value)}")
    return value


def positive_int(name: str, value, hi: int = MAX_SEED) -> int:
    return integer(name, value, 1, hi)


def seed(name: str, value) -> int:
    return integer(name, value, 0, MAX_SEED)


def seeds(name: str, values, distinct: bool = False) -> list[int]:
    """A non-empty list of seeds (non-negative integers); ``distinct``: none twice."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise UserError(f"{name} must be a list of seeds, got {shown(values)}")
    out = list(values)
    if not out or not all(is_int(v) and 0 <= v <= MAX_SEED for v in out):
        raise UserError(f"{name} must be non-negative integers (at least one), got {shown(out)}")
    if distinct and len(set(out)) != len(out):
        raise UserError(f"{name} has a seed twice: {shown(out)}")
    return out


def int_list(name: str, text) -> list[int]:
    """A comma list of whole numbers as typed (``"0,1"``), or a list already."""
    if not isinstance(text, str):
        return text
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"{name} must be a comma list of integers, e.g. 0,1; got {shown(text)}") from None


def finite(name: str, value) -> float:
    if not is_number(value):
        raise UserError(f"{name} must be a finite number, got {shown(value)}")
    return float(value)


def positive(name: str, value) -> float:
    if not is_number(value) or not value > 0:
        raise UserError(f"{name} must be a positive number, got {shown(value)}")
    return float(value)


def within(name: str, value, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in the interval ``lo..hi``, each end open or closed as told (the message writes it so)."""
    number = finite(name, value)
    if not ((lo < number if lo_open else lo <= number) and (number < hi if hi_open else number <= hi)):
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise UserError(f"{name} must be in {span}, got {number:g}")
    return number


def fraction(name: str, value) -> float:
    """A share in (0, 1]."""
    return within(name, value, 0, 1, lo_open=True)


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {shown(value)}")
    return value


def choice(name: str, value, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise UserError(f"unknown {name} {shown(value)}: choose {', '.join(options)}")
    return value


def text(name: str, value, limit: int = 4096) -> str:
    """A non-empty, one-line string (a path, a name) of at most ``limit`` characters."""
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise UserError(f"{name} must be a non-empty one-line text of at most {limit} characters, got {shown(value)}")
    return value


def stride_size(name: str, value, lo: int = MIN_IMGSZ, hi: int = MAX_IMGSZ) -> int:
    """An image size: an integer in ``[lo, hi]`` and a multiple of the detector's largest stride (32)."""
    integer(name, value, lo, hi)
    if value % STRIDE:
        raise UserError(f"{name} must be a multiple of {STRIDE} (the detector's largest stride), got {value}")
    return value


def image_size(name: str, value) -> int | list[int]:
    """``imgsz`` as Ultralytics takes it: one stride size, or ``[height, width]`` of them."""
    if isinstance(value, (list, tuple)):
        if len(value) not in (1, 2):
            raise UserError(f"{name} must be a size or [height, width], got {shown(value)}")
        return [stride_size(name, v) for v in value]
    return stride_size(name, value)


def pixels(name: str, value) -> int | list[int]:
    """A mode's ``imgsz``: a whole size, or ``[height, width]``, in ``[1, MAX_PIXELS]`` (Ultralytics rounds it up to
    the stride with a warning, so any whole size is usable)."""
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if not 1 <= len(sizes) <= 2:
        raise UserError(f"{name} must be a size or [height, width], got {shown(value)}")
    sizes = [integer(name, v, 1, MAX_PIXELS) for v in sizes]
    return sizes if isinstance(value, (list, tuple)) else sizes[0]


def folder_name(name: str, value) -> str:
    """A run folder name that stays inside its project folder: letters, digits, '.', '_', '-'; no '..'."""
    if not isinstance(value, str) or not FOLDER_NAME.fullmatch(value) or ".." in value:
        raise UserError(f"{name} must be a plain folder name (letters, digits, '.', '_', '-'), got {shown(value)}")
    return value


def inside(name: str, path, root) -> Path:
    """``path`` resolved, refused unless it lies inside ``root`` (a folder a command writes under)."""
    root_resolved, resolved = Path(root).expanduser().resolve(), Path(path).expanduser().resolve()
    if not resolved.is_relative_to(root_resolved):
        raise UserError(f"{name} leads outside {root}: {shown(str(path), 80)}")
    return resolved


def device(name: str, value) -> str:
    """A device as written: cpu, mps, a CUDA index, a comma list of them, or cuda:N (availability is checked where
    the device is used)."""
    if is_int(value):
        value = str(value)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return value  # the default: Ultralytics picks
    if not isinstance(value, str) or not DEVICE.fullmatch(value.strip().lower().replace(" ", "")):
        raise UserError(f"unknown {name} {shown(value)}: use cpu, 0, 0,1 or cuda:0")
    return value


def folder_inside(flag: str, project, name) -> Path:
    """``project/name`` for a new run folder: ``name`` plain (see :func:`folder_name`) and the result inside
    ``project``."""
    folder_name(flag, name)
    return inside(flag, Path(project) / name, project)


# -- Ultralytics' key=value arguments (predict, val, train, export) -------------------------------------------------
LIST_KEYS = frozenset({"imgsz", "classes", "fraction", "source", "embed", "scale", "freeze"})  # take a flat list too
LEGACY_BOOL_KEYS = frozenset({"half", "int8", "end2end", "boxes", "hide_labels", "hide_conf", "keras", "save_hybrid"})
INT_HIGH = {"epochs": MAX_EPOCHS, "patience": MAX_EPOCHS, "close_mosaic": MAX_EPOCHS, "save_period": MAX_EPOCHS,
            "workers": 256, "max_det": 100_000, "vid_stride": 10_000}  # beyond these a value is a typo, not a plan
SPLITS = ("train", "val", "test")


def _ultralytics_types() -> dict:
    """Ultralytics' declared argument types (its ``cfg`` lists) and defaults; imported through ultranas' door first,
    so Ultralytics starts in its offline, safe-load setup."""
    import importlib

    from .ultra import _args  # noqa: F401  (runs ultranas.runtime.setup before Ultralytics is imported)

    cfg = importlib.import_module("ultralytics.cfg")
    return {"int": cfg.CFG_INT_KEYS, "float": cfg.CFG_FLOAT_KEYS, "fraction": cfg.CFG_FRACTION_KEYS,
            "bool": cfg.CFG_BOOL_KEYS | LEGACY_BOOL_KEYS, "int_min": cfg.CFG_INT_MIN, "defaults": cfg.DEFAULT_CFG_DICT}


def _plain(key: str, value) -> None:
    """A scalar, or a flat list for the keys that take one; every number in it finite and of a sane size."""
    items = value if isinstance(value, (list, tuple)) and key in LIST_KEYS else [value]
    for item in items:
        if isinstance(item, (dict, list, tuple, set)):
            takes = "one value or a flat list of values" if key in LIST_KEYS else "one value"
            raise UserError(f"{key} takes {takes}, not {'a mapping' if isinstance(item, dict) else 'a list'}: "
                            f"{shown(value)}")
        if isinstance(item, float) and not math.isfinite(item):
            raise UserError(f"{key} must be a finite number, got {item}")
        if is_int(item) and item.bit_length() > 63:
            raise UserError(f"{key} is too large a number ({item.bit_length()} bits)")


def _batch(value, command: str | None):
    """``batch``: images per step; ``train`` also takes Ultralytics' AutoBatch (-1) or a GPU memory share in (0, 1)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if command == "train" and (value == -1 or (isinstance(value, float) and 0 < value < 1)):
        return value
    note = " (train also takes -1 or a GPU memory share in (0, 1))"
    return integer("batch", value, 1, MAX_BATCH, note if command == "train" else "")


def _ranged(key: str, value, command: str | None, types: dict):
    """The range of one argument Ultralytics has already type-checked (or has no type for); None is its default."""
    if value is None:
        return None
    if key == "imgsz":
        return pixels(key, value)
    if key == "batch":
        return _batch(value, command)
    if key in types["int"]:
        value = int(value) if isinstance(value, float) and value.is_integer() else value  # as Ultralytics reads 1e2
        default = types["defaults"].get(key)
        lo = min(types["int_min"].get(key, 0), default if is_int(default) else 0)  # save_period: -1 is "off"
        return integer(key, value, lo, INT_HIGH.get(key, MAX_SEED))
    if key in types["float"] and not (is_number(value) and value >= 0):
        raise UserError(f"{key} must be a non-negative number, got {shown(value)}")
    if key in types["fraction"] and key != "fraction" and value is not None:  # Ultralytics takes conf=true as 1
        return within(key, value, 0, 1)
    if key in types["bool"]:
        return boolean(key, value)
    if key == "split" and value not in SPLITS:
        raise UserError(f"split must be {', '.join(SPLITS[:-1])} or {SPLITS[-1]}, got {shown(value)}")
    if key in ("format", "optimizer", "project", "data", "cfg", "tracker"):
        return text(key, str(value) if is_number(value) else value)
    if key == "name":
        return folder_name(key, str(value) if is_number(value) else value)  # name=2024 is the folder '2024'
    if key == "device" and str(value).strip() != "-1":  # -1: Ultralytics picks the idlest GPU
        device(key, str(value))
    return value


def mode_args(kwargs: dict, command: str | None = None) -> dict:
    """Ultralytics arguments checked: plain finite values, then Ultralytics' own names and types (``check_cfg``), then
    the ranges it leaves open (positive counts, stride-multiple sizes, bounded epochs and workers, known splits,
    device syntax, run names inside their project). Returns the arguments as Ultralytics will read them."""
    from .ultra import check_args

    for key, value in kwargs.items():
        _plain(key, value)
    check_args(kwargs)  # Ultralytics' names and type lists (check_cfg; its conversions apply to a copy)
    types = _ultralytics_types()
    return {key: _ranged(key, value, command, types) for key, value in kwargs.items()}
