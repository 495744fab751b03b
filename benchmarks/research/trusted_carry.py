"""With trusted rows, which estimate of a candidate's accuracy on other texts errs least? (issue 13, part 3)

    python -m benchmarks.research.trusted_carry /work/dumps/r43n/*/seed*.npz [--data-root /work/shared/data \
        --data-root /work/sidyp-dev] [--score-test] [--out F.json]

Before the forty-second round the select stage carried every model's accuracy from the trusted rows to the
evaluation texts by average thresholded confidence (ATC: `estimates.transferred_accuracy`). ATC reads only
the order of the model's confidences, and follows a drop in difficulty that the confidence's value misses
(tenth round). Where the order says little about being right (a model that reproduces its noisy labels: its
confidence is the labeller's certainty), the threshold is a quantile of the trusted rows' confidences and
its sampling error is carried whole (docs/method.md, "Forty-second round", for the figures). Estimators
compared, all from the trusted rows and unlabelled target texts:

  trusted     the accuracy on the trusted rows;
  atc         the engine's rule;
  atc_ranked  atc where the confidence ranks the trusted rows' rightness (Mann-Whitney z >= estimates.RANK_Z), else
              trusted;
  atc_diff    trusted + atc on the target - atc on the validation texts (the unlabelled texts drawn as
              the trusted rows were): the shift alone is carried, not the threshold's own noise;
  carried     the trusted accuracy taken as the validation texts' and carried from them by their
              confidences (`estimates.carried_accuracy`): the threshold is a quantile of the validation
              texts' confidences, not of the trusted rows';
  served_shift  trusted + the shift the served model's ATC reads from the validation texts to the target
              (forty-fourth round): the served model is the refined posteriors' distillation and its
              confidence orders its rightness, so its shift may stand for a candidate whose own does not;
  ranked_served atc_ranked with served_shift in place of trusted where the confidence does not rank;
  adopted     what the select stage now reports (`stages/select.py: _transferred`): atc for the served
              model, atc_diff for the models fitted to the noisy labels (the plain model, the probe),
              atc_ranked for the refined posteriors (`estimates.ranked_transfer`, forty-third round).

Candidates: the served model, the plain model, the probe, and (dumps from 7552ff4 on) the refined
posteriors read without a label, as on an evaluation text (forty-third round).

With `--data-root`, regression estimators (the forty-third round; prediction-powered inference, Angelopoulos
et al. 2023, in its regression form): a least-squares fit over the trusted rows of being right on surrogates
every text has, averaged over the target texts. The trusted rows' mean error of the fit is zero, so each is
the trusted accuracy corrected by how far the targets' surrogates sit from the trusted rows'; the
unlabelled texts drawn as the trusted rows were take out part of the trusted draw's luck:

  reg_conf         on the tempered top confidence, averaged over the target texts;
  reg_both         on the confidence and whether the prediction agrees with the text's noisy label (targets
                   with noisy labels only: not the evaluation texts);
  reg_conf_shift,  either fit averaged over the validation texts, plus the shift ATC reads from them to the
  reg_both_shift   target (as atc_diff).

Targets: the validation texts (no shift), and three planted shifts, each splitting them in two without gold:
by whether the LLM label agrees with the plain classifier (the tenth round's split: it follows the plain
model's own errors), at the median text length (`--data-root` holds the sets' valid.csv, in the dumps'
row order), and (forty-fourth round) by the LLM label's class: the rows given the labeller's most used
classes, taken in order until they hold half the rows, against the rest (a shift in the class mix, built
from no model); design, validation gold. With `--score-test` the test texts (for the record, scored once).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from benchmarks.research.script_io import dump_key
from sidyp_engine import estimates
from sidyp_engine.stages.select import _top_confidence
from sidyp_engine.temperature import fit_temperature_nll

CANDIDATES = ("served", "plain_model", "probe", "refined")
REGRESSIONS = ("reg_conf", "reg_both", "reg_conf_shift", "reg_both_shift")


def regression_estimate(src_x: np.ndarray, right: np.ndarray, tgt_x: np.ndarray) -> float:
    """Mean over the targets of a least-squares fit (with intercept) of `right` on the source surrogates."""
    src_x, tgt_x = np.asarray(src_x, np.float64).reshape(len(src_x), -1), np.asarray(tgt_x, np.float64)
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones(len(src_x)), src_x]), right.astype(np.float64))
    fitted = np.column_stack([np.ones(len(tgt_x)), tgt_x.reshape(len(tgt_x), -1)]) @ coef
    return float(np.clip(fitted.mean(), 0.0, 1.0))


def regressions(src, right, tgt, ref, shift: float) -> dict[str, float]:
    """The regression columns; `src`/`tgt`/`ref` are (confidence, agreement or None) pairs."""
    (sc, sa), (tc, ta), (rc, ra) = src, tgt, ref
    out = {"reg_conf": regression_estimate(sc, right, tc)}
    out["reg_conf_shift"] = float(np.clip(regression_estimate(sc, right, rc) + shift, 0, 1))
    if sa is not None:
        both = np.column_stack([sc, sa])
        if ta is not None:
            out["reg_both"] = regression_estimate(both, right, np.column_stack([tc, ta]))
        out["reg_both_shift"] = float(
            np.clip(regression_estimate(both, right, np.column_stack([rc, ra])) + shift, 0, 1)
        )
    return out


def atc_shift(src_conf, right, tgt_conf, ref_conf) -> float:
    """What ATC, thresholded on the trusted rows, reads between the reference texts and the target."""
    return estimates.thresholded_confidence(src_conf, right, tgt_conf) - estimates.thresholded_confidence(
        src_conf, right, ref_conf
    )


def estimators(src_conf, right, tgt_conf, ref_conf, candidate: str, served_shift: float) -> dict[str, float]:
    trusted = float(right.mean())
    atc = estimates.thresholded_confidence(src_conf, right, tgt_conf)
    z = estimates.rank_z(src_conf, right)
    ranked = atc if z >= estimates.RANK_Z else trusted
    diff = trusted + atc_shift(src_conf, right, tgt_conf, ref_conf)
    by_served = float(np.clip(trusted + served_shift, 0.0, 1.0))
    return {
        "trusted": trusted,
        "atc": atc,
        "atc_ranked": ranked,
        "atc_diff": diff,
        "carried": estimates.thresholded_at(ref_conf, trusted, tgt_conf),
        "served_shift": by_served,
        "ranked_served": atc if z >= estimates.RANK_Z else by_served,
        "rank_z": z,
        "adopted": {"plain_model": diff, "probe": diff, "refined": ranked}.get(candidate, atc),
    }


def label_class_split(noisy: np.ndarray) -> np.ndarray:
    """Rows given the labeller's most used classes, taken in order until they hold half the labelled rows."""
    labelled = noisy[noisy >= 0]
    classes, counts = np.unique(labelled, return_counts=True)
    order = classes[np.argsort(-counts, kind="stable")]
    cumulative = np.cumsum(np.sort(counts)[::-1])
    frequent = order[: int(np.searchsorted(cumulative, len(labelled) / 2)) + 1]
    return np.isin(noisy, frequent)


