"""benchmarks.quality --cache-dir: a second run reuses stage 1 and the baseline and recomputes the rest."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import QUICK_BENCHMARK_ARGS, write_toy_benchmark_set


@pytest.mark.slow  # two small benchmark runs (~10 s)
def test_a_second_run_reuses_stage1_and_the_baseline(tmp_path, tiny_backbone):
    from benchmarks import quality

    data = write_toy_benchmark_set(tmp_path / "toy")
    common = ["--data", str(data), "--seeds", "1", *QUICK_BENCHMARK_ARGS]
    common += ["--backbone", tiny_backbone, "--cache-dir", str(tmp_path / "cache"), "--k", "3"]
    before = torch.get_num_threads()
    try:
        assert quality.main([*common, "--out", str(tmp_path / "first.json")]) == 0
        # a later-stage setting changed: stage 1 and the baseline come from the cache, the rest is new
        assert quality.main([*common[:-1], "4", "--out", str(tmp_path / "second.json")]) == 0
    finally:
        torch.set_num_threads(before)
    first = json.loads((tmp_path / "first.json").read_text())["runs"][0]
    second = json.loads((tmp_path / "second.json").read_text())["runs"][0]
    assert first["reused"] == {"stage1": False, "noisy_baseline": False}
    assert second["reused"] == {"stage1": True, "noisy_baseline": True}
    assert second["diagnostics"]["k"] == 4.0 and first["diagnostics"]["k"] == 3.0
    assert second["scores"]["noisy_baseline"] == first["scores"]["noisy_baseline"]
    assert second["scores"]["noisy_ensemble"] == first["scores"]["noisy_ensemble"]
    # the run's plain candidate is the baseline's recipe: served as a model it scores what the baseline does
    for run in (first, second):
        assert run["scores"]["plain_model"]["accuracy"] == run["scores"]["noisy_baseline"]["accuracy"]
        assert run["scores"]["plain_model"]["macro_f1"] == run["scores"]["noisy_baseline"]["macro_f1"]
    # only the cached stages survive between runs: nothing later is read back stale
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["toy-seed0"]
    kept = sorted(p.name for p in (tmp_path / "cache" / "toy-seed0").iterdir())
    assert "served" in kept  # the second run's own, written after the clean-up
