"""What ``ultranas.coco`` needs from Ultralytics: its validator's own detections, its image and label conventions."""

from __future__ import annotations

from pathlib import Path

from ..runtime import setup, ultralytics_scope

setup()

from ultralytics.data.converter import coco80_to_coco91_class
from ultralytics.data.utils import IMG_FORMATS, exif_size, img2label_paths
from ultralytics.models.yolo.detect import DetectionValidator

from ._train import ultralytics_verbosity

__all__ = ["IMG_FORMATS", "CocoJsonValidator", "coco80_to_coco91_class", "exif_size", "img2label_paths",
           "validate_for_coco"]


class CocoJsonValidator(DetectionValidator):
    """Ultralytics' detection validator with ``save_json`` that also keeps, for ``ultranas.coco``, each JSON
    detection's image file and class index and every evaluated image's original (EXIF-corrected) size."""

    def init_metrics(self, model) -> None:
        super().init_metrics(model)
        self.det_meta, self.image_shapes = [], {}

    def _prepare_batch(self, si, batch):
        pbatch = super()._prepare_batch(si, batch)
        self.image_shapes[pbatch["im_file"]] = tuple(int(v) for v in pbatch["ori_shape"])  # (h, w) as loaded
        return pbatch

    def pred_to_json(self, predn, pbatch) -> None:
        super().pred_to_json(predn, pbatch)
        self.det_meta += [(pbatch["im_file"], int(c)) for c in predn["cls"].tolist()]

    def eval_json(self, stats):
        return stats  # scored by ultranas.coco with pycocotools; Ultralytics' own mAP stays in ``stats``


def validate_for_coco(model, save_dir: str | Path, verbose: bool = False, **kwargs) -> dict:
    """One Ultralytics validation pass (as ``model.val``, with ``save_json``) into ``save_dir``.

    Returns Ultralytics' mAP, its ``predictions.json`` detections (``bbox`` x, y, w, h in original pixels) with
    ``im_file`` and class index ``cls`` added, the evaluated images' ``{file: (h, w)}`` and the model's names.
    """
    args = {**model.overrides, "rect": True, **kwargs, "mode": "val", "save_json": True, "plots": False}
    with ultralytics_verbosity(verbose), ultralytics_scope():
        validator = CocoJsonValidator(save_dir=Path(save_dir), args=args, _callbacks=model.callbacks)
        validator(model=model.model)
    if len(validator.det_meta) != len(validator.jdict):
        raise RuntimeError("Ultralytics' pred_to_json wrote a different number of detections than it was given")
    detections = [{**d, "im_file": f, "cls": c} for d, (f, c) in zip(validator.jdict, validator.det_meta)]
    box = validator.metrics.box
    return {"map": float(box.map), "map50": float(box.map50), "detections": detections,
            "images": dict(validator.image_shapes), "names": dict(validator.names)}