def set_dir(data_roots: list[str], name: str) -> str:
    """The directory of a dump's set (<set>[-trusted<N>]) under the first root that holds it."""
    base = name.split("-trusted")[0]
    for root in data_roots:
        if os.path.isdir(os.path.join(root, base)):
            return os.path.join(root, base)
    raise SystemExit(f"no directory {base} under {', '.join(data_roots)}")


def text_lengths(data_root: str) -> np.ndarray:
    """Character lengths of a set's validation texts (`data_root`: the set's directory)."""
    from benchmarks.quality import read_split

    return np.array([len(t) for t in read_split(os.path.join(data_root, "valid.csv"))["texts"]])


def trusted_noisy(data_root: str, name: str, seed: int, a) -> np.ndarray:
    """The trusted rows' noisy label ids (-1 = none), re-drawn as `benchmarks.quality --trusted` drew them:
    the dump keeps their trusted labels only. Checked against the dump's training labels."""
    from benchmarks.quality import read_split
    from benchmarks.quality_estimates import draw_trusted

    train = read_split(os.path.join(data_root, "train.csv"))
    drawn = draw_trusted(train, len(a["trusted_labels"]), seed)
    rows = [i for i, t in enumerate(drawn) if t is not None]
    ids = a["train_noisy"][: len(train["texts"])]
    index = {n: int(i) for n, i in zip(train["noisy"], ids, strict=True) if n is not None}
    gold = np.array([index.get(train["gold"][i], -2) for i in rows])
    if int(a["trusted_n_valid"]) or not np.array_equal(gold, a["trusted_labels"]):
        raise SystemExit(f"{name} seed {seed}: the re-drawn trusted rows are not the dump's")
    return np.array([index.get(train["noisy"][i], -1) for i in rows])


