"""Without trusted rows, where should a plain model's confidence go, and which noise matrix tells? (issue 13)

    python -m benchmarks.research.plain_confidence_rules /work/dumps/*/seed*.npz [--out rows.jsonl]

Reads dumps of `benchmarks.quality --dump-arrays` (validation gold only; test is not read). Two questions:

1. The plain model's temperature (`stages/select._set_temperatures`, gold-free). Rules, scored by the
   validation ECE against gold: `untemp` (as fine-tuning left it: the noisy baseline), `follow` (mean top
   confidence = its moment estimate's point, the rule before the eighteenth round), `nearest` (its own
   confidence moved to the nearer end of the moment estimate's interval when outside it, else left:
   `_confidence_target` before its bound exception), `capped` (flattened no further than the interval's top,
   sharpened to the point), `adopted` (`capped`, a "bound" estimate followed to its point:
   `_confidence_target`), and two tried in the twenty-sixth round, not adopted: `within` (left as trained
   inside the interval, flattened to its top from above, sharpened to the point only from below its low
   end) and `agree` (`adopted`, but sharpened no further than the model's agreement with its noisy
   validation labels), each following a "bound" to its point; `floor` (NLL-fitted to the validation gold,
   which no run can know).
2. The anchor T (`estimates.anchor_noise_matrix`) assumes the stage-1 ensemble's P(ỹ | x) is calibrated.
   Its target is the noisy label, so one temperature fitted by the validation rows' noisy-label NLL
   calibrates it without gold. `current` (raw) against `calibrated`: the wrong-label share
   1 - label_accuracy against the validation rows' true share, the mean absolute error of every
   candidate's moment estimate against its validation accuracy, and the `follow` rule's ECE under each T.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from sidyp_engine import estimates
from sidyp_engine.metrics import ece
from sidyp_engine.stages.select import _temperature_for
from sidyp_engine.temperature import fit_temperature_nll

CANDIDATES = ("plain", "refined", "served", "plain_model", "probe")


def _log(p: np.ndarray) -> torch.Tensor:
    return torch.log(torch.from_numpy(np.asarray(p, np.float64)).clamp_min(1e-12))


def _tempered(p: np.ndarray, temperature: float) -> np.ndarray:
    return torch.softmax(_log(p) / temperature, dim=1).numpy()


def noise_matrices(a) -> dict[str, tuple[np.ndarray, float]]:
    """Each variant's T and the temperature it applied to the ensemble's probabilities."""
    valid, noisy = a["valid_noisy_posteriors"], a["valid_noisy"]
    extra = a["extra_stage1_ensemble"] if "extra_stage1_ensemble" in a.files else valid[:0]
    held_out = np.concatenate([valid, extra])
    temperature = fit_temperature_nll(_log(valid), torch.from_numpy(noisy))
    return {
        "current": (estimates.anchor_noise_matrix(held_out), 1.0),
        "calibrated": (estimates.anchor_noise_matrix(_tempered(held_out, temperature)), temperature),
    }


def _ece_at(logits: np.ndarray, accuracy: float, labelled, gold) -> float:
    """Validation ECE with the mean top confidence matched to `accuracy` (`_temperature_for`)."""
    tau = _temperature_for(logits, accuracy)
    p = torch.softmax(torch.from_numpy(logits).double() / tau, 1).numpy()
    return round(ece(p[labelled], gold[labelled]), 4)


def row(path: str) -> dict:
    a = np.load(path)
    noisy, gold = a["valid_noisy"], a["valid_gold"]
    labelled = (noisy >= 0) & (gold >= 0) & (gold < a["valid_noisy_posteriors"].shape[1])
    out = {
        "run": f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)[:-4]}",
        "has_extra": "extra_stage1_ensemble" in a.files,
        "true_wrong_share": round(float((noisy[labelled] != gold[labelled]).mean()), 4),
    }
    logits_plain = a["valid_logits_plain_model"] if "valid_logits_plain_model" in a.files else None
    if logits_plain is not None:
        p = torch.softmax(torch.from_numpy(logits_plain).double(), 1).numpy()
        out["plain_model_ece_untempered"] = round(ece(p[labelled], gold[labelled]), 4)
        floor = fit_temperature_nll(
            torch.from_numpy(logits_plain)[labelled], torch.from_numpy(gold[labelled])
        )
        p = torch.softmax(torch.from_numpy(logits_plain).double() / floor, 1).numpy()
        out["plain_model_ece_gold_floor"] = round(ece(p[labelled], gold[labelled]), 4)
        out["plain_model_valid_accuracy"] = round(float((p.argmax(1) == gold)[labelled].mean()), 4)
    for name, (t, temperature) in noise_matrices(a).items():
        r = {"temperature": round(float(temperature), 3), "diagonal_mean": round(float(np.diag(t).mean()), 3)}
        r["wrong_share"] = round(1 - estimates.label_accuracy(noisy, t).accuracy, 4)
        errors = {}
        for cand in CANDIDATES:
            key = f"valid_pred_{cand}"
            if key not in a.files:
                continue
            pred = a[key]
            est = estimates.predictor_accuracy(pred[labelled], noisy[labelled], t).accuracy
            errors[cand] = round(est - float((pred[labelled] == gold[labelled]).mean()), 4)
        r["accuracy_errors"] = errors
        if logits_plain is not None and "plain_model" in errors:
            est = estimates.predictor_accuracy(a["valid_pred_plain_model"], noisy, t)
            r["plain_model_estimate"] = est.as_dict()
            r["plain_model_ece_following"] = _ece_at(logits_plain, est.accuracy, labelled, gold)
            # the least change the estimate asks: the confidence moved to the nearest end of its interval
            # when it lies outside it, else left as fine-tuning made it
            conf = float(torch.softmax(torch.from_numpy(logits_plain).double(), 1).max(1).values.mean())
            nearest = min(max(conf, est.low), est.high)
            r["plain_model_confidence_untempered"] = round(conf, 4)
            r["plain_model_ece_nearest"] = _ece_at(logits_plain, nearest, labelled, gold)
            # flattened no further than the interval's top, sharpened to the point
            capped = min(conf, est.high) if conf > est.accuracy else est.accuracy
            r["plain_model_ece_capped"] = _ece_at(logits_plain, capped, labelled, gold)
            # the rule adopted (`_confidence_target`): capped, but a "bound" estimate followed to its point
            adopted = est.accuracy if est.method == "bound" else capped
            r["plain_model_ece_adopted"] = _ece_at(logits_plain, adopted, labelled, gold)
            # left as trained anywhere inside the interval, flattened to its top from above it, sharpened to
            # the point only from below it (a "bound" followed to its point): tried, not adopted (26th round)
            within = est.high if conf > est.high else (est.accuracy if conf < est.low else conf)
            within = est.accuracy if est.method == "bound" else within
            r["plain_model_ece_within"] = _ece_at(logits_plain, within, labelled, gold)
            # sharpened no further than its agreement with its noisy validation labels (gold-free: a model less
            # confident than that is under-confident by its own labels), nor beyond the point; else `adopted`
            given = noisy >= 0
            agreement = float((logits_plain.argmax(1) == noisy)[given].mean())
            r["plain_model_agreement"] = round(agreement, 4)
            agree = min(est.accuracy, max(conf, agreement)) if conf < est.accuracy else capped
            agree = est.accuracy if est.method == "bound" else agree
            r["plain_model_ece_agree"] = _ece_at(logits_plain, agree, labelled, gold)
            # the accuracy the report then gives the plain model (its confidence's target), against validation
            for rule, figure in (("adopted", adopted), ("within", within), ("agree", agree)):
                r[f"plain_model_figure_error_{rule}"] = round(figure - out["plain_model_valid_accuracy"], 4)
        out[name] = r
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dumps", nargs="+")
    p.add_argument("--out", default=None, help="write the JSON lines here")
    args = p.parse_args(argv)
    rows = [row(path) for path in args.dumps]
    variants = ("current", "calibrated")
    print(
        f"{'run':<44}{'true':>6}"
        + "".join(f"{v[:5] + ' share':>12}{'acc MAE':>9}{'ECE':>7}" for v in variants)
    )
    for r in rows:
        line = f"{r['run'][:43]:<44}{r['true_wrong_share']:>6.3f}"
        for v in variants:
            errs = list(r[v]["accuracy_errors"].values())
            mae = np.mean(np.abs(errs)) if errs else float("nan")
            line += f"{r[v]['wrong_share']:>12.3f}{mae:>9.3f}{r[v].get('plain_model_ece_following', float('nan')):>7.3f}"
        print(line + f"   T={r['calibrated']['temperature']}")
    rules = ("untempered", "following", "nearest", "capped", "adopted", "within", "agree", "gold_floor")
    print(
        f"{'run':<44}{'acc':>6}{'conf':>6}{'agree':>6}{'est':>6}{'low':>6}{'high':>6}"
        + "".join(f"{k[:8]:>9}" for k in rules)
    )
    table = [r for r in rows if "plain_model_estimate" in r["current"]]
    for r in table:
        c, e = r["current"], r["current"]["plain_model_estimate"]
        eces = {
            **{k: c[f"plain_model_ece_{k}"] for k in rules[1:7]},
            "untempered": r["plain_model_ece_untempered"],
        }
        eces["gold_floor"] = r["plain_model_ece_gold_floor"]
        r["plain_model_eces"] = eces
        print(
            f"{r['run'][:43]:<44}{r['plain_model_valid_accuracy']:>6.3f}{c['plain_model_confidence_untempered']:>6.3f}"
            f"{c['plain_model_agreement']:>6.3f}"
            f"{e['accuracy']:>6.3f}{e['low']:>6.3f}{e['high']:>6.3f}"
            + "".join(f"{eces[k]:>9.3f}" for k in rules)
            + f"  {e['method']}"
        )
    if table:
        means = "  ".join(f"{k} {np.mean([r['plain_model_eces'][k] for r in table]):.3f}" for k in rules)
        print(f"mean validation ECE of the plain model over {len(table)} runs: {means}")
        errors = "  ".join(
            f"{k} {np.mean([abs(r['current'][f'plain_model_figure_error_{k}']) for r in table]):.3f}"
            for k in ("adopted", "within", "agree")
        )
        print(f"mean error of the plain model's figure against its validation accuracy: {errors}")
    for v in variants:
        share = np.mean([abs(r[v]["wrong_share"] - r["true_wrong_share"]) for r in rows])
        acc = np.mean([abs(e) for r in rows for e in r[v]["accuracy_errors"].values()])
        ece_ = np.nanmean([r[v].get("plain_model_ece_following", np.nan) for r in rows])
        print(f"{v}: wrong-share MAE {share:.3f}, accuracy MAE {acc:.3f}, plain-model valid ECE {ece_:.3f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
