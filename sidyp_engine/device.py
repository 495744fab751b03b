"""The one device resolver: every stage gets the `torch.device` that `resolve_device` returns."""

from __future__ import annotations

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
