"""Ultralytics' argument schema: argument names and types, export formats, default hyper-parameters, run folders."""

from __future__ import annotations

import difflib
from pathlib import Path

from ..runtime import setup

setup()

from ultralytics.cfg import DEFAULT_CFG, DEFAULT_CFG_DICT, check_cfg, get_cfg
from ultralytics.utils.files import increment_path as _increment_path

from ..errors import UserError

# names Ultralytics still accepts for compatibility although they are not in its default.yaml
LEGACY_KEYS = {"half", "int8", "end2end", "boxes", "hide_labels", "hide_conf", "line_thickness", "label_smoothing",
               "save_hybrid", "crop_fraction", "keras", "augmentations", "save_dir"}


def check_args(kwargs: dict) -> None:
    """Ultralytics' own argument names and types, checked up front: one line instead of its error and CLI help."""
    for key in kwargs:
        if key not in DEFAULT_CFG_DICT and key not in LEGACY_KEYS:
            near = difflib.get_close_matches(str(key), DEFAULT_CFG_DICT, n=1)
            raise UserError(f"'{key}' is not an Ultralytics argument" + (f" (did you mean '{near[0]}'?)" if near else ""))
    try:
        check_cfg({k: v for k, v in kwargs.items() if k in DEFAULT_CFG_DICT})
    except (TypeError, ValueError) as e:
        raise UserError(str(e).strip().splitlines()[0]) from None


def export_formats() -> tuple[str, ...]:
    """The ``format=`` values Ultralytics' exporter knows (``onnx``, ``engine``, ...)."""
    from ultralytics.engine.exporter import export_formats as formats  # the exporter is slow to import

    return tuple(formats()["Argument"][1:])


def hyperparameters(**overrides):
    """Ultralytics' default training hyper-parameters (``default.yaml``) with ``overrides``, as its trainer holds
    them (attribute access: ``hyp.lr0``)."""
    return get_cfg(DEFAULT_CFG, overrides or None)


def increment_path(path: str | Path, exist_ok: bool = False, mkdir: bool = False) -> Path:
    """``path``, or ``path2``, ``path3`` ... if it exists: Ultralytics' run-folder naming."""
    return _increment_path(Path(path), exist_ok=exist_ok, mkdir=mkdir)
