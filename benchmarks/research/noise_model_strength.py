"""Why does the refinement relabel right labels where most labels are right? (issue 13: low-noise harm)

    python -m benchmarks.research.noise_model_strength /work/sidyp-dev/semeval-mixtral-fewshot-noise05:2 \
        --cache-dir /work/bench-cache --out benchmarks/results/issue13f/design/noise_model_strength.jsonl

On the low-noise development sets the refined training labels are less accurate than the labels they
refine, and already the noise-model prior is (it reads the row's own label): its EM (`prior.noise_model_prior`)
re-estimates the labeller's confusion matrix T from its own posteriors, so every row it moves to another
class adds off-diagonal mass to T, which moves more rows. This script runs stages 2-4 of `calibrate` (stage 1
from the `benchmarks.quality` cache, `defaults_sweep.run_front_half`) with T's Dirichlet prior changed:

- `pc20`: the default, 20 pseudo-rows on every class's diagonal;
- `pc100`: 100 pseudo-rows;
- `propA` (A = 0.25 ... 16): A times as many pseudo-rows as the class has labelled rows (the prior's
  weight grows with the evidence, so large classes cannot absorb neighbours of small ones for free);
- `anchor`: T fixed to the anchor-point estimate of the stage-1 ensemble's held-out P(ỹ | x), no M step
  (`select.selection_noise_matrix`, the matrix of the gold-free estimates).

Scored on train gold (labels, T) and validation gold (the validation texts read as unlabelled, against the
plain classifier); test gold is not read. Beside the true wrong-label share it records the gate's reading
(`select.method_wrong_share`) and the noise model's own (its EM posterior; docs/method.md, thirty-fourth round).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np
import torch

from benchmarks.quality import gold_ids
from benchmarks.research import defaults_sweep
from benchmarks.research.conditioned_reference import conditioned, wrong_share
from benchmarks.research.plain_floor import scores
from sidyp_engine import prior as prior_module
from sidyp_engine.stages.select import calibrated, method_wrong_share, selection_noise_matrix

VARIANTS = ("pc20", "pc100", "prop0.25", "prop1", "prop2", "prop4", "prop8", "prop16", "anchor")


@contextlib.contextmanager
def noise_matrix_variant(variant: str, anchor_t: np.ndarray | None):
    """`prior.noise_matrix` as the noise model's M step calls it, with the variant's diagonal prior."""
    original = prior_module.noise_matrix

    def patched(posteriors, noisy, n_classes, diagonal_pseudocount=1e-6, floor=0.0):
        if variant == "anchor":
            return anchor_t
        if variant.startswith("pc"):
            diagonal_pseudocount = float(variant[2:])
        elif variant.startswith("prop"):
            rows = np.bincount(noisy[noisy >= 0], minlength=n_classes).astype(np.float64)
            diagonal_pseudocount = np.maximum(float(variant[4:]) * rows, 1.0)
        return original(posteriors, noisy, n_classes, diagonal_pseudocount, floor)

    prior_module.noise_matrix = patched
    try:
        yield
    finally:
        prior_module.noise_matrix = original


def run(data_dir: str, seed: int, variant: str, cache_dir: str) -> dict:
    anchor = None
    if variant == "anchor":
        s1 = defaults_sweep.load_stage1(data_dir, seed, {}, cache_dir)
        anchor = selection_noise_matrix(s1.ens)
    with noise_matrix_variant(variant, anchor):
        fh = defaults_sweep.run_front_half(data_dir, seed, {}, cache_dir)
    inputs, c = fh.inputs, fh.inputs.n_classes
    train = fh.data["train"]
    g = gold_ids([train["gold"][i] for i in inputs.fit_rows], fh.classes)
    noisy = inputs.train_ids
    lab = noisy >= 0

    cal = calibrated(fh.post.train, fh.post).numpy()
    g_valid = gold_ids(fh.data["valid"]["gold"], fh.classes)
    unlabelled_probs = fh.post.valid_unlabelled.numpy()
    unlabelled = unlabelled_probs.argmax(1)
    v_noisy = inputs.valid_ids
    v_lab = np.flatnonzero(v_noisy >= 0)
    cal_v = calibrated(fh.post.valid, fh.post).numpy()

    channel = fh.prior.channel.numpy() if fh.prior.channel is not None else None
    t_true = prior_module.noise_matrix(np.eye(c)[g], noisy, c)  # P(noisy | true) from train gold
    return {
        "data": os.path.basename(os.path.normpath(data_dir)),
        "seed": seed,
        "variant": variant,
        "noise_model": fh.prior.noise_model_on,
        "llm_train": scores(noisy[lab], g[lab], c),  # labelled rows only
        "prior_train": scores(fh.prior.train.probs.argmax(1).numpy(), g, c),
        "refined_train": scores(fh.post.train.argmax(1).numpy(), g, c),
        # validation rows with their label, as the delivered labels read them (class floor included)
        "refined_valid": scores(fh.post.valid.argmax(1).numpy()[v_lab], g_valid[v_lab], c),
        # validation rows as unseen texts (the test-like reading) against the plain classifier's argmax
        "refined_valid_unlabelled": scores(unlabelled, g_valid, c),
        "plain_valid": scores(fh.ens.noisy_posteriors["valid"].argmax(1).numpy(), g_valid, c),
        "wrong_share": {
            "estimated": round(float(1 - cal[lab, noisy[lab]].mean()), 4),
            "train_gold": round(float(np.mean(noisy[lab] != g[lab])), 4),
            # validation rows: with their label (the gate's posterior) and as unseen texts, and the truth
            "valid_conditioned": round(float(1 - cal_v[v_lab, v_noisy[v_lab]].mean()), 4),
            "valid_unconditioned": round(float(1 - unlabelled_probs[v_lab, v_noisy[v_lab]].mean()), 4),
            "valid_gold": round(float(np.mean(v_noisy[v_lab] != g_valid[v_lab])), 4),
            # the noise model's own reading: its label-conditioned prior of the training rows
            "noise_model_prior": round(float(1 - fh.prior.train.probs.numpy()[lab, noisy[lab]].mean()), 4),
            "noise_model_valid": _conditioned_share(fh.prior, v_noisy),
            # what the gate reads (`select.method_wrong_share`): the calibrated posteriors with their label
            "gate_reading": round(float(method_wrong_share(fh.post, inputs, seed).accuracy), 4),
        },
        "t_diag": None if channel is None else [round(float(x), 3) for x in np.diag(channel)],
        "t_diag_true": [round(float(x), 3) for x in np.diag(t_true)],
        "t_abs_error": None
        if channel is None
        else round(float(np.abs(channel - t_true).sum(1).mean() / 2), 4),
    }


def _conditioned_share(prior, given: np.ndarray) -> float | None:
    """The noise model's wrong share of the validation rows: their vote read with their own label through
    T (`conditioned_reference.conditioned`)."""
    if prior.channel is None:
        return None
    return wrong_share([(conditioned(prior.valid.probs, given, prior.channel).numpy(), given)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="DATA_DIR:SEED")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for spec in args.runs:
        data_dir, seed = spec.rsplit(":", 1)
        for variant in args.variants:
            row = run(data_dir, int(seed), variant, args.cache_dir)
            defaults_sweep.emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
