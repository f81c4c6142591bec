"""Small torch helpers the estimators share: device names and seeded blocks."""

from __future__ import annotations

import contextlib

import torch


def torch_device(device) -> torch.device:
    """``0`` / ``cuda`` / ``cuda:0`` / ``cpu`` (or a torch.device) -> torch.device with an index on CUDA."""
    text = str(device).strip().lower()
    if text.isdigit():
        return torch.device("cuda", int(text))
    dev = torch.device(text)
    return torch.device("cuda", 0) if dev.type == "cuda" and dev.index is None else dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu"):
    """Seed torch's RNG inside the block and restore the caller's RNG state afterwards."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
