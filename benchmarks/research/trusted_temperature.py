"""The served model's temperature with trusted rows: which fit calibrates the texts it is used on?

Reads `--dump-arrays` files of `--trusted N` runs (the served model's logits on the trusted rows and on the
validation texts, the trusted labels, the validation gold). The validation texts stand in for the evaluation
texts (the benchmark's are the test texts, which design never reads): each rule sees the trusted rows and
the validation texts' logits, never their gold; the validation gold scores the result (ECE, 15 bins; NLL).

Rules:
  nll          minimum NLL of the trusted labels (the rule on main)
  match        mean top confidence on the trusted rows = their accuracy
  atc_eval     mean top confidence on the evaluation texts = the accuracy transferred to them from the
               trusted rows by ATC, at the NLL temperature (as `_evaluation_estimate` estimates it)
  hedge        the geometric mean of `nll` and `atc_eval`
  gold_free    the temperature the distillation fits to the validation texts' refined posteriors (the rule
               without trusted rows; dumps only)
  blend        the geometric mean of `nll` and `gold_free`: the 100-row fit shrunk toward the gold-free one
  floor        minimum NLL of the validation gold (no run can know it; the best a temperature can do)

    python -m benchmarks.research.trusted_temperature /work/dumps/issue13o-*-trusted100/seed*.npz
    python -m benchmarks.research.trusted_temperature      # the planted case: no dumps
    python -m benchmarks.research.trusted_temperature --redraw /work/dumps/*-trusted100/seed*.npz

`--redraw`: the trusted rows and the validation rows pooled (every one has gold and neither was fitted by the
served model), 100 of them drawn at random 200 times as the trusted rows and the rest as the evaluation
texts: how far each rule's temperature moves with the draw, and the evaluation ECE / NLL it leaves; the row
`calibrated` is the ECE a perfectly calibrated model with the NLL fit's confidences shows on those rows.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

from sidyp_engine import estimates, metrics
from sidyp_engine.stages.select import _temperature_for
from sidyp_engine.temperature import fit_temperature, fit_temperature_nll


def top(logits: np.ndarray, t: float) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double() / t, dim=-1).numpy()


def gold_free_temperature(a) -> float | None:
    """The distillation's temperature: fitted to the validation texts' refined posteriors (no gold read)."""
    if "valid_posteriors" not in a:
        return None
    logits = torch.from_numpy(a["valid_logits_served"].astype(np.float64))
    return fit_temperature(logits, torch.from_numpy(a["valid_posteriors"].astype(np.float64)))


def rules(trusted_logits, trusted_labels, eval_logits, eval_gold, gold_free=None) -> dict[str, float]:
    t_nll = fit_temperature_nll(torch.from_numpy(trusted_logits), torch.from_numpy(trusted_labels))
    right = trusted_logits.argmax(1) == trusted_labels
    t_match = _temperature_for(trusted_logits, float(right.mean()))
    # ATC's point estimate (`estimates.transferred_accuracy` without its bootstrap interval)
    transferred = estimates.thresholded_confidence(
        top(trusted_logits, t_nll).max(1), right, top(eval_logits, t_nll).max(1)
    )
    t_atc = _temperature_for(eval_logits, transferred)
    t_floor = fit_temperature_nll(torch.from_numpy(eval_logits), torch.from_numpy(eval_gold))
    hedge = float(np.sqrt(t_nll * t_atc))
    found = {"nll": t_nll, "match": t_match, "atc_eval": t_atc, "hedge": hedge, "floor": t_floor}
    if gold_free is not None:
        found |= {"gold_free": gold_free, "blend": float(np.sqrt(t_nll * gold_free))}
    return found


def redraw(path: str, n_trusted: int = 100, draws: int = 200) -> dict[str, list]:
    """Per rule: (T, evaluation ECE, evaluation NLL) over `draws` random splits of the pooled gold rows."""
    a = np.load(path)
    logits = np.concatenate([a["trusted_logits_served"], a["valid_logits_served"]]).astype(np.float64)
    gold = np.concatenate([a["trusted_labels"], a["valid_gold"]])
    rng = np.random.default_rng(0)
    gold_free = gold_free_temperature(a)
    found: dict[str, list] = {}
    for _ in range(draws):
        order = rng.permutation(len(gold))
        t_rows, e_rows = order[:n_trusted], order[n_trusted:]
        temps = rules(logits[t_rows], gold[t_rows], logits[e_rows], gold[e_rows], gold_free)
        for name, t in temps.items():
            probs = top(logits[e_rows], t)
            found.setdefault(name, []).append(
                (t, metrics.ece(probs, gold[e_rows]), metrics.nll(probs, gold[e_rows]))
            )
        # what a perfectly calibrated model with the NLL fit's confidences shows on these rows: labels drawn
        # from its own probabilities (the ECE of a finite split is not 0 even then)
        probs = top(logits[e_rows], temps["nll"])
        drawn = np.minimum((probs.cumsum(1) < rng.random((len(e_rows), 1))).sum(1), probs.shape[1] - 1)
        found.setdefault("calibrated", []).append(
            (temps["nll"], metrics.ece(probs, drawn), metrics.nll(probs, drawn))
        )
    return found


def main_redraw(paths: list[str]) -> None:
    print(
        f"{'run':48s} {'rule':10s} {'T 10%':>7s} {'T 50%':>7s} {'T 90%':>7s} {'ECE':>7s} {'ECE 90%':>8s} {'NLL':>7s}"
    )
    means: dict[str, list] = {}
    for path in paths:
        for name, rows in redraw(path).items():
            t, e, n = (np.array(c) for c in zip(*rows, strict=True))
            means.setdefault(name, []).append((e.mean(), n.mean()))
            q = np.percentile(t, [10, 50, 90])
            run = os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)
            print(
                f"{run[-48:]:48s} {name:10s} {q[0]:7.3f} {q[1]:7.3f} {q[2]:7.3f} {e.mean():7.4f} "
                f"{np.percentile(e, 90):8.4f} {n.mean():7.4f}"
            )
    print(f"\n{'rule':10s} {'mean ECE':>9s} {'mean NLL':>9s}  ({len(paths)} runs)")
    for name, rows in means.items():
        print(f"{name:10s} {np.mean([e for e, _ in rows]):9.4f} {np.mean([n for _, n in rows]):9.4f}")


def planted(draws: int = 20) -> None:
    """One model over-confident by exactly T = 2 on every text (3 classes, true logits N(0, 2^2)), 100
    trusted rows, 3,000 evaluation texts whose true logits are scaled by `sharpness` (1: like the trusted
    rows; 2.5: easier; 0.5: harder). Each rule's median T and mean ECE on the evaluation texts over `draws`."""

    def draw(rng, n: int, sharpness: float) -> tuple[np.ndarray, np.ndarray]:
        true_logits = rng.normal(size=(n, 3)) * 2 * sharpness
        probs = np.exp(true_logits - true_logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        return true_logits * 2.0, (probs.cumsum(1) < rng.random((n, 1))).sum(1)

    for sharpness in (0.5, 1.0, 2.5):
        found: dict[str, list] = {"nll": [], "atc_eval": [], "hedge": []}
        for seed in range(draws):
            rng = np.random.default_rng(seed)
            trusted_logits, trusted_labels = draw(rng, 100, 1.0)
            eval_logits, eval_gold = draw(rng, 3000, sharpness)
            temps = rules(trusted_logits, trusted_labels, eval_logits, eval_gold)
            for name in found:
                found[name].append((temps[name], metrics.ece(top(eval_logits, temps[name]), eval_gold)))
        cells = [
            f"{name} median T {np.median([t for t, _ in v]):.2f}, mean ECE {np.mean([e for _, e in v]):.3f}"
            for name, v in found.items()
        ]
        print(f"planted, evaluation sharpness {sharpness}, {draws} draws: " + " | ".join(cells))


def main(paths: list[str]) -> None:
    if not paths:
        planted()
        return
    rows = []
    for path in paths:
        a = np.load(path)
        if "trusted_logits_served" not in a:
            continue
        eval_logits, eval_gold = a["valid_logits_served"].astype(np.float64), a["valid_gold"]
        temps = rules(
            a["trusted_logits_served"].astype(np.float64),
            a["trusted_labels"],
            eval_logits,
            eval_gold,
            gold_free_temperature(a),
        )
        row = {"run": path, "valid_accuracy": float((eval_logits.argmax(1) == eval_gold).mean())}
        for name, t in temps.items():
            probs = top(eval_logits, t)
            row[name] = {
                "T": round(t, 3),
                "ece": round(metrics.ece(probs, eval_gold), 4),
                "nll": round(metrics.nll(probs, eval_gold), 4),
                "confidence": round(float(probs.max(1).mean()), 4),
            }
        rows.append(row)
        print(json.dumps(row))
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)] if rows else []
    print(f"\n{'rule':10s} {'mean valid ECE':>15s} {'mean valid NLL':>15s}")
    for name in names:
        print(
            f"{name:10s} {np.mean([r[name]['ece'] for r in rows]):15.4f} "
            f"{np.mean([r[name]['nll'] for r in rows]):15.4f}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--redraw"]:
        main_redraw(sys.argv[2:])
    else:
        main(sys.argv[1:])
