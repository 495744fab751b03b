"""Where a kept plain model's confidence should go when its moment estimate is only a `bound` (issue 13).

    python -m benchmarks.research.bound_targets [--held] <run JSON ...>

A `bound` (near-singular T: `estimates._bound`) says the accuracy lies in agreement +- rho; until the
thirty-seventh round `stages/select._confidence_target` followed the point inside it (docs/method.md,
"Thirty-seventh round", for what that did). Per run whose plain model's moment estimate is a `bound` (or
held from one: its interval all of [0, 1]), the validation ECE (validation gold only; test is not read)
with the model's mean top-label confidence matched (`_temperature_for`) to each gold-free target:

- `before`: the rule before the thirty-seventh round (a bound followed to its point; a held estimate, whose
  interval keeps the bound's top of 1, leaves a confidence above its point as trained);
- `adopted`: `stages/select._confidence_target` now: the agreement (below), no higher than a held point; a
  held estimate with an informative interval followed to its point (thirty-eighth round), so `before` is
  the thirty-seventh round's rule on such runs;
- `point`: the moment estimate's point;
- `untempered`: as fine-tuning left it (the noisy baseline);
- `posterior`: the estimate the report gives the plain model (the refined posteriors' expectation of its
  accuracy, `estimates.reference_accuracy`, spanned with the moments: `rows.plain_model.estimated`);
- `agreement`: the model's agreement with its noisy validation labels;
- `agree_floor`: the point, raised to the model's agreement with its noisy validation labels;
- `flatten_only`: the point where it is below the model's confidence, else left as trained;
- `mean`: the mean of the point and the posterior estimate;
- `gold_floor`: NLL-fitted to validation gold, which no run can know.

Each run JSON names its dump (`--dump-arrays` in its `command`; <dir>/seed<N>.npz).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

import numpy as np
import torch

from sidyp_engine import estimates
from sidyp_engine.metrics import ece
from sidyp_engine.stages.select import (
    _confidence_target,
    _label_agreement,
    _locates_nothing,
    _temperature_for,
)
from sidyp_engine.temperature import fit_temperature_nll

RULES = (
    "before",
    "adopted",
    "point",
    "untempered",
    "posterior",
    "agreement",
    "agree_floor",
    "flatten_only",
    "mean",
    "gold_floor",
)


def _dump_path(doc: dict, seed: int) -> str:
    args = shlex.split(doc["command"])
    return os.path.join(args[args.index("--dump-arrays") + 1], f"seed{seed}.npz")


def _ece_at(logits: np.ndarray, accuracy: float, gold: np.ndarray) -> float:
    # unrounded (plain_confidence_rules' rounds to 4 places, which moves a printed third place)
    tau = _temperature_for(logits, accuracy)
    p = torch.softmax(torch.from_numpy(logits).double() / tau, 1).numpy()
    return ece(p, gold)


def row(path: str, held: bool = False) -> dict | None:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    run = doc["runs"][0]
    est = run["estimates"]
    moments = est["moment_rows"]["plain_model"]["estimated"]
    # a bound, or a bound held to the run's wrong-label share (`estimates.held_to_wrong_share` keeps its top)
    wanted = _locates_nothing(estimates.Estimate(**moments)) or (held and moments["method"] == estimates.HELD)
    if est.get("kept_model") != "plain_model" or not wanted:
        return None
    a = np.load(_dump_path(doc, run["seed"]))
    logits, noisy, gold = a["valid_logits_plain_model"], a["valid_noisy"], a["valid_gold"]
    labelled = gold >= 0
    conf = float(torch.softmax(torch.from_numpy(logits).double(), 1).max(1).values.mean())
    agreement = _label_agreement(logits, noisy)
    point = moments["accuracy"]
    posterior = est["rows"]["plain_model"]["estimated"]["accuracy"]
    # the rule before the thirty-seventh round: a bound followed to its point, else flattened no further than
    # the interval's top (a held estimate's top stays the bound's 1) and sharpened to the point
    if moments["method"] == "bound":
        before = point
    else:
        before = min(conf, moments["high"]) if conf > point else point
    adopted = _confidence_target(logits, estimates.Estimate(**moments), agreement=agreement).accuracy
    targets = {
        "before": before,
        "adopted": adopted,
        "point": point,
        "untempered": conf,
        "posterior": posterior,
        "agreement": agreement,
        "agree_floor": max(point, agreement),
        "flatten_only": min(point, conf),
        "mean": (point + posterior) / 2,
    }
    lg, gd = logits[labelled], gold[labelled]
    eces = {name: _ece_at(lg, target, gd) for name, target in targets.items()}
    floor = fit_temperature_nll(torch.from_numpy(lg), torch.from_numpy(gd))
    eces["gold_floor"] = ece(torch.softmax(torch.from_numpy(lg).double() / floor, 1).numpy(), gd)
    return {
        "run": f"{os.path.basename(path)[:-5]}",
        "method": moments["method"],
        "valid_accuracy": float((lg.argmax(1) == gd).mean()),
        "confidence": conf,
        "agreement": agreement,
        "point": point,
        "posterior": posterior,
        "wrong_share_estimate": est["wrong_label_share"]["estimated"]["accuracy"],
        "targets": targets,
        "ece": eces,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument(
        "--held",
        action="store_true",
        help="also runs whose estimate is held with an informative interval (`point`: the held point followed)",
    )
    args = p.parse_args(argv)
    rows = [r for r in (row(path, args.held) for path in args.runs) if r is not None]
    head = f"{'run':<46}{'acc':>6}{'conf':>6}{'agree':>6}{'point':>6}{'post':>6}"
    print(head + "".join(f"{k[:11]:>12}" for k in RULES))
    for r in rows:
        print(
            f"{r['run'][:45]:<46}{r['valid_accuracy']:>6.3f}{r['confidence']:>6.3f}{r['agreement']:>6.3f}"
            f"{r['point']:>6.3f}{r['posterior']:>6.3f}" + "".join(f"{r['ece'][k]:>12.3f}" for k in RULES)
        )
    if rows:
        means = "".join(f"{np.mean([r['ece'][k] for r in rows]):>12.3f}" for k in RULES)
        print(f"{'mean validation ECE over ' + str(len(rows)) + ' runs':<76}" + means)
        worst = "".join(f"{max(r['ece'][k] - r['ece']['untempered'] for r in rows):>12.3f}" for k in RULES)
        print(f"{'worst ECE minus untempered (the baseline)':<76}" + worst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
