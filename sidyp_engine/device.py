"""The one device resolver: every stage gets the `torch.device` that `resolve_device` returns."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from sidyp_engine.types import InvalidInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(pref: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for 'cuda' without one is an input error, not a silent CPU run.

    A `torch.device` is returned as it is, so code that already holds one can pass it through.
    """
    if isinstance(pref, torch.device):
        return pref
    if pref not in DEVICE_CHOICES:
        raise InvalidInputError(f"device must be auto, cpu or cuda, got {pref!r}")
    if pref == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if pref == "cuda":
        raise InvalidInputError("device 'cuda' was requested but CUDA is not available")
    return torch.device("cpu")


@contextmanager
def single_thread_on_cpu(device: torch.device):
    """Run the diffusion refiner's CPU work on one intra-op thread.

    Its ops are small (a batch of 64 through a 128-wide MLP), so a second thread buys nothing, while on a
    busy machine every multi-threaded op waits for a descheduled partner thread (docs/method.md).
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def seeded_rng(seed: int, device: torch.device):
    """torch's global RNG forked and seeded for the block: dropout and head initialisation draw from it.

    Whatever ran before (a stage trained, or loaded from a checkpoint) then leaves no trace in what the
    block computes, and the caller's random state is as it was afterwards.
    """
    devices = (
        []
        if device.type != "cuda"
        else [torch.cuda.current_device() if device.index is None else device.index]
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
