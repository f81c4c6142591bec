"""``ultranas predict|val|train|export key=value ...``: Ultralytics-style modes on a ``NAS`` model."""

from __future__ import annotations

import re

import yaml

from . import checks
from .errors import UserError
from .safe_yaml import YAMLBudgetError, safe_load

MAX_VALUE, MAX_KEY = 4096, 64  # characters of one value (a path at most), of one argument name
NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)")  # '1e9': YAML reads it as text, Ultralytics' CLI as a number
NAS_KEYS = {"coco_eval": "bool", "max_dets": "int", "gt_json": "text"}  # ultranas' own arguments (val coco_eval=true)


def _value(key: str, raw: str):
    """One value as Ultralytics' CLI would read it, parsed as YAML (never eval'd): a one-line, bounded string in; a
    scalar or a list out (a mapping is refused; text YAML cannot parse stays text)."""
    if not raw:
        raise UserError(f"argument '{key}=' has no value (e.g. {key}=...)")
    if len(raw) > MAX_VALUE or not raw.isprintable():
        raise UserError(f"the value of {key} must be one line of at most {MAX_VALUE} printable characters")
    try:
        parsed = safe_load(raw)
    except YAMLBudgetError as e:
        raise UserError(f"the value of {key} {e}: give a plain value") from None
    except yaml.YAMLError:
        return raw
    if isinstance(parsed, str) and NUMBER.fullmatch(parsed):
        return float(parsed)
    if isinstance(parsed, dict):
        raise UserError(f"{key} takes a value, not a mapping: {checks.shown(raw)}")
    return parsed if isinstance(parsed, (str, int, float, bool, list)) or parsed is None else raw


def _kv(items: list[str]) -> dict:
    """Ultralytics-style ``key=value`` (or ``--key value``) arguments; values parsed by :func:`_value`."""
    out, i = {}, 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            key = item[2:].replace("-", "_")
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(items) and not items[i + 1].startswith("--"):
                value, i = items[i + 1], i + 1
            else:
                value = "true"
        elif "=" in item:
            key, value = item.split("=", 1)
        else:
            raise UserError(f"argument {checks.shown(item)} is not key=value (e.g. model=found_n.pt source=img.jpg)")
        if not key.isidentifier() or len(key) > MAX_KEY:
            raise UserError(f"argument {checks.shown(item)} has no valid name before '=' (e.g. imgsz=320)")
        out[key] = _value(key, value)
        i += 1
    return out


def _nas_args(kw: dict) -> dict:
    """ultranas' own arguments (popped from ``kw``), checked."""
    out = {}
    for key, kind in NAS_KEYS.items():
        if key in kw:
            value = kw.pop(key)
            if kind == "int" and not checks.is_int(value):  # its range is coco_eval's to say
                raise UserError(f"{key} must be a whole number, got {checks.shown(value)}")
            out[key] = checks.boolean(key, value) if kind == "bool" else value if kind == "int" else \
                checks.text(key, str(value))
    return out


def parse_mode_args(command: str, items: list[str]) -> tuple[str, dict, dict]:
    """``model``, the Ultralytics arguments (checked: names, types and ranges) and ultranas' own arguments of
    ``ultranas <command> key=value ...``; every problem is a :class:`UserError`."""
    kw = _kv(items)
    own = _nas_args(kw)
    model = kw.pop("model", None)
    if not model or not isinstance(model, (str, int, float)) or isinstance(model, bool):
        raise UserError(f"ultranas {command} needs model=PATH (a found_*.pt or a model .yaml)")
    extra = [k for k in own if k != "coco_eval" or command != "val"]
    if extra and not (command == "val" and own.get("coco_eval")):
        raise UserError(f"{extra[0]} goes with 'ultranas val coco_eval=true' only")
    return str(model), checks.mode_args(kw, command), own


def run_mode(command: str, items: list[str]) -> None:
    """``ultranas <command> key=value ...`` as ``yolo <command>`` would run it, on a ``NAS`` model."""
    from .model import NAS

    model, kw, own = parse_mode_args(command, items)
    coco_eval = own.get("coco_eval", False)
    if "data" in kw:  # Ultralytics gets the checked copy: absolute folders, never a 'download:' to run
        from .data import safe_data_yaml

        kw["data"] = str(safe_data_yaml(str(kw["data"])))
    nas = NAS(model)
    if command == "predict":
        kw.setdefault("save", True)
        results = nas.predict(**kw)
        print(f"ultranas: {len(results)} image(s); saved to {results[0].save_dir if results else '-'}")
    elif command == "val":
        if coco_eval:
            from .coco import coco_eval as run_coco_eval

            if "data" not in kw:
                raise UserError("coco_eval=true needs data=DATA_YAML")
            data = kw.pop("data")
            opts = {k: v for k, v in (("gt_json", own.get("gt_json")), ("save_dir", kw.pop("save_dir", None))) if v}
            max_dets, imgsz = own.get("max_dets", 100), kw.pop("imgsz", 640)
            if not isinstance(imgsz, int):
                raise UserError(f"coco_eval=true takes one imgsz, not {checks.shown(imgsz)}")
            r = run_coco_eval(nas, data, imgsz=imgsz, device=str(kw.pop("device", "cpu")), max_dets=max_dets,
                              **opts, **kw)  # the rest (split, batch, conf, ...) goes to Ultralytics' validator
            print(f"ultranas: mAP50-95 Ultralytics {r['ultralytics_map']:.4f} | pycocotools {r['cocoeval_map']:.4f}   "
                  f"mAP50 Ultralytics {r['ultralytics_map50']:.4f} | pycocotools {r['cocoeval_map50']:.4f}   "
                  f"({r['images']} images, {r['detections']} validator detections, COCOeval maxDets {max_dets}"
                  + (f"; predictions.json in {r['save_dir']})" if r["save_dir"] else ")"))
        else:
            m = nas.val(**kw)
            print(f"ultranas: mAP50-95 {m.box.map:.4f}  mAP50 {m.box.map50:.4f}")
    elif command == "train":
        nas.train(**kw)
    else:
        print(f"ultranas: exported {nas.export(**kw)}")
