"""Which posterior estimates the share of wrong labels best? (issue 13, part 2: within 5 points)

    python -m benchmarks.research.wrong_share /work/dumps/*/seed*.npz

Reads the arrays of `benchmarks.quality --dump-arrays` (and the older `defaults_sweep --arrays` layout;
validation and training gold only, test is not read). Per run, against the true wrong share of the rows
each reading covers:

- `conditioned`: mean 1 - P(y = given | x, given) of the calibrated (unfloored) refined posteriors of the
  validation rows; `gate`: the same over the training and validation rows, what `select.method_wrong_share`
  reports and the noise gate reads;
- `unconditioned`: the validation rows' posterior of the text alone, P(y | x), marginalised over the
  classifiers' P(ỹ | x) as for an unlabelled text, scored against the given label;
- `hard`: the share of training and validation rows whose calibrated refined argmax is not the given label;
- `sharp<p>`: `gate` on the posteriors raised to the power p and renormalised (temperature 1/p);
- `selfcal`: `gate` at the power (0.5-4) under which the validation rows' sharpened unlabelled posteriors,
  through the noise matrix the sharpened training posteriors imply, best predict the validation rows'
  noisy labels (lowest NLL; gold-free). Its power is printed as `p*`; `selfcal_v` the same on the
  validation rows alone (`conditioned` at that power).

A second table reads the same posteriors as the reference of the gold-free accuracy estimates
(`estimates.reference_accuracy`: each candidate's validation predictions scored by the validation rows'
calibrated refined posteriors, as they are, sharpened, or as their argmax) against each candidate's
measured validation accuracy; a third, the served model's validation ECE with its temperature matched to
each of those estimates of its accuracy (what the gold-free served temperature follows).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from sidyp_engine.metrics import ece
from sidyp_engine.stages.posterior import unfloored
from sidyp_engine.stages.select import _temperature_for
from sidyp_engine.temperature import apply_temperature, probs_to_logits

POWERS = (1.5, 2.0, 3.0)  # the sharpened readings: posteriors raised to these powers, renormalised
SELF_POWERS = np.round(np.arange(0.5, 4.01, 0.1), 2)  # the grid `selfcal` searches


def expected_wrong(posteriors: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """Per labelled row, 1 - P(y = given): the posteriors' expectation that its label is wrong."""
    rows = np.flatnonzero(noisy >= 0)
    return 1 - posteriors[rows, noisy[rows]]


def _hard(posteriors: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(noisy >= 0)
    return (posteriors[rows].argmax(1) != noisy[rows]).astype(float)


def _sharp(posteriors: np.ndarray, power: float) -> np.ndarray:
    """Raised to `power` and renormalised: temperature 1 / power on the log-probabilities."""
    return apply_temperature(probs_to_logits(torch.from_numpy(posteriors)), 1.0 / power).numpy()


def _calibrated(a, key: str, weights: np.ndarray | None = None) -> np.ndarray:
    """The dump's posteriors under `key` without the floor's class weights (default: the labelled rows')."""
    w = torch.from_numpy(a["class_floor_weights"] if weights is None else weights).float()
    return unfloored(torch.from_numpy(a[key]).float(), w, float(a["floor_temperature"])).numpy()


def _sweep_row(a, path: str) -> dict:
    noisy, gold = a["valid_noisy"], a["valid_gold"]
    labelled = noisy >= 0
    out = {
        "run": os.path.basename(path)[:-4],
        "true_valid": float((noisy[labelled] != gold[labelled]).mean()),
        "conditioned": float(expected_wrong(a["valid_calibrated"], noisy).mean()),
        "unconditioned": float(expected_wrong(a["valid_unlabelled"], noisy).mean()),
    }
    train, given = a["train_calibrated"], a["train_noisy"]
    out["gate"] = float(
        np.concatenate([expected_wrong(a["valid_calibrated"], noisy), expected_wrong(train, given)]).mean()
    )
    return out


def row(path: str) -> dict:
    a = np.load(path)
    if "valid_calibrated" in a.files:
        return _sweep_row(a, path)
    v_noisy, v_gold = a["valid_noisy"], a["valid_gold"]
    t_noisy, t_gold = a["train_noisy"], a["train_gold"]
    valid, train = _calibrated(a, "valid_posteriors"), _calibrated(a, "train_refined_posteriors")
    power = _self_calibrated_power(a, train, t_noisy)
    v_lab, t_lab = v_noisy >= 0, t_noisy >= 0
    both_noisy = np.concatenate([v_noisy[v_lab], t_noisy[t_lab]])
    both_gold = np.concatenate([v_gold[v_lab], t_gold[t_lab]])
    both = np.concatenate([valid[v_lab], train[t_lab]])
    return {
        "run": os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)[:-4],
        "true_valid": float((v_noisy[v_lab] != v_gold[v_lab]).mean()),
        "true_given": float((both_noisy != both_gold).mean()),
        "conditioned": float(expected_wrong(valid, v_noisy).mean()),
        "gate": float(expected_wrong(both, both_noisy).mean()),
        "unconditioned": float(expected_wrong(a["valid_refined_unlabelled"], v_noisy).mean()),
        "hard": float(_hard(both, both_noisy).mean()),
        **{f"sharp{p:g}": float(expected_wrong(_sharp(both, p), both_noisy).mean()) for p in POWERS},
        "selfcal": float(expected_wrong(_sharp(both, power), both_noisy).mean()),
        "selfcal_v": float(expected_wrong(_sharp(valid, power), v_noisy).mean()),
        "p*": power,
        "accuracy": _accuracy_readings(a, valid),
    }


