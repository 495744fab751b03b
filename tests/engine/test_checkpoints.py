"""Checkpoints.run wraps a stage: stored results are reused only for the same call key."""

from __future__ import annotations

import torch

from sidyp_engine.checkpoints import Checkpoints, call_key


def _codec():
    return (lambda t: ({"x": t}, {"n": int(t.numel())}), lambda tensors, data: tensors["x"])


def test_a_stage_runs_once_per_call_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(3.0)

    key = call_key({"a": 1})
    first, reused = Checkpoints(tmp_path, key).run("stage", compute, *_codec())
    again, reused_again = Checkpoints(tmp_path, key).run("stage", compute, *_codec())
    assert (reused, reused_again) == (False, True) and len(calls) == 1
    assert torch.equal(first, again)
    # another call (another key) never sees this one's result
    _, reused_other = Checkpoints(tmp_path, call_key({"a": 2})).run("stage", compute, *_codec())
    assert reused_other is False and len(calls) == 2


def test_an_unusable_stored_result_is_computed_again(tmp_path):
    key = call_key({"a": 1})
    Checkpoints(tmp_path, key).run("stage", lambda: torch.ones(2), *_codec())
    encode, _ = _codec()
    result, reused = Checkpoints(tmp_path, key).run(
        "stage", lambda: torch.zeros(2), encode, lambda t, d: None
    )
    assert reused is False and torch.equal(result, torch.zeros(2))


def test_without_a_work_dir_nothing_is_stored(tmp_path):
    encoded = []
    ckpt = Checkpoints(None, "k")
    result, reused = ckpt.run("stage", lambda: torch.ones(1), lambda t: encoded.append(t) or ({}, {}), None)
    assert reused is False and torch.equal(result, torch.ones(1)) and not encoded
    assert ckpt.served_dir() is None


def test_a_half_written_stage_does_not_count(tmp_path):
    key = call_key({"a": 1})
    Checkpoints(tmp_path, key).run("stage", lambda: torch.ones(2), *_codec())
    (tmp_path / "stage.json").write_text("{not json")
    _, reused = Checkpoints(tmp_path, key).run("stage", lambda: torch.ones(2), *_codec())
    assert reused is False
