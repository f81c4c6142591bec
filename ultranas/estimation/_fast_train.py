"""Fast proxy training: Ultralytics' loss, EMA and validator, without Ultralytics' data pipeline.

The training split is decoded once onto the device (:class:`DeviceDataset`) and augmented there in batches
(:class:`DeviceAugment`); K candidates train at once on the SAME augmented batches (on CUDA each on its own stream,
bf16 autocast, channels_last). The schedule is :func:`compressed_schedule`'s: SGD lr0 0.02, nesterov, momentum
0.937, Ultralytics' three parameter groups, linear warmup over ~10 % of the run (bias lr from 0.1, momentum from
0.8), linear decay to ``lrf``, mosaic closed for the last ~25 %, gradients clipped at 10, no accumulation.
The loop (schedule, augmentation, core lock, callbacks) is :class:`TrainLoop`'s, shared with the supernet trainer.
Each EMA model is then scored by Ultralytics' ``DetectionValidator`` on the val split. See ``docs/fast_train.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from .. import cores, ultra
from ..fsutil import atomic_write_text
from ..objectives._base import Candidate
from ._base import SCORES, TrainingEstimator, signed_score
from ._device_data import DeviceDataset
from ._loop import TrainLoop, param_groups, sgd_step
from ._torch import seeded, torch_device

KEEP_BYTES = 1 << 30  # decoded splits of other image sizes kept while they fit (device memory)
METRICS = ("map", "map50", "precision", "recall", "train_loss", "val_loss", "loss_drop")


def _to_float(x):
    """Predictions (nested dicts/lists of tensors) in float32, so the loss never runs in bf16."""
    if isinstance(x, torch.Tensor):
        return x.float()
    if isinstance(x, dict):
        return {k: _to_float(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float(v) for v in x)
    return x


class _Run:
    """One candidate in training: model, optimizer, EMA, its CUDA stream and loss bookkeeping."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, stream):
        self.model, self.optimizer, self.stream, self.ema = model, optimizer, stream, ultra.ModelEMA(model)
        self.forward = model
        self.loss_sum, self.failed, self.epoch_losses = None, None, []


