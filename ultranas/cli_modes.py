"""``ultranas predict|val|train|export key=value ...``: Ultralytics-style modes on a ``NAS`` model."""

from __future__ import annotations

import yaml

from .errors import UserError


def _kv(items: list[str]) -> dict:
    """Ultralytics-style ``key=value`` (or ``--key value``) arguments; values parsed as YAML scalars, never eval'd."""
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
            raise UserError(f"argument '{item}' is not key=value (e.g. model=found_n.pt source=img.jpg)")
        if not key.isidentifier():
            raise UserError(f"argument '{item}' has no valid name before '=' (e.g. imgsz=320)")
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value
        out[key] = parsed if isinstance(parsed, (str, int, float, bool, list)) or parsed is None else value
        i += 1
    return out


def run_mode(command: str, items: list[str]) -> None:
    """``ultranas <command> key=value ...`` as ``yolo <command>`` would run it, on a ``NAS`` model."""
    from .model import NAS

    kw = _kv(items)
    coco_eval = kw.pop("coco_eval", False)
    if not isinstance(coco_eval, bool):
        raise UserError(f"coco_eval must be true or false, got {str(coco_eval)[:40]!r}")
    model = kw.pop("model", None)
    if not model or not isinstance(model, (str, int, float)):
        raise UserError(f"ultranas {command} needs model=PATH (a found_*.pt or a model .yaml)")
    if "data" in kw:  # Ultralytics gets the checked copy: absolute folders, never a 'download:' to run
        from .data import safe_data_yaml

        kw["data"] = str(safe_data_yaml(str(kw["data"])))
    nas = NAS(str(model))
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
            opts = {k: kw.pop(k) for k in ("gt_json", "save_dir") if kw.get(k) is not None}
            try:
                max_dets, imgsz = int(kw.pop("max_dets", 100)), int(kw.pop("imgsz", 640))
            except (TypeError, ValueError):
                raise UserError("max_dets and imgsz must be whole numbers") from None
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
