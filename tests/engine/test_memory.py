"""The peak-memory estimate: its shape, and its fit to the committed measurements (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidyp_engine.memory import backbone_dimensions, estimate_memory, estimate_peak_bytes
from sidyp_engine.model import resolve_backbone
from sidyp_engine.types import CalibrationConfig

PROFILE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "memory-profile.json"
GIB = 2**30


def test_estimate_grows_with_rows_epochs_branches_and_extra_texts():
    base = CalibrationConfig()
    at = estimate_peak_bytes(20_000, 6, base)
    assert estimate_peak_bytes(40_000, 6, base) > at
    assert estimate_peak_bytes(20_000, 6, base.model_copy(update={"epochs": 8})) > at
    assert estimate_peak_bytes(20_000, 6, base.model_copy(update={"branches": 5})) > at
    assert estimate_peak_bytes(20_000, 6, base, n_extra_rows=10_000) > at
    assert estimate_peak_bytes(20_000, 6, base, n_layers=12) > at


def test_per_row_cost_covers_the_dynamics_and_the_refiner_conditioning():
    # every row keeps M x E embeddings of D floats, and stage 3 holds a normalised (E + 1)-epoch copy
    # of them next to the original while it builds the conditioning: at least (2 + 1/E) times that
    cfg = CalibrationConfig()
    per_row = (estimate_peak_bytes(200_000, 4, cfg) - estimate_peak_bytes(100_000, 4, cfg)) / 100_000
    dynamics_row = cfg.branches * cfg.epochs * 384 * 4
    assert per_row >= (2 + 1 / cfg.epochs) * dynamics_row


def test_small_jobs_peak_in_stage_1_large_ones_in_the_refiner():
    cfg = CalibrationConfig()
    assert estimate_memory(1_000, 4, cfg).stage == "classifier"
    assert estimate_memory(200_000, 4, cfg).stage == "refiner"


def test_a_max_rows_default_job_does_not_fit_a_small_worker():
    # the service accepts up to 200,000 rows; with the default config that needs well over 8 GiB
    assert estimate_peak_bytes(200_000, 4, CalibrationConfig()) > 8 * GIB
    assert estimate_peak_bytes(1_000, 4, CalibrationConfig()) < 4 * GIB


def test_the_defaults_are_the_bundled_backbones_dimensions():
    dims = backbone_dimensions(resolve_backbone(None))
    assert dims == {"hidden_size": 384, "n_layers": 6, "vocab_size": 30522}
    cfg = CalibrationConfig()
    assert estimate_peak_bytes(5_000, 4, cfg, **dims) == estimate_peak_bytes(5_000, 4, cfg)


def test_the_copied_batch_shapes_match_the_engine():
    from sidyp_engine import classifier, diffusion, memory

    assert memory.TOKEN_BUDGET == classifier.TOKEN_BUDGET
    assert memory.INFERENCE_BATCH == classifier.INFERENCE_BATCH
    assert memory.REFINER_CHUNK_ROWS == diffusion.RefinerConfig.chunk_rows
    assert memory.REFINER_HIDDEN == diffusion.RefinerConfig.hidden


def test_importing_the_estimate_does_not_import_torch():
    # the API estimates every POST /v1/jobs; the web process must not pay for torch
    import subprocess
    import sys

    code = "import sys, sidyp_engine.memory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parts_add_up_to_the_total():
    est = estimate_memory(50_000, 10, CalibrationConfig())
    parts = est.parts()
    stages = ("classifier", "prior", "refiner", "served")
    assert parts["total"] == parts["runtime"] + max(parts[s] for s in stages)
    assert est.total == estimate_peak_bytes(50_000, 10, CalibrationConfig())


def _profile_runs() -> list[dict]:
    return json.loads(PROFILE.read_text())["runs"]


def test_profile_covers_several_sizes_of_the_default_epochs_and_branches():
    sizes = {r["rows"] for r in _profile_runs() if (r["epochs"], r["branches"]) == (4, 3)}
    assert len(sizes) >= 3 and max(sizes) >= 8_000


@pytest.mark.parametrize("run", _profile_runs(), ids=lambda r: f"{r['rows']}rows-{r['n_layers']}L")
def test_estimate_is_an_upper_bound_within_1_5x_of_each_measured_peak(run):
    cfg = CalibrationConfig(
        epochs=run["epochs"],
        branches=run["branches"],
        batch_size=run["batch_size"],
        max_length=run["max_length"],
    )
    estimated = estimate_peak_bytes(run["rows"], run["n_classes"], cfg, n_layers=run["n_layers"])
    assert run["peak_bytes"] <= estimated <= 1.5 * run["peak_bytes"]


@pytest.mark.parametrize("name", ["semeval-mixtral-fewshot-timing.json", "trec-weak-vote.json"])
def test_estimate_bounds_the_measured_peaks_of_real_minilm_runs(name):
    # benchmarks/quality.py runs with the default 6-layer MiniLM and real texts (validation and test
    # texts passed as extra texts); its peak_rss_mb.self is the ru_maxrss of that process
    doc = json.loads((PROFILE.parent / name).read_text())
    cfg = CalibrationConfig(**{k: v for k, v in doc["config"].items() if k != "device"})
    rows, extra = doc["n"]["train"] + doc["n"]["valid"], doc["n"]["test"]
    estimated = estimate_peak_bytes(rows, len(doc["classes"]), cfg, n_extra_rows=extra)
    measured = doc["peak_rss_mb"]["self"] * 2**20
    assert measured <= estimated <= 1.5 * measured