def _self_calibrated_power(a, train: np.ndarray, t_noisy: np.ndarray) -> float:
    """The power whose sharpened posteriors best predict the validation rows' noisy labels (no gold read)."""
    weights = a["class_floor_weights"] * a["unlabelled_floor_weights"]
    unlabelled = _calibrated(a, "valid_refined_unlabelled", weights)
    v_noisy, rows, given = a["valid_noisy"], t_noisy >= 0, t_noisy[t_noisy >= 0]
    labelled = np.flatnonzero(v_noisy >= 0)
    n_classes = train.shape[1]
    losses = []
    for power in SELF_POWERS:
        sharp = _sharp(train[rows], power)
        t = np.stack([sharp[given == j].sum(0) for j in range(n_classes)], 1)  # t[y, j] ~ P(given j | y)
        t = t / np.clip(t.sum(1, keepdims=True), 1e-12, None)
        noisy_probs = _sharp(unlabelled, power) @ t
        losses.append(-np.log(np.clip(noisy_probs[labelled, v_noisy[labelled]], 1e-12, None)).mean())
    return float(SELF_POWERS[int(np.argmin(losses))])


def _accuracy_readings(a, valid: np.ndarray) -> dict[str, dict[str, float]]:
    """Per candidate: measured validation accuracy and its estimate under each reading of the reference; for
    the served model also its validation ECE with its temperature matched to each estimate (what the
    gold-free served temperature follows, before the carry to the evaluation texts)."""
    noisy, gold = a["valid_noisy"], a["valid_gold"]
    rows = np.flatnonzero(noisy >= 0)
    references = {
        "soft": valid[rows],
        **{f"sharp{p:g}": _sharp(valid[rows], p) for p in POWERS},
        "hard": np.eye(valid.shape[1])[valid[rows].argmax(1)],
    }
    out = {}
    for key in a.files:
        if not key.startswith("valid_pred_"):
            continue
        pred = a[key][rows]
        out[key[len("valid_pred_") :]] = {"measured": float((pred == gold[rows]).mean())} | {
            name: float(ref[np.arange(len(rows)), pred].mean()) for name, ref in references.items()
        }
    if "served" in out and "valid_logits_served" in a.files:
        logits = a["valid_logits_served"][rows].astype(np.float64)
        for name in references:
            t = _temperature_for(logits, out["served"][name])
            probs = torch.softmax(torch.from_numpy(logits) / t, dim=-1).numpy()
            out["served"][f"ece_{name}"] = float(ece(probs, gold[rows]))
    return out


READINGS = (
    "conditioned",
    "gate",
    "unconditioned",
    "hard",
    *(f"sharp{p:g}" for p in POWERS),
    "selfcal",
    "selfcal_v",
    "p*",
)


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    rows = [row(p) for p in paths]
    print(f"{'run':<58}{'true v':>7}{'true g':>7}" + "".join(f"{k:>14}" for k in READINGS))
    for r in rows:
        cells = "".join(f"{r[k]:>14.3f}" if k in r else f"{'-':>14}" for k in READINGS)
        print(f"{r['run']:<58}{r['true_valid']:>7.3f}{r.get('true_given', float('nan')):>7.3f}{cells}")
    for key in READINGS[:-1]:  # the last column is the self-calibrated power, not a share
        errs = [abs(r[key] - r["true_valid"]) for r in rows if key in r and np.isfinite(r[key])]
        if errs:
            print(
                f"mean absolute error against the validation share, {key}: {np.mean(errs):.3f} ({len(errs)} runs)"
            )
    print()
    refs = ("soft", *(f"sharp{p:g}" for p in POWERS), "hard")
    print(f"{'run':<58}{'candidate':<14}{'measured':>9}" + "".join(f"{k:>9}" for k in refs))
    errors: dict[str, list[float]] = {k: [] for k in refs}
    for r in rows:
        for name, acc in r.get("accuracy", {}).items():
            print(
                f"{r['run']:<58}{name:<14}{acc['measured']:>9.3f}" + "".join(f"{acc[k]:>9.3f}" for k in refs)
            )
            for k in refs:
                errors[k].append(abs(acc[k] - acc["measured"]))
    for k in refs:
        if errors[k]:
            print(
                f"accuracy estimates' mean absolute error against validation, {k}: {np.mean(errors[k]):.3f}"
            )
    print()
    print("served model's validation ECE, temperature matched to each estimate")
    print(f"{'run':<58}" + "".join(f"{k:>9}" for k in refs))
    served = [
        (r["run"], r["accuracy"]["served"])
        for r in rows
        if "ece_soft" in r.get("accuracy", {}).get("served", {})
    ]
    for run, s in served:
        print(f"{run:<58}" + "".join(f"{s['ece_' + k]:>9.3f}" for k in refs))
    if served:
        print(f"{'mean':<58}" + "".join(f"{np.mean([s['ece_' + k] for _, s in served]):>9.3f}" for k in refs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
