"""``ultranas calibrate``: does a cheap estimator rank designs like a (seed-averaged) reference training does?

Reports Kendall tau and Spearman rho with bootstrap 90 % intervals, over all designs and within a cost band
(GFLOPs within +-20 % of a reference point's), beside params and GFLOPs as the estimators to beat; refuses to
report a tau when the reference's spread across designs is within its own seed noise. This module runs it; the
designs (``_calib_designs``), statistics (``_rank_stats``), reference cache (``_reference_cache``), verdict
(``_calib_verdict``) and picture (``_calib_plot``) live beside it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import checks, ultra
from ..data import class_names, safe_data_yaml
from ..errors import UserError
from ..fsutil import atomic_write_json
from ..objectives._base import Candidate
from ..runtime import quiet_ultralytics
from ..space import load_space
from ._base import SCORES, signed_score
from ._calib_designs import sample_designs
from ._reference_cache import ReferenceCache

if TYPE_CHECKING:  # loaded on first use (see __getattr__)
    from ._calib_verdict import apply_calibration, summarize
    from ._rank_stats import rank_correlation, seed_noise

MAX_DESIGNS = 10_000  # --n: each design is trained once per reference seed


@dataclass
class CalibrateConfig:
    """``ultranas calibrate``'s settings (the CLI's flags and defaults are read from here)."""

    data: str = "coco8.yaml"
    space: str = "yolo"
    n: int = 12  # designs: the space's points first, then random samples
    estimators: str = "short-train"  # comma list: short-train[:<score>], zero-cost:<proxy>, or another registered one
    proxy_epochs: int = 2  # the short-train estimator's epochs
    proxy_imgsz: int | None = None  # the short-train estimator's image size (default: imgsz)
    trainer: str = "ultralytics"  # trainer of the reference and the short-train estimator
    reference_cache: str | None = None  # JSON-lines file of reference results: reused when present, appended
    reference_epochs: int = 10
    seeds: str | list[int] = "0,1"  # reference seeds (>= 2 to measure seed noise)
    imgsz: int = 64
    batch: int = 16
    band: float = 0.2  # cost band: GFLOPs within +-band of band_point's
    band_point: str = "yolo11n"
    band_samples: int = 0  # random designs drawn inside the cost band
    device: str = "cpu"
    seed: int = 0
    project: str = "runs/calibrate"
    name: str = "exp"
    verbose: bool = False

    def validate(self) -> CalibrateConfig:
        """Every setting range-checked (counts, sizes, shares, names), before anything is read or written."""
        from . import TRAINERS

        for key in ("data", "space", "estimators", "band_point", "project", "reference_cache"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, checks.text(f"--{_flag(key)}", str(value) if isinstance(value, Path) else value))
        checks.integer("--n", self.n, 3, MAX_DESIGNS)
        checks.integer("--band-samples", self.band_samples, 0, self.n, " (designs drawn inside the band; at most --n)")
        for key in ("proxy_epochs", "reference_epochs"):
            checks.integer(f"--{_flag(key)}", getattr(self, key), 1, checks.MAX_EPOCHS)
        checks.stride_size("--imgsz", self.imgsz)
        if self.proxy_imgsz is not None:
            checks.stride_size("--proxy-imgsz", self.proxy_imgsz)
        checks.integer("--batch", self.batch, 1, checks.MAX_BATCH)
        checks.fraction("--band", self.band)
        checks.choice("--trainer", self.trainer, TRAINERS)
        self.seeds = checks.seeds("--seeds", checks.int_list("--seeds", self.seeds), distinct=True)
        checks.seed("--seed", self.seed)
        checks.device("device", self.device)
        checks.boolean("--verbose", self.verbose)
        if self.reference_cache is not None and Path(self.reference_cache).is_dir():
            raise UserError(f"--reference-cache {self.reference_cache} is a folder, not a JSON-lines file")
        checks.folder_inside("--name", self.project, self.name)
        return self


def _flag(key: str) -> str:
    return key.replace("_", "-")


def _settings(kwargs: dict) -> CalibrateConfig:
    """Checked settings from keyword arguments; ``proxy`` is the old name of ``estimators`` (it clashed with
    search's zero-cost ``--proxy``)."""
    if kwargs.get("proxy") is not None and kwargs.get("estimators") is None:
        kwargs = {**kwargs, "estimators": kwargs["proxy"]}
    kwargs = {k: v for k, v in kwargs.items() if k != "proxy" and not (k == "estimators" and v is None)}
    unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(CalibrateConfig)})
    if unknown:
        raise UserError(f"unknown calibrate setting '{unknown[0]}'")
    return CalibrateConfig(**kwargs).validate()


def _reference_cache(a: CalibrateConfig, data) -> ReferenceCache:
    """The reference cache, read before the run folder is made: an unreadable file is one line, not a crash later."""
    try:
        return ReferenceCache(a.reference_cache, data, a)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--reference-cache {a.reference_cache} cannot be read: {str(e).splitlines()[0][:120]}") from None


def _train_estimator(data, a, epochs: int, imgsz: int | None = None):
    from . import make_estimator

    return make_estimator("short-train", data, epochs=epochs, imgsz=a.imgsz, batch=a.batch, device=a.device,
                          seeds=(a.seed,), verbose=a.verbose, trainer=a.trainer, train_imgsz=imgsz)


