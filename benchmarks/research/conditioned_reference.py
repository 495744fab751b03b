"""The posterior temperature against a reference read with the row's label (research; issue 13, the
wrong-label share).

    python -m benchmarks.research.conditioned_reference /work/sidyp-dev/semeval-mixtral-fewshot-noise30:1 \
        --cache-dir /work/bench-cache --out conditioned_reference-valid.jsonl

`compose_posteriors` matches the mean top confidence of the validation rows' refined posteriors, which read
each row's given label, to what the prior of the same texts *without* their label expects of those top
classes. Where most labels are right that reference is a k-NN reading of the text alone, so it doubts labels
the posteriors have every reason to keep, and the run's wrong-label share (mean 1 - P(y = given) of the
calibrated posteriors, the gate's reading) over-reads. Here the reference is read with the label too, through
the noise model's matrix T: P(y | votes, given) proportional to P(y | votes) T[y, given] (runs with the noise
model off have no T and are skipped). Nothing else changes: stage 1 from the `benchmarks.quality` cache,
stages 2-4 as `calibrate` runs them (`defaults_sweep.run_front_half`).

Per run: the share of wrong given labels (train and validation rows, against their gold), the gate's reading
at the run's temperature and at the conditioned one, and the validation rows' calibrated posteriors scored on
validation gold (ECE, NLL). Reads train and validation gold, never test.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from benchmarks.quality import gold_ids
from benchmarks.research import defaults_sweep
from benchmarks.research.wrong_share import expected_wrong
from sidyp_engine.metrics import ece, nll
from sidyp_engine.stages.select import calibrated
from sidyp_engine.temperature import apply_temperature, fit_temperature, probs_to_logits


def conditioned(reference: torch.Tensor, given: np.ndarray, channel: torch.Tensor) -> torch.Tensor:
    """Rows with a label: the reference times T[:, given], renormalised; rows without one: as they were."""
    out = reference.double().clone()
    rows = torch.from_numpy(np.flatnonzero(given >= 0))
    out[rows] *= channel.double()[:, torch.from_numpy(given[rows.numpy()])].T
    return out / out.sum(dim=1, keepdim=True).clamp_min(1e-12)


def wrong_share(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean 1 - P(y = given) over the labelled rows of every (posteriors, given ids) part."""
    return round(float(np.concatenate([expected_wrong(p, ids) for p, ids in parts]).mean()), 4)


def scored(p: np.ndarray, gold: np.ndarray) -> dict:
    return {"ece": round(float(ece(p, gold)), 4), "nll": round(nll(p, gold), 4)}


def run(data_dir: str, seed: int, cache_dir: str) -> dict | None:
    fh = defaults_sweep.run_front_half(data_dir, seed, {}, cache_dir)
    if fh.prior.channel is None:
        return None
    inputs, post, c = fh.inputs, fh.post, fh.inputs.n_classes
    t_noisy, v_noisy = inputs.train_ids, inputs.valid_ids
    g_train = gold_ids([fh.data["train"]["gold"][i] for i in inputs.fit_rows], fh.classes)
    g_valid = gold_ids(fh.data["valid"]["gold"], fh.classes)
    cal = {"train": calibrated(post.train, post), "valid": calibrated(post.valid, post)}
    # the refiner's posteriors before any temperature (softmax is blind to the constant log T shift)
    raw = {k: probs_to_logits(p) * post.temperature for k, p in cal.items()}
    reference = (1 - post.vote_smoothing) * fh.prior.valid.probs + post.vote_smoothing / c
    t_cond = fit_temperature(raw["valid"], conditioned(reference, v_noisy, fh.prior.channel))
    readings = {
        "run": {k: p.numpy() for k, p in cal.items()},
        "conditioned": {k: apply_temperature(z, t_cond).numpy() for k, z in raw.items()},
    }
    lab = np.flatnonzero(v_noisy >= 0)
    given = np.concatenate([t_noisy[t_noisy >= 0], v_noisy[lab]])
    truth = np.concatenate([g_train[t_noisy >= 0], g_valid[lab]])
    return {
        "data": os.path.basename(os.path.normpath(data_dir)),
        "seed": seed,
        "wrong_share_given": round(float(np.mean(given != truth)), 4),
        "temperature": {"run": round(post.temperature, 4), "conditioned": round(t_cond, 4)},
        # as `select.method_wrong_share`: the caller's labelled rows (the validation split is not theirs
        # when it came as a split of its own, as in the benchmark)
        "gate_reading": {
            name: wrong_share(
                [(p["train"], t_noisy)] + ([(p["valid"], v_noisy)] if inputs.is_validation.any() else [])
            )
            for name, p in readings.items()
        },
        "valid_with_label": {name: scored(p["valid"][lab], g_valid[lab]) for name, p in readings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="DATA_DIR:SEED")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for spec in args.runs:
        data_dir, seed = spec.rsplit(":", 1)
        row = run(data_dir, int(seed), args.cache_dir)
        if row is not None:
            defaults_sweep.emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
