"""Checks that run before a search writes anything, and the signal handling while it runs."""

from __future__ import annotations

import contextlib

import torch

from .config import SearchConfig
from .data import check_dataset, load_data_yaml
from .errors import UserError
from .estimation import make_estimator
from .input_size import search_space
from .objectives import make_objectives
from .strategies import make_strategy


def preflight(cfg: SearchConfig) -> None:
    """Fail on bad settings before anything is written."""
    from .estimation import ESTIMATORS
    from .objectives.latency import get_target
    from .splits import choose

    choose(cfg, load_data_yaml(check_dataset(cfg.data, cfg.coco128)))  # a split the data lacks fails here
    from .config import search_workers

    search_workers(cfg)  # a bad ULTRANAS_WORKERS fails here
    space = search_space(cfg)  # a bad --input-scales fails here
    make_objectives(cfg.objectives, latency=_LatencyName())
    make_strategy(cfg.strategy, space, seed=cfg.seed)
    if cfg.estimator not in ESTIMATORS:
        raise UserError(f"unknown estimator '{cfg.estimator}': choose from {', '.join(ESTIMATORS)}")
    if cfg.estimator == "zero-cost":
        make_estimator(cfg.estimator, cfg.data, epochs=1, imgsz=cfg.proxy_imgsz, batch=1, device="cpu",
                       proxy=cfg.proxy)
    get_target(cfg.latency_target)
    if cfg.latency_lut:
        from .objectives._lut import LatencyLUT

        lut = LatencyLUT.load(cfg.latency_lut)  # unreadable, not a table, or profiled on another host: one line
        sizes = space.deploy_sizes(cfg.imgsz)  # the designs' deploy sizes
        if lut.target != cfg.latency_target or sizes != [lut.imgsz]:
            raise UserError(f"--latency-lut {cfg.latency_lut} predicts {lut.target} at {lut.imgsz} px, but this search "
                            f"times {cfg.latency_target} at {', '.join(map(str, sizes))} px: profile a table for "
                            "that target and size (LatencyLUT(target, imgsz).calibrate(...).save(path))")
    for name in [cfg.latency_le] * bool(cfg.latency_le) + cfg.references:
        space.point(name)  # a typo fails here, not after the search
    if cfg.pretrained:
        from .inherit import Inheritance

        inherit = Inheritance(cfg.pretrained, space)  # not a checkpoint, not a detection model, not a point: one line
        if others := inherit.without_own(cfg.references):
            print(f"ultranas: --pretrained has no checkpoint of {', '.join(others)}: fine-tuned from what "
                  f"{'it inherits' if len(others) == 1 else 'they inherit'} from {inherit.describe()}", flush=True)
    if cfg.storage:
        from .study import check_study_url

        check_study_url(cfg.storage, connect=True)
    if cfg.device not in ("cpu", "mps"):
        ids = [int(p) for p in str(cfg.device).replace("cuda:", "").split(",")]
        if max(ids) >= torch.cuda.device_count():
            raise UserError(f"device '{cfg.device}' is not available: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s); use --device cpu")


class _LatencyName:
    name, direction, cheap = "latency", "minimize", True


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While a run is under way, a scheduler's SIGTERM is handled like Ctrl-C: the trial's bookkeeping finishes and
    the run can be resumed (before and after, SIGTERM keeps its default meaning)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
