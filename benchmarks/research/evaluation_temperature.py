"""Should the served model's gold-free confidence follow the evaluation texts (design data, validation gold)?

    python -m benchmarks.research.evaluation_temperature \
        <data dir>:/work/dumps/<set>/seed0.npz:<benchmark json> ...

Without trusted rows the served model's temperature is matched on the validation texts to a gold-free
estimate of its accuracy there. Where the texts a user evaluates on are easier or harder than the
validation texts, that confidence is off by the difference (trec: 0.60 on validation, 0.74 on test).
Average thresholded confidence (ATC) carries an accuracy from source rows to unlabelled target texts;
gold-free, the source accuracy is the estimate itself. This script plants source / target splits of the
*validation* rows (test is not read) and scores, on the target's gold:

  source      the temperature matched on the source rows to the gold-free estimate there (the rule now);
  atc         the target's mean top confidence matched to the ATC estimate carried from the source;
  halfway     matched to the mean of the ATC estimate and the target's mean top confidence at the source
              temperature (difference of confidences, DoC, which is what `source` amounts to);
  gold_nll    minimum NLL of the target's gold: what no run can know, the floor.

Splits (made without gold): two random halves (no shift; each half is once the target), and the
shorter / longer half of the texts by word count (each once the target). The gold-free estimate on the
source rows is the run's rule for the served model: with the noise model off the greater of the
posterior and the moment estimate, else the posterior estimate (the distillation's target).
The same for the plain model (its confidence follows its moment estimate), as it is delivered where the
gate keeps it. Prints one JSON line per run, model and split.

    python -m benchmarks.research.evaluation_temperature --summary <printed JSONL>

reads those lines back and prints, per model and kind of split (random halves, shorter / longer halves),
the mean target ECE / NLL of each rule and the mean absolute error of the ATC, DoC and halfway estimates.
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import torch

from benchmarks.research.plain_temperature import _matched
from sidyp_engine import estimates
from sidyp_engine.metrics import ece
from sidyp_engine.stages.posterior import unfloored
from sidyp_engine.temperature import fit_temperature_nll


def _texts(data: str) -> list[str]:
    with open(os.path.join(data, "valid.csv"), newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def _splits(texts: list[str], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n = len(texts)
    order = np.random.default_rng(seed).permutation(n)
    a, b = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    words = np.array([len(t.split()) for t in texts])
    by_length = np.argsort(words, kind="stable")
    short, long = np.sort(by_length[: n // 2]), np.sort(by_length[n // 2 :])
    return {
        "random_a_to_b": (a, b),
        "random_b_to_a": (b, a),
        "short_to_long": (short, long),
        "long_to_short": (long, short),
    }


def _source_estimate(d, run, logits, source, noise_model_on: bool, seed: int, model: str) -> float:
    pred = logits[source].argmax(1).numpy()
    noisy = d["valid_noisy"][source]
    labelled = noisy >= 0
    t = d["selection_noise_matrix"]
    moments = estimates.predictor_accuracy(pred[labelled], noisy[labelled], t, seed).accuracy
    if model != "served":  # the other models' confidence follows their moment estimate
        return moments
    reference = unfloored(
        torch.from_numpy(d["valid_posteriors"]).float(),
        torch.from_numpy(d["class_floor_weights"]).float(),
        float(d["floor_temperature"]),
    ).numpy()[source]
    posterior = estimates.reference_accuracy(pred[labelled], reference[labelled], seed).accuracy
    if noise_model_on:
        return posterior
    return max(posterior, moments) if np.isfinite(moments) else posterior


def _scored(logits: torch.Tensor, gold: np.ndarray, t: float) -> dict:
    """ECE, NLL and mean top confidence minus accuracy of the target rows at temperature t."""
    probs = torch.softmax(logits / t, -1)
    nll = float(torch.nn.functional.cross_entropy(logits / t, torch.from_numpy(gold)))
    gap = float(probs.max(1).values.mean()) - float((probs.argmax(1).numpy() == gold).mean())
    return {
        "T": round(t, 3),
        "target_ece": round(ece(probs.numpy(), gold), 4),
        "target_nll": round(nll, 4),
        "target_gap": round(gap, 4),
    }


def run_rows(data: str, dump: str, result_json: str, model: str = "served", seed: int = 0) -> list[dict]:
    d = np.load(dump)
    with open(result_json) as f:
        run = json.load(f)["runs"][0]
    logits = torch.from_numpy(d[f"valid_logits_{model}"]).double()
    gold = d["valid_gold"]
    noise_model_on = bool(run["diagnostics"]["noise_model"])
    rows = []
    for name, (source, target) in _splits(_texts(data), seed).items():
        a_source = _source_estimate(d, run, logits, source, noise_model_on, seed, model)
        t_source = _matched(logits[source], a_source)
        conf = lambda idx, t: torch.softmax(logits[idx] / t, -1).max(1).values.numpy()  # noqa: E731
        threshold = float(np.quantile(conf(source, t_source), 1.0 - a_source))
        a_target = float((conf(target, t_source) > threshold).mean())
        a_doc = float(conf(target, t_source).mean())
        rules = {
            "source": t_source,
            "atc": _matched(logits[target], a_target),
            "halfway": _matched(logits[target], (a_target + a_doc) / 2),
            "gold_nll": fit_temperature_nll(logits[target], torch.from_numpy(gold[target])),
        }
        measured = float((logits[target].argmax(1).numpy() == gold[target]).mean())
        rows.append(
            {
                "run": result_json,
                "model": model,
                "split": name,
                "noise_model_on": noise_model_on,
                "source_estimate": round(a_source, 4),
                "source_measured": round(float((logits[source].argmax(1).numpy() == gold[source]).mean()), 4),
                "target_atc_estimate": round(a_target, 4),
                "target_doc_estimate": round(a_doc, 4),
                "target_measured": round(measured, 4),
                "rules": {k: _scored(logits[target], gold[target], t) for k, t in rules.items()},
            }
        )
    return rows


def summary(path: str) -> list[str]:
    """Per (model, kind of split): mean target ECE / NLL of each rule, mean error of each carried estimate."""
    groups: dict[tuple[str, str], list[dict]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            kind = "length" if row["split"] in ("short_to_long", "long_to_short") else "random"
            groups.setdefault((row["model"], kind), []).append(row)
    lines = []
    for (model, kind), rows in sorted(groups.items()):
        rules = " | ".join(
            f"{rule} {np.mean([r['rules'][rule]['target_ece'] for r in rows]):.3f}"
            f"/{np.mean([r['rules'][rule]['target_nll'] for r in rows]):.3f}"
            for rule in ("source", "atc", "halfway", "gold_nll")
        )
        measured = np.array([r["target_measured"] for r in rows])
        atc = np.array([r["target_atc_estimate"] for r in rows])
        doc = np.array([r["target_doc_estimate"] for r in rows])
        errors = (
            f"estimate error atc {np.mean(abs(atc - measured)):.3f} doc {np.mean(abs(doc - measured)):.3f} "
            f"halfway {np.mean(abs((atc + doc) / 2 - measured)):.3f}"
        )
        lines.append(f"{model} {kind} ({len(rows)} splits): {rules} | {errors}")
    return lines


def main(argv: list[str]) -> int:
    if argv[:1] == ["--summary"]:
        print("\n".join(summary(argv[1])))
        return 0
    for triple in argv:
        data, dump, result_json = triple.split(":", 2)
        for model in ("served", "plain_model"):
            for row in run_rows(data, dump, result_json, model):
                print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
