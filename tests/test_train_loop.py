"""The loop the fast, supernet and DARTS trainers share: its callbacks see every epoch and can stop training; it
steps through the images it is given."""

from __future__ import annotations

import pytest
import torch

from ultranas.estimation._device_data import DeviceDataset
from ultranas.estimation._fast_train import FastTrainer
from ultranas.estimation._loop import TrainLoop
from ultranas.space import load_space
from ultranas.supernet import Supernet, SupernetTrainer, load_trained


def _record(trainer, stop_after: int | None = None) -> list:
    """Callbacks that log (event, epoch) and set ``stop`` at the end of epoch ``stop_after``."""
    seen = []
    for event in ("on_train_start", "on_train_epoch_start", "on_train_epoch_end", "on_fit_epoch_end", "on_train_end"):
        trainer.add_callback(event, lambda t, e=event: seen.append((e, t.epoch)))
    trainer.add_callback("on_train_batch_end", lambda t: seen.append(("batch", t.ni)))
    if stop_after is not None:
        trainer.add_callback("on_fit_epoch_end", lambda t: setattr(t, "stop", t.epoch == stop_after))
    return seen


def _epochs(seen: list, event: str) -> list[int]:
    return [epoch for e, epoch in seen if e == event]


def test_fast_trainer_callbacks_see_every_epoch_and_can_stop(tiny_space, coco8):
    space = load_space(tiny_space)
    design = space.render(space.point("tiny"), 80)
    done = []
    trainer = FastTrainer(coco8, 32, 2, 4, "cpu", on_epoch=done.append)
    seen = _record(trainer)
    result = trainer.train([design])[0]
    assert done == [1, 2] and result["epochs"] == 2  # the on_epoch progress callback still runs
    assert seen[0] == ("on_train_start", 0) and seen[-1] == ("on_train_end", 1)
    assert _epochs(seen, "on_train_epoch_end") == _epochs(seen, "on_fit_epoch_end") == [0, 1]
    assert [ni for e, ni in seen if e == "batch"] == list(range(2 * trainer.nb))
    assert trainer.seen == 2 * len(trainer.data)

    stopped = FastTrainer(coco8, 32, 3, 4, "cpu")
    seen = _record(stopped, stop_after=0)
    result = stopped.train([design])[0]
    assert _epochs(seen, "on_train_epoch_end") == [0] and result["epochs"] == 1
    assert len(stopped.runs[0].epoch_losses) == 1 and result["train_loss"] == stopped.runs[0].epoch_losses[0]
    with pytest.raises(ValueError, match="unknown event"):
        stopped.add_callback("on_epoch", print)


def test_supernet_trainer_callbacks_see_every_epoch_and_can_stop(tiny_space, coco8, tmp_path):
    """Stopped after its first epoch, the training is checkpointed there and not finished; a new trainer resumes it."""
    space = load_space(tiny_space)
    torch.manual_seed(0)
    ds = DeviceDataset(coco8, 32, "cpu", "train")
    net = Supernet(space, ds.nc, space.point("tiny"))
    ckpt = tmp_path / "supernet.pt"
    trainer = SupernetTrainer(net, ds, epochs=2, batch=4, random_subnets=0, checkpoint=ckpt, progress=False)
    seen = _record(trainer, stop_after=0)
    record = trainer.train()
    assert _epochs(seen, "on_train_epoch_end") == [0] and len(record["losses"]) == 1
    assert record["steps"] == trainer.nb
    with pytest.raises(ValueError, match="stopped after epoch 1"):
        load_trained(net, ckpt)
    resumed = SupernetTrainer(net, ds, epochs=2, batch=4, random_subnets=0, checkpoint=ckpt, progress=False)
    seen = _record(resumed)
    record = resumed.train()
    assert record["resumed_at"] == 1 and _epochs(seen, "on_train_epoch_start") == [1]
    assert seen[0] == ("on_train_start", 0) and len(record["losses"]) == 2
    assert load_trained(net, ckpt)["losses"] == record["losses"]


class _StepRecorder(TrainLoop):
    """Records each step's image indices and batch size; trains nothing."""

    def train_step(self, batch: dict) -> None:
        self.steps.append((sorted(self.batch_images.tolist()), len(batch["img"])))


def test_the_loop_steps_through_every_image_or_only_its_epoch_images(coco8):
    ds = DeviceDataset(coco8, 32, "cpu", "train")
    loops = [_StepRecorder(ds, 2, 2, 0, 0.02, 0.01, 0.937, 5e-4, 1.0) for _ in range(2)]
    loops[1].epoch_images = torch.tensor([3, 1])
    for loop in loops:
        loop.steps = []
        loop.fit([])
    whole, part = loops
    assert whole.nb == len(ds) // 2 and whole.seen == 2 * len(ds)
    for epoch in range(2):
        assert sorted(i for idx, _ in whole.steps[epoch * whole.nb:(epoch + 1) * whole.nb] for i in idx) == \
            list(range(len(ds)))
    assert part.nb == 1 and part.seen == 4 and part.steps == [([1, 3], 2), ([1, 3], 2)]