class FastTrainer(TrainLoop):
    """Train K rendered designs at once on one device-resident, device-augmented copy of the data.

    Args:
        data: data YAML path, or a :class:`DeviceDataset` of its train split at ``imgsz`` (reused across calls).
        imgsz: square training and validation size.
        epochs: the whole schedule (warmup, decay and mosaic close scale with it).
        batch: images per step, the same for every candidate.
        device: ``cpu``, ``cuda``, ``cuda:0`` or ``0``.
        seed: seeds each model's initialisation (every candidate gets the same) and the augmentation stream.
        lr0, lrf, momentum, weight_decay: SGD settings (Ultralytics' meaning).
        mosaic: mosaic probability while mosaic is open.
        fraction, single_cls: as Ultralytics' (used only when ``data`` is a path).
        amp: bf16 autocast for forward passes (the loss stays fp32); ``None``: on where bf16 is fast (CUDA with
            bf16, CPUs with AMX), off elsewhere.
        compile: ``torch.compile`` each model's forward (off by default).
        val_batch: validation batch (default ``2 * batch``, as Ultralytics' trainer).
        verbose: show Ultralytics' validation output.
        val_data: the val split as a :class:`DeviceDataset` at ``imgsz`` for the validation loss (reused across
            trainers; default: decoded on first use).
        on_epoch: called with the number of epochs done after each epoch (progress; an ``on_train_epoch_end``
            callback). More callbacks: :meth:`add_callback` (``runs``: the designs in training).
    """

    def __init__(self, data, imgsz: int = 128, epochs: int = 10, batch: int = 16, device: str = "cpu", seed: int = 0,
                 lr0: float = 0.02, lrf: float = 0.01, momentum: float = 0.937, weight_decay: float = 5e-4,
                 mosaic: float = 1.0, fraction: float = 1.0, single_cls: bool = False, amp: bool | None = None,
                 compile: bool = False, val_batch: int | None = None, verbose: bool = False,
                 val_data: DeviceDataset | None = None, on_epoch: Callable[[int], None] | None = None):
        self.device = torch_device(device)
        if isinstance(data, DeviceDataset):
            if data.imgsz != imgsz or data.device != self.device:
                raise ValueError(f"DeviceDataset is {data.imgsz} px on {data.device}, trainer wants {imgsz} px on "
                                 f"{self.device}")
        else:
            data = DeviceDataset(data, imgsz, self.device, "train", fraction, single_cls)
        super().__init__(data, epochs, batch, seed, lr0, lrf, momentum, weight_decay, mosaic)
        self.imgsz, self.amp, self.compile = int(imgsz), bf16_supported(self.device) if amp is None else amp, compile
        self.val_batch, self.verbose, self._val_data = val_batch or 2 * self.batch, verbose, val_data
        self.runs: list[_Run] = []
        if on_epoch is not None:
            self.add_callback("on_train_epoch_end", lambda trainer: on_epoch(trainer.epoch + 1))

    # -- setup --------------------------------------------------------------------------------------------------
    def _build(self, model_dict: dict, init: Callable[[nn.Module], None] | None = None) -> _Run:
        with seeded(self.seed, self.device):
            model = ultra.build_model(model_dict, nc=self.data.nc)
        if init is not None:
            init(model)  # e.g. weights inherited from a pretrained checkpoint
        model = ultra.prepare_for_training(model, self.data.nc, self.data.names, self.hyp).to(self.device).train()
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(param_groups(model, self.lr0, self.momentum, self.weight_decay))
        run = _Run(model, optimizer, torch.cuda.Stream(self.device) if self.device.type == "cuda" else None)
        if self.compile:
            run.forward = torch.compile(model)
        return run

    # -- training -----------------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> None:
        """One optimizer step for every live run on the same batch.

        On CUDA all forwards are queued first, each on its run's stream, so the models overlap on the GPU; the
        main stream waits for every run before the next batch is made. On CPU each run does its whole step in
        turn (one autograd graph alive at a time).
        """
        runs = [r for r in self.runs if r.failed is None]
        main = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        if main is None:
            for run in runs:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
                    preds = run.forward(batch["img"])
                self._update(run, preds, batch)
            return
        img = batch["img"].contiguous(memory_format=torch.channels_last)
        preds = []
        for run in runs:
            with torch.cuda.stream(run.stream):
                run.stream.wait_stream(main)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                    preds.append(run.forward(img))
        for run, pred in zip(runs, preds):
            with torch.cuda.stream(run.stream):
                self._update(run, pred, batch)
        for run in runs:
            main.wait_stream(run.stream)

    def _update(self, run: _Run, preds, batch: dict) -> None:
        """Ultralytics' loss (in fp32), backward, clip at 10, SGD step, EMA update."""
        loss, total = ultra.detection_loss(run.model, batch, _to_float(preds))
        loss.backward()
        sgd_step(run.optimizer, run.model.parameters())
        run.ema.update(run.model)
        run.loss_sum = total if run.loss_sum is None else run.loss_sum + total

    def end_epoch(self) -> None:
        for run in self.runs:
            if run.failed is not None:
                continue
            ultra.epoch_end(run.model)  # E2E heads: shift weight from one-to-many to one-to-one, per epoch
            if run.loss_sum is not None:
                run.epoch_losses.append(float(run.loss_sum) / self.nb)
                if not math.isfinite(run.epoch_losses[-1]):
                    run.failed = f"non-finite training loss in epoch {self.epoch + 1} (diverged)"
            run.loss_sum = None

    def train(self, model_dicts: list[dict], inits: list | None = None) -> list[dict]:
        """Train every design in ``model_dicts`` on the same batches; one result dict per design, in order.
        ``inits``: per design, ``None`` or a function that sets the built model's starting weights.

        Each dict: ``map``, ``map50``, ``precision``, ``recall`` (Ultralytics' validator on the EMA model),
        ``train_loss`` (mean training loss of the last epoch), ``val_loss`` (the EMA model's loss on the val split),
        ``loss_drop`` (``1 - val_loss / val_loss at initialisation``: a share, comparable across head types whose
        losses are not),
        ``train_s`` (seconds in the shared training steps), ``img_per_s`` (this model's images / ``train_s``: K models
        together train K times that), ``val_s``, ``epochs``, ``imgsz``, ``batch`` and ``gpu_mem_gb`` on CUDA
        (peak allocated during the whole K-model training loop, validation excluded). A design that diverges
        gets ``failed`` with the reason and NaN metrics; the others go on.
        """
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.runs = runs = [self._build(md, init)
                            for md, init in zip(model_dicts, inits or [None] * len(model_dicts), strict=True)]
        t0 = time.perf_counter()
        at_init = [self.val_loss(run.ema.ema) for run in runs]  # the same for every design of one head type
        init_s = (time.perf_counter() - t0) / len(runs)
        self.fit([run.optimizer for run in runs])
        train_s, seen, epochs = self.train_s, self.seen, self.epoch + 1 if self.stop else self.epochs
        peak_gb = torch.cuda.max_memory_allocated(self.device) / 2**30 if cuda else None
        self.trained = [run.ema.ema for run in runs]  # the EMA models, as validated (kept for the caller)
        results = []
        for run, init in zip(runs, at_init):
            t0 = time.perf_counter()
            res = dict.fromkeys(METRICS, float("nan"))
            if run.failed is None:
                try:
                    res.update(self.validate(run.ema.ema))
                    res.update(train_loss=run.epoch_losses[-1], val_loss=self.val_loss(run.ema.ema))
                    res["loss_drop"] = 1 - res["val_loss"] / init
                except FloatingPointError as e:
                    run.failed = str(e)
            res.update(train_s=round(train_s, 3), img_per_s=round(seen / train_s, 2), epochs=epochs,
                       imgsz=self.imgsz, batch=self.batch, val_s=round(time.perf_counter() - t0 + init_s, 3))
            if cuda:
                res["gpu_mem_gb"] = round(peak_gb, 3)
            if run.failed:
                res["failed"] = run.failed
            results.append(res)
        return results

    def validate(self, model: nn.Module) -> dict:
        """mAP50-95, mAP50, P, R of ``model`` from Ultralytics' ``DetectionValidator`` on the val split."""
        model.args = self.hyp
        device = "cpu" if self.device.type == "cpu" else str(self.device.index or 0)
        with cores.training():
            return ultra.validate(model, self.verbose, data=str(self.data.data_yaml), imgsz=self.imgsz,
                                  batch=self.val_batch, conf=0.001, device=device, plots=False, workers=0,
                                  split="val", single_cls=self.data.single_cls, save_json=False)

    @torch.no_grad()
    def val_loss(self, model: nn.Module) -> float:
        """Ultralytics' detection loss of ``model`` (eval mode, as its validator computes it) over the val split.

        Comparable across designs with the same head and loss (a DFL head's loss has a term an E2E head's lacks).
        """
        if self._val_data is None:
            self._val_data = DeviceDataset(self.data.data_yaml, self.imgsz, self.device, "val",
                                           single_cls=self.data.single_cls)
        val, total, n = self._val_data, 0.0, 0
        model.eval()
        with cores.training():
            for start in range(0, len(val), self.val_batch):
                idx = torch.arange(start, min(start + self.val_batch, len(val)), device=self.device)
                batch = val.batch(idx)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    preds = model(batch["img"])
                _, items = ultra.detection_loss(model, batch, _to_float(preds))
                total, n = total + float(items) * len(idx), n + len(idx)
        loss = total / n
        if not math.isfinite(loss):
            raise FloatingPointError("non-finite validation loss")
        return loss


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast by default: on CUDA GPUs with bf16, and on CPUs with AMX (measured 1.8x faster than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


class FastTrainEstimator(TrainingEstimator):
    """mAP50-95 after a short, complete schedule with :class:`FastTrainer`, averaged over ``seeds``.

    Knobs as :class:`TrainingEstimator`; ``imgsz=None`` means the candidate's own size, ``fidelity`` scales the
    epochs. ``score``: ``map`` (default), ``loss_drop``, or minus ``val_loss`` / ``train_loss``. The decoded training
    split of the latest image size is kept and reused across candidates. Other keyword arguments go to
    :class:`FastTrainer` (``lr0``, ``mosaic``, ``compile``, ...).
    """

    name = "fast-train"

    def __init__(self, data, *args, score: str = "map", **kwargs):
        if score not in SCORES:
            raise ValueError(f"unknown score '{score}': choose from {', '.join(SCORES)}")
        knobs, self.trainer_kwargs = self.split_knobs(kwargs)
        super().__init__(data, *args, **knobs)
        self.score, self.device = score, torch_device(self.device)
        self._datasets: dict[tuple[int, str], DeviceDataset] = {}
        self.data_s = 0.0  # seconds spent decoding splits, since the last estimate

    def dataset(self, imgsz: int, split: str = "train") -> DeviceDataset:
        """A split decoded at ``imgsz`` on the device, once per size (designs at several input scales alternate
        sizes: other sizes are kept while all of them fit in ``KEEP_BYTES``, the oldest dropped first)."""
        if (imgsz, split) not in self._datasets:
            t0 = time.perf_counter()
            while sum(d.images.nbytes for d in self._datasets.values()) > KEEP_BYTES:
                oldest = next((k[0] for k in self._datasets if k[0] != imgsz), None)  # a size's splits go together
                if oldest is None:
                    break
                self._datasets = {k: v for k, v in self._datasets.items() if k[0] != oldest}
            self._datasets[imgsz, split] = DeviceDataset(self.data, imgsz, self.device, split,
                                                         self.fraction if split == "train" else 1.0,
                                                         self.single_cls)
            self.data_s += time.perf_counter() - t0
        return self._datasets[imgsz, split]

    def estimate(self, candidate: Candidate, fidelity: float = 1.0) -> dict:
        return self.estimate_many([candidate], fidelity)[0]

    def estimate_many(self, candidates: list[Candidate], fidelity: float = 1.0) -> list[dict]:
        """Train all ``candidates`` at once (they must share an image size); one result per candidate.

        Raises ``FloatingPointError`` if any candidate diverges (call :meth:`estimate` one by one to isolate it).
        """
        epochs = self.epochs_at(fidelity)
        sizes = {self.imgsz or c.proxy_imgsz for c in candidates}
        if len(sizes) != 1:
            raise ValueError(f"candidates trained together need one image size, got {sorted(sizes)}")
        imgsz = sizes.pop()
        per_seed, self.data_s, inherited = [], 0.0, [{} for _ in candidates]
        names = list(self.dataset(imgsz).names.values())
        inits = [self.inherit.initializer(c.genotype, names, facts) for c, facts in zip(candidates, inherited)] \
            if self.inherit else None
        for seed in self.seeds:
            trainer = FastTrainer(self.dataset(imgsz), imgsz, epochs, self.batch, self.device, seed,
                                  verbose=self.verbose, val_data=self.dataset(imgsz, "val"),
                                  on_epoch=_progress(candidates, epochs * len(self.seeds), epochs * len(per_seed)),
                                  **self.trainer_kwargs)
            results = trainer.train([c.model_dict for c in candidates], inits)
            for c, r in zip(candidates, results, strict=True):
                if "failed" in r:
                    raise FloatingPointError(f"design {c.design_hash}: {r['failed']}")
            per_seed.append(results)
        out = []
        for k, cand in enumerate(candidates):
            mean = {m: sum(runs[k][m] for runs in per_seed) / len(per_seed) for m in METRICS}
            spent = {key: round(sum(runs[k][key] for runs in per_seed), 2) for key in ("train_s", "val_s")}
            out.append({"score": signed_score(mean, self.score), **mean, "epochs": epochs, "seeds": len(self.seeds),
                        "imgsz": imgsz, **spent, "data_s": round(self.data_s / len(candidates), 2), **inherited[k]})
            if self.keep_weights:  # the last seed's EMA model, as validated
                cand.workdir.mkdir(parents=True, exist_ok=True)
                out[-1]["weights"] = str(ultra.save_trained(trainer.trained[k], cand.workdir / "proxy.pt"))
        return out



def _progress(candidates: list[Candidate], total: int, before: int) -> Callable[[int], None] | None:
    """For one candidate trained in a folder of its own (a search trial): writes ``progress`` there ("epochs done
    over all seeds/epochs") for the search's status line; a write that fails only loses the status."""
    if len(candidates) != 1 or not candidates[0].workdir.is_dir():
        return None
    path = candidates[0].workdir / "progress"

    def write(epoch: int) -> None:
        try:
            atomic_write_text(path, f"{before + epoch}/{total}\n")
        except OSError:
            pass

    write(0)  # a new schedule (a halving rung, another seed): not the last one's count
    return write
