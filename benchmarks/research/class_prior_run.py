"""The benchmark with another class prior π in the noise model (design runs for `prior.noise_model_prior`).

    python -m benchmarks.research.class_prior_run RULE <benchmarks.quality arguments>

The engine fixes π once, the mean of the class-balanced k-NN vote over the labelled rows. The balancing
divides each class's votes by its count, which pulls π towards equal shares: a class that is truly common
is under-expected, and the refined labels lose it (docs/method.md, "The class floor's share at 40 %
noise"). RULE:

- `vote`: the engine's π (a control: the same run through this wrapper).
- `moments`: fit once with the vote's π, then π >= 0 with π T = q (T the fitted noise matrix, q the noisy
  labels' shares; the method of moments, `estimates.solve_nonnegative`), and fit again with it fixed.
- `geometric`: π ∝ sqrt(π_vote · q).
- `map1`, `map0.3`: π re-estimated in every M step with a Dirichlet prior at the vote's π worth 1 (0.3)
  times the labelled rows (`noise_model_prior(class_prior_strength=...)`).

Stage 1, the plain fine-tune and the embeddings come from --cache-dir when there; everything after is
recomputed. The JSON's `variant` records the rule, each π and, for the record, the training rows' gold
shares (read after the run; no run reads them). Read the validation and training-gold figures for a
decision; test is scored once.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from benchmarks import quality
from sidyp_engine import estimates
from sidyp_engine import prior as prior_module
from sidyp_engine.stages import prior as prior_stage

RULES = ("vote", "moments", "geometric", "map1", "map0.3")
_seen: list[dict] = []


def _label_shares(noisy: np.ndarray, n_classes: int) -> np.ndarray:
    y = noisy[noisy >= 0]
    return np.bincount(y, minlength=n_classes).astype(np.float64) / max(1, len(y))


def class_prior(rule: str, vote_pi: np.ndarray, t: np.ndarray, q: np.ndarray) -> np.ndarray:
    if rule == "moments":
        pi = estimates.solve_nonnegative(q[None, :], t)[0]
    elif rule == "geometric":
        pi = np.sqrt(vote_pi * q)
    else:
        pi = vote_pi
    return pi / max(pi.sum(), 1e-12)


def wrapped(rule: str):
    original = prior_module.noise_model_prior

    def noise_model_prior(embeddings, noisy, init_probs, n_classes, *args, **kwargs):
        fitted = original(embeddings, noisy, init_probs, n_classes, *args, **kwargs)
        y = np.asarray(noisy)
        q = _label_shares(y, n_classes)
        vote_pi = fitted.class_prior.double().numpy()
        pi = class_prior(rule, vote_pi, fitted.noise_matrix.double().numpy(), q)
        record = {
            "vote": vote_pi.round(4).tolist(),
            "labels": q.round(4).tolist(),
            "used": pi.round(4).tolist(),
        }
        _seen.append(record)
        print("class prior:", json.dumps(record), file=sys.stderr)
        if rule == "vote":
            return fitted
        if rule.startswith("map"):
            refit = original(
                embeddings,
                noisy,
                init_probs,
                n_classes,
                *args,
                class_prior_strength=float(rule[3:]),
                **kwargs,
            )
            record["used"] = refit.class_prior.double().numpy().round(4).tolist()
            print("class prior (map):", json.dumps(record["used"]), file=sys.stderr)
            return refit
        return original(embeddings, noisy, init_probs, n_classes, *args, class_prior=pi, **kwargs)

    return noise_model_prior


def main(argv: list[str]) -> int:
    rule, args = argv[0], argv[1:]
    if rule not in RULES:
        raise SystemExit(f"RULE must be one of {RULES}")
    prior_stage.noise_model_prior = wrapped(rule)
    code = quality.main(args)
    if "--out" in args:
        path = args[args.index("--out") + 1]
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        data = args[args.index("--data") + 1]
        train = quality.read_split(os.path.join(data, "train.csv"))
        classes = doc["classes"]
        gold = np.array([classes.index(g) for g in train["gold"] if g in classes])
        doc["variant"] = {
            "class_prior": rule,
            "runner": "python -m benchmarks.research.class_prior_run",
            "priors": _seen,
            "train_gold_shares": (np.bincount(gold, minlength=len(classes)) / max(1, len(gold)))
            .round(4)
            .tolist(),
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
