"""Performance estimation by name: short-schedule training, zero-cost proxies; successive halving, calibration.

Register a new estimator with :func:`register_estimator` (a name and a factory); ``--estimator``, ``calibrate
--estimators`` and their help are read from :data:`ESTIMATORS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ..errors import UserError
from ..registry import Registry
from ._base import SCORES, Estimator, TrainingEstimator
from ._halving import Pruned, SuccessiveHalving
from ._short_train import ShortTrainEstimator, compressed_schedule

TRAINERS = ("ultralytics", "fast")  # what trains a short-train candidate: the stock trainer or FastTrainer
ESTIMATORS = Registry("estimator", group="estimators")


def register_estimator(name: str, factory: Callable[..., Estimator]) -> Callable[..., Estimator]:
    """Add ``factory(data, *, <settings>) -> Estimator`` under ``name``. The factory's keyword parameters are the
    settings it reads, from :func:`make_estimator`'s: it is given those and no others (``**settings``: all of them),
    and a search refuses a changed setting that neither it nor another part of the run reads."""
    return ESTIMATORS.register(name, factory)


def _short_train(data, *, trainer: str = "ultralytics", score: str = "map", train_imgsz: int | None = None,
                 epochs: int, batch: int, device: str, seeds=(0,), fraction: float = 1.0, single_cls: bool = False,
                 verbose: bool = False) -> Estimator:
    """A short, complete training schedule per candidate, with the stock trainer or the fast one (``trainer``)."""
    knobs = dict(epochs=epochs, imgsz=train_imgsz, batch=batch, device=device, seeds=seeds, fraction=fraction,
                 single_cls=single_cls, verbose=verbose)
    if trainer == "fast":
        from ._fast_train import FastTrainEstimator

        return FastTrainEstimator(data, score=score, **knobs)
    if score != "map":
        raise UserError(f"score '{score}' needs the fast trainer (--trainer fast)")
    return ShortTrainEstimator(data, **knobs)


def _zero_cost(data, *, proxy: str = "mae_entropy", imgsz: int, batch: int = 8, seeds=(0,),
               device: str = "cpu") -> Estimator:
    """A zero-cost proxy (``proxy``) of the design at initialisation, on one batch of ``batch`` images; no training.
    Several ``seeds``: the mean score over them."""
    from ._zero_cost import ZeroCostEstimator

    return ZeroCostEstimator(data, proxy=proxy, imgsz=imgsz, batch_size=batch, seeds=seeds, device=device)


def _supernet(data, *, space=None, cache_dir=None, anchor: str | None = None, score: str = "map",
              epochs: int, imgsz: int, batch: int, device: str, seeds=(0,), fraction: float = 1.0,
              single_cls: bool = False, train_imgsz: int | None = None, verbose: bool = False) -> Estimator:
    """One-shot supernet trained once (``epochs``) at the proxy size; designs scored with inherited weights."""
    from ._supernet import SUPERNET_SCORES, SupernetEstimator

    if score not in SUPERNET_SCORES:
        raise UserError(f"the supernet estimator scores by {' or '.join(SUPERNET_SCORES)}, not '{score}'")
    return SupernetEstimator(data, epochs=epochs, imgsz=train_imgsz or imgsz, batch=batch, device=device, seeds=seeds,
                             fraction=fraction, single_cls=single_cls, verbose=verbose, space=space,
                             anchor=anchor, cache_dir=cache_dir, score=score)


register_estimator("short-train", _short_train)
register_estimator("zero-cost", _zero_cost)
register_estimator("supernet", _supernet)


def estimator_settings(name: str) -> set[str] | None:
    """The keyword settings the estimator ``name``'s factory takes (``None``: all, it has ``**settings``)."""
    params = list(inspect.signature(ESTIMATORS.lookup(name)).parameters.values())[1:]  # after ``data``
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def make_estimator(name: str, data, *, epochs: int, imgsz: int, batch: int, device: str, seeds=(0,),
                   fraction: float = 1.0, single_cls: bool = False, proxy: str = "mae_entropy",
                   verbose: bool = False, trainer: str = "ultralytics", score: str = "map",
                   train_imgsz: int | None = None, space=None, cache_dir=None, anchor: str | None = None) -> Estimator:
    """An estimator by name, given the settings its factory takes. Training estimators train at ``train_imgsz``
    (default: each candidate's own size); ``space``, ``cache_dir`` (the run directory's folder for what an
    estimator keeps) and ``anchor`` (the search's reference point) are for the supernet estimator."""
    factory = ESTIMATORS.lookup(name)
    settings = dict(epochs=epochs, imgsz=imgsz, batch=batch, device=device, seeds=tuple(seeds), fraction=fraction,
                    single_cls=single_cls, proxy=proxy, verbose=verbose, trainer=trainer, score=score,
                    train_imgsz=train_imgsz, space=space, cache_dir=cache_dir, anchor=anchor)
    takes = estimator_settings(name)
    return factory(data, **{k: v for k, v in settings.items() if takes is None or k in takes})


__all__ = ["ESTIMATORS", "SCORES", "TRAINERS", "Estimator", "estimator_settings", "Pruned", "ShortTrainEstimator", "SuccessiveHalving",
           "TrainingEstimator", "compressed_schedule", "make_estimator", "register_estimator"]