def _proxy_estimators(specs: list[str], data, a, flag: str = "--estimators") -> dict[str, tuple]:
    """``{spec: (estimator, result key)}``; every ``short-train[:score]`` spec shares one training run."""
    from . import ESTIMATORS, make_estimator

    out, short = {}, None
    for spec in specs:
        base, _, key = spec.partition(":")
        if base == "short-train":
            key = key or "map"
            if key not in SCORES:
                raise UserError(f"unknown {flag} '{spec}': short-train scores are {', '.join(SCORES)}")
            if key != "map" and a.trainer != "fast":
                raise UserError(f"{flag} {spec} needs --trainer fast (it records training and validation losses)")
            short = short or _train_estimator(data, a, a.proxy_epochs, a.proxy_imgsz)
            out[spec] = (short, key)
        elif base in ESTIMATORS and (key or base != "zero-cost"):  # zero-cost:<proxy>, or another registered one
            out[spec] = (make_estimator(base, data, epochs=a.proxy_epochs, imgsz=a.imgsz, batch=a.batch,
                                        device=a.device, seeds=(a.seed,), verbose=a.verbose, space=a.space,
                                        anchor=a.band_point, train_imgsz=a.proxy_imgsz,
                                        **({"proxy": key} if base == "zero-cost" else {"score": key or "map"})),
                        "score")
        else:
            raise UserError(f"unknown {flag} '{spec}': use short-train[:map|loss_drop|val_loss|train_loss], "
                            f"zero-cost:<proxy> or one of {', '.join(ESTIMATORS)}")
    return out


@quiet_ultralytics
def calibrate(**kwargs) -> dict:
    """Run the calibration (keyword arguments: :class:`CalibrateConfig`'s fields; ``proxy`` is an alias of
    ``estimators``); returns and saves ``calibration.json``."""
    a = _settings(kwargs)
    flag = "--proxy" if kwargs.get("proxy") is not None and kwargs.get("estimators") is None else "--estimators"
    seeds = a.seeds
    data = safe_data_yaml(a.data)  # Ultralytics reads only the checked copy
    nc, space = len(class_names(data)), load_space(a.space)
    if len(space.decisions.get("input_scale", ())) > 1:  # the reference trains every design at one size
        space = space.with_input_scales((1.0,))
    if a.band_samples and space.points and a.band_point not in space.points:
        raise UserError(f"--band-point {a.band_point!r} is not a point of space {space.name}: choose "
                        f"{', '.join(space.points)}")
    names = [p.strip() for p in str(a.estimators).split(",") if p.strip()]
    estimators = _proxy_estimators(names, data, a, flag)  # bad specs fail before anything is written
    designs = sample_designs(space, a.n, a.seed, a.band_samples, a.band, a.band_point, a.imgsz)  # so does a bad band
    cache = _reference_cache(a, data)
    run_dir = ultra.increment_path(Path(a.project) / a.name, mkdir=True)
    for est, _ in estimators.values():
        if getattr(est, "cache_dir", False) is None:  # the supernet estimator keeps its training in the run
            est.cache_dir = run_dir
    reference = _train_estimator(data, a, a.reference_epochs)
    rows = []
    from tqdm import tqdm

    for label, g in tqdm(designs, desc="calibrate", unit="design"):
        cand = Candidate(g, space.render(g, nc), space.design_hash(g, nc), space.imgsz(g, a.imgsz),
                         run_dir / "designs" / label)
        cand.workdir.mkdir(parents=True, exist_ok=True)
        (cand.workdir / "model.yaml").write_text(space.to_yaml(g, nc))
        model = ultra.build_model(cand.model_dict)
        row = {"design": label, "hash": cand.design_hash, "params": ultra.count_params(model),
               "gflops": ultra.gflops(model, cand.imgsz), "reference_runs": [], "proxy": {}, "proxy_s": {}}
        costs = []
        for s in seeds:
            if (hit := cache.get(cand, s)) is None:
                reference.seeds, t0 = (s,), time.time()
                hit = {"map": reference.estimate(cand)["score"], "train_s": time.time() - t0}
                cache.put(cand, s, hit)
            row["reference_runs"].append(hit["map"])
            costs.append(hit["train_s"])
        row["reference_s"] = float(np.mean(costs))
        done = {}  # estimator -> (result, seconds): scores of one run are read once each
        for p, (est, key) in estimators.items():
            if id(est) not in done:
                t0 = time.time()
                done[id(est)] = (est.estimate(cand), time.time() - t0)
            result, row["proxy_s"][p] = done[id(est)]
            row["proxy"][p] = signed_score(result, key)  # a lower loss ranks higher
        rows.append(row)
    from ._calib_plot import plot, print_report
    from ._calib_verdict import summarize

    report = summarize(rows, names, a, seeds)
    report["run"] = str(run_dir)
    atomic_write_json(run_dir / "calibration.json", report)
    plot(rows, names, run_dir / "calibration.png")
    print_report(report)
    return report


_LAZY = {"apply_calibration": "._calib_verdict", "summarize": "._calib_verdict", "rank_correlation": "._rank_stats",
         "seed_noise": "._rank_stats"}  # scipy's statistics load when first used: a refused flag answers at once


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CalibrateConfig", "apply_calibration", "calibrate", "rank_correlation", "sample_designs", "seed_noise",
           "summarize"]