def readings(a, cand: str, labels: np.ndarray) -> dict | None:
    """A candidate's top-label confidence and prediction on the trusted rows, the validation texts and (where
    dumped) the test texts, as the select stage reads them: a model at the temperature the trusted rows fit
    (minimum NLL), the refined posteriors read without a label, calibrated (the trusted rows by the re-fits
    that never read their trusted label; dumps from 7552ff4 on)."""
    if cand == "refined":
        if "trusted_refined_unlabelled_confidence" not in a.files:
            return None
        test = a["test_probs_refined"] if "test_probs_refined" in a.files else None
        return {
            "src": (a["trusted_refined_unlabelled_confidence"], a["trusted_refined_unlabelled_labels"]),
            "valid": (a["valid_refined_unlabelled_confidence"], a["valid_pred_refined"]),
            "test": None if test is None else (a["extra_refined_confidence"], test.argmax(1)),
        }
    if f"trusted_logits_{cand}" not in a.files:
        return None
    src, valid = a[f"trusted_logits_{cand}"], a[f"valid_logits_{cand}"]
    t = fit_temperature_nll(torch.from_numpy(src), torch.from_numpy(labels))
    # the test probabilities are at the temperature the select stage fitted to the trusted rows
    test = a[f"test_probs_{cand}"] if f"test_probs_{cand}" in a.files else None
    return {
        "src": (_top_confidence(src, t), src.argmax(1)),
        "valid": (_top_confidence(valid, t), valid.argmax(1)),
        "test": None if test is None else (test.max(1), test.argmax(1)),
    }


def run_rows(path: str, score_test: bool, data_roots: list[str] | None = None) -> list[dict]:
    a = np.load(path)
    name, seed = dump_key(path)
    data_root = set_dir(data_roots, name) if data_roots else None
    labels = a["trusted_labels"]
    src_noisy = trusted_noisy(data_root, name, seed, a) if data_root else None
    gold = a["valid_gold"]
    known = gold >= 0
    agree = a["valid_noisy"] == a["valid_pred_plain"]
    frequent = label_class_split(a["valid_noisy"])
    targets = {
        "valid": known,
        "valid_agree": known & agree,
        "valid_disagree": known & ~agree,
        "valid_frequent": known & frequent,
        "valid_rare": known & ~frequent & (a["valid_noisy"] >= 0),
    }
    if data_root:
        lengths = text_lengths(data_root)
        long = lengths > np.median(lengths)
        targets |= {"valid_short": known & ~long, "valid_long": known & long}
    served = readings(a, "served", labels)
    served_right = served["src"][1] == labels

    def served_shift(target_conf) -> float:
        return atc_shift(served["src"][0], served_right, target_conf, served["valid"][0])

    rows = []
    for cand in CANDIDATES:
        read = readings(a, cand, labels)
        if read is None:
            continue
        (src_conf, src_pred), (valid_conf, valid_pred) = read["src"], read["valid"]
        right, valid_right = src_pred == labels, valid_pred == gold
        valid_agree = valid_pred == a["valid_noisy"]
        src_agree = src_pred == src_noisy if src_noisy is not None else None
        for target, keep in targets.items():
            found = estimators(
                src_conf, right, valid_conf[keep], valid_conf, cand, served_shift(served["valid"][0][keep])
            )
            if src_noisy is not None:
                found |= regressions(
                    (src_conf, src_agree),
                    right,
                    (valid_conf[keep], valid_agree[keep]),
                    (valid_conf, valid_agree),
                    found["atc_diff"] - found["trusted"],
                )
            rows.append(
                _row(name, seed, cand, target, found, float(valid_right[keep].mean()), int(keep.sum()))
            )
        if score_test and read["test"] is not None:
            test_conf, test_pred = read["test"]
            shift = served_shift(served["test"][0]) if served["test"] is not None else float("nan")
            found = estimators(src_conf, right, test_conf, valid_conf, cand, shift)
            if src_noisy is not None:
                found |= regressions(
                    (src_conf, src_agree),
                    right,
                    (test_conf, None),
                    (valid_conf, valid_agree),
                    found["atc_diff"] - found["trusted"],
                )
            measured = float((test_pred == a["test_gold"]).mean())
            rows.append(_row(name, seed, cand, "test", found, measured, len(test_pred)))
    return rows


