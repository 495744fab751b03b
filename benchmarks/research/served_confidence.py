"""Where a kept served model's gold-free confidence should go when its estimate may be wrong (issue 13).

    python -m benchmarks.research.served_confidence <run JSON ...>

Without trusted rows the served (distilled) model's temperature is fitted on the validation texts to the
refined posteriors' expectation of its accuracy (`served.ServedClassifier.distill`). That reading is low
on trec at 20-30 % noise, leaving the model under-confident, and high on the grouped and two-class semeval
sets (docs/method.md, thirty-ninth and fortieth rounds). Per run whose served model is delivered, the validation ECE (validation gold only; test is not read) with the
served model's mean top-label confidence matched (`_temperature_for`) to each gold-free target:

- `distilled`: the rule now, the temperature the distillation fits to the refined posteriors;
- `untempered`: as the distillation left it (T = 1);
- `capped`: the plain model's rule (`stages/select._confidence_target`) against the served estimate the
  report gives (posterior point, interval spanning the moments'): flattened no further than the interval's
  top, raised to the point where below it;
- `nearest_end`: the untempered confidence where it lies inside that interval, else the nearer end;
- `greater`: the greater of the posterior and the moment estimate (the rule without the noise model);
- `moments`: the moment estimate;
- `selfcal`: the refined posteriors' expectation with the validation posteriors sharpened to the
  self-calibrated power (`research.wrong_share`, twenty-first round; no gold read);
- `gold_floor`: NLL-fitted to validation gold, which no run can know.

A second table reads, gold-free, how the carry to the evaluation texts (`estimates.carried_accuracy`, ATC)
moves the served estimate: the served model's mean top-label confidence on the validation and on the
evaluation texts at the distillation's temperature (the evaluation logits recovered from the dump's
`test_probs_served` and the delivered temperature; no test label is read), the ATC estimate carried there
and the difference-of-confidences reading (estimate + evaluation minus validation mean confidence).

Each run JSON names its dump (`--dump-arrays` in its `command`; <dir>/seed<N>.npz).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from benchmarks.research.bound_targets import _dump_path
from benchmarks.research.trusted_temperature import gold_free_temperature
from benchmarks.research.wrong_share import _calibrated, _self_calibrated_power, _sharp
from sidyp_engine import estimates
from sidyp_engine.metrics import ece
from sidyp_engine.stages.select import _confidence_target, _temperature_for, _top_confidence
from sidyp_engine.temperature import fit_temperature_nll

RULES = ("distilled", "untempered", "capped", "nearest_end", "greater", "moments", "selfcal", "gold_floor")


def _ece_at_temperature(logits: np.ndarray, tau: float, gold: np.ndarray) -> float:
    return ece(torch.softmax(torch.from_numpy(logits).double() / tau, 1).numpy(), gold)


def row(path: str) -> dict | None:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    run = doc["runs"][0]
    est = run["estimates"]
    if est.get("kept_model") != "served" or run.get("trusted_rows"):
        return None
    a = np.load(_dump_path(doc, run["seed"]))
    logits, gold = a["valid_logits_served"], a["valid_gold"]
    served = estimates.Estimate(**est["rows"]["served"]["estimated"])
    moments = est["moment_rows"]["served"]["estimated"]["accuracy"]
    conf = float(_top_confidence(logits, 1.0).mean())
    distilled = gold_free_temperature(a)
    temperatures = {"distilled": distilled, "untempered": 1.0}
    targets = {
        "capped": _confidence_target(logits, served).accuracy,
        "nearest_end": float(np.clip(conf, served.low, served.high)),
        "greater": max(served.accuracy, moments),
        "moments": moments,
        "selfcal": _self_calibrated_estimate(a),
    }
    temperatures |= {name: _temperature_for(logits, target) for name, target in targets.items()}
    temperatures["gold_floor"] = fit_temperature_nll(torch.from_numpy(logits), torch.from_numpy(gold))
    return {
        "run": f"{doc['dataset']}-seed{run['seed']}",
        "valid_accuracy": float((logits.argmax(1) == gold).mean()),
        "confidence": conf,
        "posterior": served.accuracy,
        "interval": [served.low, served.high],
        "moments": moments,
        "expected_gain": est.get("expected_gain"),
        "temperature": {k: round(float(v), 4) for k, v in temperatures.items()},
        "ece": {k: _ece_at_temperature(logits, float(v), gold) for k, v in temperatures.items()},
        "carry": _carry(a, logits, distilled, float(run["served_temperature"]), served, run["seed"]),
    }


def _self_calibrated_estimate(a) -> float:
    """The served model's validation accuracy as the sharpened (self-calibrated power) posteriors expect it."""
    valid = _calibrated(a, "valid_posteriors")
    power = _self_calibrated_power(a, _calibrated(a, "train_refined_posteriors"), a["train_noisy"])
    rows = np.flatnonzero(a["valid_noisy"] >= 0)
    sharp = _sharp(valid[rows], power)
    return float(sharp[np.arange(len(rows)), a["valid_pred_served"][rows]].mean())


def _carry(a, logits: np.ndarray, distilled: float, delivered: float, served, seed: int) -> dict:
    """Gold-free: the served confidences on validation and evaluation texts at the distillation's
    temperature, and what ATC and the difference of confidences make of the served estimate there."""
    evaluation = delivered * np.log(np.clip(a["test_probs_served"], 1e-300, None))
    source, target = _top_confidence(logits, distilled), _top_confidence(evaluation, distilled)
    return {
        "valid_confidence": float(source.mean()),
        "evaluation_confidence": float(target.mean()),
        "atc": estimates.carried_accuracy(source, served, target, seed).accuracy,
        "doc": served.accuracy + float(target.mean() - source.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--jsonl", help="also write one JSON line per run here")
    args = p.parse_args(argv)
    rows = [r for r in (row(path) for path in args.runs) if r is not None]
    head = f"{'run':<44}{'acc':>6}{'conf':>6}{'post':>6}{'low':>6}{'high':>6}{'mom':>6}"
    print(head + "".join(f"{k[:11]:>12}" for k in RULES))
    for r in rows:
        print(
            f"{r['run'][:43]:<44}{r['valid_accuracy']:>6.3f}{r['confidence']:>6.3f}{r['posterior']:>6.3f}"
            f"{r['interval'][0]:>6.3f}{r['interval'][1]:>6.3f}{r['moments']:>6.3f}"
            + "".join(f"{r['ece'][k]:>12.3f}" for k in RULES)
        )
    if rows:
        means = "".join(f"{np.mean([r['ece'][k] for r in rows]):>12.3f}" for k in RULES)
        print(f"{'mean validation ECE over ' + str(len(rows)) + ' runs':<80}" + means)
        worst = "".join(f"{max(r['ece'][k] - r['ece']['distilled'] for r in rows):>12.3f}" for k in RULES)
        print(f"{'worst ECE minus distilled (the rule now)':<80}" + worst)
        print(
            f"\n{'run (carry to the evaluation texts, gold-free)':<44}{'est':>7}{'conf_v':>8}{'conf_e':>8}{'atc':>7}{'doc':>7}"
        )
        for r in rows:
            c = r["carry"]
            print(
                f"{r['run'][:43]:<44}{r['posterior']:>7.3f}{c['valid_confidence']:>8.3f}"
                f"{c['evaluation_confidence']:>8.3f}{c['atc']:>7.3f}{c['doc']:>7.3f}"
            )
    if args.jsonl:
        with open(args.jsonl, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
