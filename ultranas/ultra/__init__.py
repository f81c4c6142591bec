"""The one door to Ultralytics: every import of ``ultralytics`` and every use of its internals is in this package.

Written against ultralytics 8.4.190; an upgrade should change this package (and ``runtime.py``) only.

- ``_nn``: build, count, load, save and prepare ``DetectionModel`` s; their loss, head outputs and caches.
- ``_train``: the detection ``Model`` (task map), stock training and validation, EMA, log verbosity.
- ``_args``: Ultralytics' argument schema (names, types, export formats), default hyper-parameters.
- ``_export``: Ultralytics' OpenVINO (NNCF INT8) and ncnn (PNNX) converters, for timing what ``export`` ships.
- ``_coco``: the validator that keeps what ``ultranas.coco`` needs; Ultralytics' image and label conventions.

Names load on first use (``ultra.train`` imports the trainer, ``ultra.load_checkpoint`` only the model code), so
``from ultranas import ultra`` is cheap. Each submodule first calls :func:`ultranas.runtime.setup`.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "_nn": ("DetectionModel", "bundled_model_yaml", "build_model", "count_params", "detection_loss", "epoch_end",
            "gflops", "head_output_sum", "head_takes_data_nc", "inference_model", "is_end2end", "load_checkpoint", "prepare_for_training",
            "prepare_loss", "reset_head_cache", "save_trained", "write_nas_checkpoint"),
    "_train": ("DetectionTask", "ModelEMA", "ap_per_class", "box_metrics", "train",
               "ultralytics_verbosity", "validate", "validate_per_image"),
    "_args": ("check_args", "export_formats", "hyperparameters", "increment_path"),
    "_export": ("FlatInputs", "int8_openvino_metrics", "ncnn_files", "openvino_model"),
    "_coco": ("CocoJsonValidator", "IMG_FORMATS", "coco80_to_coco91_class", "exif_size", "img2label_paths",
              "validate_for_coco"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'ultranas.ultra' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(_MODULE)


__all__ = sorted(_MODULE)