def _row(name, seed, cand, target, found, measured, n) -> dict:
    return {
        "set": name,
        "seed": seed,
        "candidate": cand,
        "target": target,
        "rows": n,
        "measured": round(measured, 4),
        **{k: round(v, 4) for k, v in found.items()},
    }


def errors(rows: list[dict]) -> dict:
    """Mean absolute error in points of each estimator per target group (the test texts apart)."""
    names = (
        "trusted", "atc", "atc_ranked", "atc_diff", "carried", "served_shift", "ranked_served", "adopted",
        *REGRESSIONS,
    )  # fmt: skip
    groups = {
        "valid": [r for r in rows if r["target"] == "valid"],
        "planted_shift_agreement": [r for r in rows if r["target"] in ("valid_agree", "valid_disagree")],
        "planted_shift_length": [r for r in rows if r["target"] in ("valid_short", "valid_long")],
        "planted_shift_label_class": [r for r in rows if r["target"] in ("valid_frequent", "valid_rare")],
        "test": [r for r in rows if r["target"] == "test"],
    }
    return {
        g: {
            n: round(100 * float(np.mean([abs(r[n] - r["measured"]) for r in rs])), 2)
            for n in names
            if all(n in r for r in rs)
        }
        | {"cases": len(rs)}
        for g, rs in groups.items()
        if rs
    }


def summary(rows: list[dict]) -> dict:
    """`errors` pooled over the candidates and, as the decision rule reads them, per candidate."""
    by_candidate = {c: errors([r for r in rows if r["candidate"] == c]) for c in CANDIDATES}
    return errors(rows) | {"by_candidate": {c: e for c, e in by_candidate.items() if e}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", nargs="+")
    p.add_argument("--score-test", action="store_true")
    p.add_argument(
        "--data-root",
        action="append",
        help="a directory of sets, repeatable (adds the text-length split and the regression estimators)",
    )
    p.add_argument("--out")
    args = p.parse_args(argv)
    rows = [r for path in sorted(args.dumps) for r in run_rows(path, args.score_test, args.data_root)]
    for r in rows:
        print(
            f"{r['set'][:44]:<44} s{r['seed']} {r['candidate']:<12}{r['target']:<15}n={r['rows']:<4} "
            f"measured {r['measured']:.3f}  trusted {r['trusted']:.3f}  atc {r['atc']:.3f}  "
            f"ranked {r['atc_ranked']:.3f}  diff {r['atc_diff']:.3f}  carried {r['carried']:.3f}  "
            f"served_shift {r['served_shift']:.3f}  ranked_served {r['ranked_served']:.3f}  z {r['rank_z']:.1f}"
            + "".join(f"  {n} {r[n]:.3f}" for n in REGRESSIONS if n in r)
        )
    table = summary(rows)
    print(json.dumps(table, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "mean_absolute_error_points": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
