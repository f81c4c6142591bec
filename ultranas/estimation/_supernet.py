"""``--estimator supernet``: a design's score read from a one-shot supernet trained once per search.

The supernet (:mod:`ultranas.supernet`) is trained on the first estimate, at the proxy size, for the estimator's
``epochs``, and cached in the run directory (``supernet-<size>px/supernet.pt``, resumed after a kill; processes of
one run wait for the one that trains it). A design is then scored in a second or two: its subnet is extracted with
the inherited weights, batch norm statistics are re-estimated on ``calib_batches`` training batches, and Ultralytics'
validator and the detection loss are run on the val split (``map`` or ``val_loss`` as the score).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from .. import ultra
from ..fsutil import file_lock
from ..objectives._base import Candidate
from ._base import TrainingEstimator, signed_score
from ._device_data import DeviceDataset
from ._fast_train import FastTrainer
from ._torch import torch_device

SUPERNET_SCORES = ("map", "val_loss")


class SupernetEstimator(TrainingEstimator):
    """Scores from one shared supernet. Knobs as :class:`TrainingEstimator` (``epochs``: the supernet's training;
    ``imgsz``: training and scoring size, default the candidate's proxy size; ``seeds``: the first seeds the
    training).

    Args:
        space: the search space (designs outside it cannot be scored).
        anchor: name of the space point whose widest form is the sandwich rule's teacher (default: the space's
            first point).
        cache_dir: where the trained supernet is kept (set by the search and ``calibrate`` to the run directory).
        score: ``map`` or ``val_loss``.
        calib_batches: training batches for the batch-norm re-estimate.
        trainer_kwargs: other :class:`~ultranas.supernet._train.SupernetTrainer` settings.
    """

    name = "supernet"

    def __init__(self, data, *args, space=None, anchor: str | None = None, cache_dir: str | Path | None = None,
                 score: str = "map", calib_batches: int = 4, **kwargs):
        if score not in SUPERNET_SCORES:
            raise ValueError(f"supernet score '{score}': choose from {', '.join(SUPERNET_SCORES)}")
        knobs, self.trainer_kwargs = self.split_knobs(kwargs)
        super().__init__(data, *args, **knobs)
        from ..space import load_space

        self.space = load_space(space or "yolo") if not hasattr(space, "decisions") else space
        self.anchor, self.cache_dir, self.score, self.calib_batches = anchor, cache_dir, score, calib_batches
        self.device = torch_device(self.device)
        self.supernet, self._data, self._record, self.trained_s = None, {}, None, 0.0
        self._calib, self._judges = {}, {}  # per size: the batch-norm batches; the validator's FastTrainer

    def dataset(self, imgsz: int, split: str) -> DeviceDataset:
        if (imgsz, split) not in self._data:
            self._data[imgsz, split] = DeviceDataset(self.data, imgsz, self.device, split,
                                                     self.fraction if split == "train" else 1.0, self.single_cls)
        return self._data[imgsz, split]

    def ensure_trained(self, imgsz: int) -> dict:
        """Train the supernet (or resume, or load a finished one); returns its training record."""
        if self._record is not None:
            return self._record
        from ..supernet import Supernet
        from ..supernet._train import SupernetTrainer, load_trained

        train = self.dataset(imgsz, "train")
        points = self.space.points
        anchor = points.get(self.anchor) or next(iter(points.values()), None) or self.space.sample(
            random.Random(self.seeds[0]))
        net = Supernet(self.space, train.nc, anchor).to(self.device)
        folder = Path(self.cache_dir or "runs/supernet") / f"supernet-{imgsz}px"
        trainer = SupernetTrainer(net, train, self.epochs, self.batch, self.seeds[0], checkpoint=folder / "supernet.pt",
                                  **self.trainer_kwargs)
        with file_lock(folder / ".train.lock"):  # one process of the run trains it; the others wait
            t0 = time.perf_counter()
            record = trainer.train()  # loads and returns at once when an earlier process finished it
            self.trained_s = time.perf_counter() - t0
            record = {**load_trained(net, folder / "supernet.pt"), "path": str(folder / "supernet.pt")}
        self.supernet, self._record = net, record
        return record

    def model(self, candidate: Candidate, imgsz: int | None = None) -> torch.nn.Module:
        """The candidate's subnet with inherited weights and re-estimated batch-norm statistics."""
        from ..supernet import recalibrate_bn

        imgsz = imgsz or self.imgsz or candidate.proxy_imgsz
        self.ensure_trained(imgsz)
        if imgsz not in self._calib:  # the same batches for every design
            train = self.dataset(imgsz, "train")
            g = torch.Generator(device=self.device).manual_seed(self.seeds[0])
            order = torch.randperm(len(train), generator=g, device=self.device)
            self._calib[imgsz] = [train.batch(order[i * self.batch:(i + 1) * self.batch])["img"]
                                  for i in range(min(self.calib_batches, len(train) // self.batch or 1))]
        return recalibrate_bn(self.supernet.extract(candidate.genotype), self._calib[imgsz])

    def estimate(self, candidate: Candidate, fidelity: float = 1.0) -> dict:
        imgsz = self.imgsz or candidate.proxy_imgsz
        t0, before = time.perf_counter(), self.trained_s
        model = self.model(candidate, imgsz)
        bn_s = time.perf_counter() - t0 - (self.trained_s - before)
        train = self.dataset(imgsz, "train")
        if imgsz not in self._judges:  # validation and the val loss, as the fast trainer computes them
            self._judges[imgsz] = FastTrainer(train, imgsz, 1, self.batch, self.device, verbose=self.verbose,
                                              val_data=self.dataset(imgsz, "val"))
        judge = self._judges[imgsz]
        model = ultra.prepare_for_training(model, train.nc, train.names, judge.hyp)
        t1 = time.perf_counter()
        res = {**judge.validate(model), "val_loss": judge.val_loss(model)}
        return {"score": signed_score(res, self.score), **res, "imgsz": imgsz, "epochs": self.epochs,
                "seeds": 1, "train_s": round(self.trained_s - before, 2), "bn_s": round(bn_s, 3),
                "val_s": round(time.perf_counter() - t1, 3), "data_s": 0.0,
                "supernet_train_s": self._record["train_s"]}
