"""INT8 accuracy objective: how much mAP50-95 a design loses when shipped as OpenVINO INT8 (NNCF post-training).

The trained proxy model (the estimator's ``weights``) is exported as ``export(format="openvino", int8=True)`` does,
calibrated on training images, and validated on the val split beside its fp32 self (``ultra.int8_openvino_metrics``).
The INT8 *latency* is the ``openvino-cpu-int8`` latency target: search with
``--objectives map,latency,int8_drop --latency-target openvino-cpu-int8``.
"""

from __future__ import annotations

import functools
import importlib.util

from .. import ultra
from ..errors import UserError
from ._base import Candidate, Objective

NEEDS = ("openvino", "nncf")


def check_int8_available() -> None:
    """One clear ``UserError`` where OpenVINO or NNCF is missing."""
    missing = [p for p in NEEDS if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(f"the int8_drop objective needs {' and '.join(missing)} (pip install 'ultranas[deploy]')")


class Int8DropObjective(Objective):
    """mAP50-95 (fp32) - mAP50-95 (OpenVINO INT8) of the trained proxy model on the val split (minimize).

    With several ``--seeds`` the last seed's model is the one quantised; its fp32 mAP is recorded as
    ``int8_fp32_map`` beside the seed-averaged ``map``.

    Args:
        data: the checked data YAML (calibration images come from its train split, the score from val).
        calib_images: at most this many training images calibrate the quantiser.
    """

    name, direction, cheap, label = "int8_drop", "minimize", False, "mAP50-95 lost in INT8"
    reads = ("single_cls",)

    def __init__(self, data=None, calib_images: int = 128, single_cls: bool = False):
        check_int8_available()
        self.data, self.calib_images, self.single_cls = data, int(calib_images), bool(single_cls)

    @functools.cached_property
    def calib_fraction(self) -> float:
        """The share of the training split that makes ``calib_images`` (the folder is listed once)."""
        from ..data import split_size

        return min(1.0, self.calib_images / max(1, split_size(self.data, "train")))

    @property
    def version(self) -> str:
        """What the number depends on besides the weights: calibration size and the quantiser's versions."""
        from ._targets import _version

        return f"c{self.calib_images}|ov{_version('openvino')}|nncf{_version('nncf')}|sc{int(self.single_cls)}"

    def metrics(self, weights, imgsz: int) -> dict:
        """fp32 and INT8 mAP of ``weights`` at ``imgsz`` (see ``ultra.int8_openvino_metrics``)."""
        return ultra.int8_openvino_metrics(weights, self.data, imgsz, calib_fraction=self.calib_fraction,
                                           single_cls=self.single_cls)

    def value(self, candidate: Candidate, results: dict | None = None) -> float:
        if self.data is None or not (results or {}).get("weights"):
            raise UserError("int8_drop needs a training estimator that keeps the trained weights (short-train)")
        found = self.metrics(results["weights"], results.get("imgsz") or candidate.proxy_imgsz)
        results.update(found)  # int8_*: recorded with the trial's metrics
        return float(found["int8_drop"])
