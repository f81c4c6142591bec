"""Performance estimation: short-schedule training, zero-cost proxies, successive halving, calibration."""

from ..errors import UserError
from ._base import Estimator
from ._halving import Pruned, SuccessiveHalving
from ._short_train import ShortTrainEstimator, compressed_schedule

ESTIMATORS = ("short-train", "zero-cost")


def make_estimator(name: str, data, *, epochs: int, imgsz: int, batch: int, device: str, seeds=(0,),
                   fraction: float = 1.0, single_cls: bool = False, proxy: str = "mae_entropy",
                   verbose: bool = False, trainer: str = "ultralytics", score: str = "map",
                   train_imgsz: int | None = None) -> Estimator:
    """An estimator by name. Training estimators train at ``train_imgsz`` (default: each candidate's own size)."""
    if name == "short-train" and trainer == "fast":
        from ._fast_train import FastTrainEstimator

        return FastTrainEstimator(data, epochs=epochs, imgsz=train_imgsz, batch=batch, device=device, seeds=seeds,
                                  fraction=fraction, single_cls=single_cls, verbose=verbose, score=score)
    if name == "short-train":
        if score != "map":
            raise UserError(f"score '{score}' needs the fast trainer (--trainer fast)")
        return ShortTrainEstimator(data, epochs=epochs, imgsz=train_imgsz, batch=batch, device=device, seeds=seeds,
                                   fraction=fraction, single_cls=single_cls, verbose=verbose)
    if name == "zero-cost":
        from ._zero_cost import ZERO_COST_PROXIES, ZeroCostEstimator

        if proxy not in ZERO_COST_PROXIES:
            raise UserError(f"unknown proxy '{proxy}': choose from {', '.join(ZERO_COST_PROXIES)}")
        return ZeroCostEstimator(data, proxy=proxy, imgsz=imgsz, seed=seeds[0], device=device)
    raise UserError(f"unknown estimator '{name}': choose from {', '.join(ESTIMATORS)}")


__all__ = ["ESTIMATORS", "Estimator", "Pruned", "ShortTrainEstimator", "SuccessiveHalving", "compressed_schedule",
           "make_estimator"]
