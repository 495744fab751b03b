"""Which labels should the calibration reference's smoothing be fitted to? (issue 13, trec's under-confidence)

    python -m benchmarks.research.vote_reference --data ../shared/data/trec-weak-vote /work/sidyp-dev/* \
        --cache-dir /work/bench-cache --out vote_reference.jsonl

The posterior temperature matches the refined posteriors' mean confidence to what the prior expects of
their argmax, the prior first smoothed by the ε that best predicts the noisy validation labels
(`prior.fit_vote_smoothing`). A k-NN vote counts the labels of the *clean* set, so fitting its ε to all
validation labels (half of them wrong on trec) measures agreement with the labeller, not accuracy. This
compares, on validation gold only (test is never read), the ε fitted to

- `valid`: the noisy validation labels (the current rule),
- `clean`: the clean training rows' own labels, each row's prior a vote it is not part of,
- `none`: ε = 0,

and the temperature that minimises the validation gold's NLL (`oracle`, what no run can know).
Per rule: ε, T, validation accuracy, mean confidence and ECE of the calibrated (unfloored) posteriors,
and the estimated wrong-label share of the training rows against the true one.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from benchmarks.quality import gold_ids
from benchmarks.research.defaults_sweep import emit, run_front_half
from sidyp_engine.metrics import ece
from sidyp_engine.prior import fit_vote_smoothing
from sidyp_engine.stages.posterior import refined_posterior
from sidyp_engine.temperature import apply_temperature, fit_temperature, fit_temperature_nll, probs_to_logits


def compare(data_dir: str, seed: int, cache_dir: str) -> dict:
    run = run_front_half(data_dir, seed, {}, cache_dir)
    inputs, prior, ens, cond, refiner = run.inputs, run.prior, run.ens, run.cond, run.refiner
    transition = refiner.model.transition
    y_tr, y_v, c = inputs.y_train, inputs.y_valid, inputs.n_classes
    raw_valid = refined_posterior(transition(cond.valid), ens.noisy_posteriors["valid"], y_v)
    raw_train = refined_posterior(transition(cond.train), ens.noisy_posteriors["train"], y_tr)
    g_valid = gold_ids(run.data["valid"]["gold"], run.classes)
    g_train = gold_ids([run.data["train"]["gold"][i] for i in inputs.fit_rows], run.classes)
    clean = run.flags.clean
    eps = {
        "valid": fit_vote_smoothing(prior.valid.probs, y_v, prior.channel),
        "clean": fit_vote_smoothing(prior.train.probs[clean], y_tr[clean], prior.channel),
        "none": 0.0,
    }
    logits = probs_to_logits(raw_valid)
    temps = {name: fit_temperature(logits, (1 - e) * prior.valid.probs + e / c) for name, e in eps.items()}
    temps["oracle"] = fit_temperature_nll(logits, torch.from_numpy(g_valid))
    labelled = (y_tr >= 0).numpy()
    noisy = y_tr.numpy()
    rules = {}
    for name, t in temps.items():
        valid = apply_temperature(logits, t).float().numpy()
        train = apply_temperature(probs_to_logits(raw_train), t).float().numpy()
        rules[name] = {
            "epsilon": eps.get(name),
            "temperature": round(float(t), 4),
            "valid_accuracy": round(float((valid.argmax(1) == g_valid).mean()), 4),
            "valid_confidence": round(float(valid.max(1).mean()), 4),
            "valid_ece": round(float(ece(valid, g_valid)), 4),
            "wrong_share_estimate": round(float(1 - train[labelled, noisy[labelled]].mean()), 4),
        }
    return {
        "data": os.path.basename(os.path.normpath(data_dir)),
        "seed": seed,
        "space": prior.space,
        "noise_model": prior.noise_model_on,
        "clean_rows": int(clean.sum()),
        "clean_rows_wrong": round(float((noisy[clean.numpy()] != g_train[clean.numpy()]).mean()), 4),
        "valid_labels_wrong": round(float((y_v.numpy() != g_valid)[y_v.numpy() >= 0].mean()), 4),
        "wrong_share_train_gold": round(float((noisy != g_train)[labelled].mean()), 4),
        "rules": rules,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="JSON lines, one per set, appended")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for data_dir in args.data:
        emit(compare(data_dir, args.seed, args.cache_dir), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
