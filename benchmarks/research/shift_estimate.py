"""With trusted rows, how well do they predict the served model's accuracy on *other* texts? (issue 13, part 3)

    python -m benchmarks.research.shift_estimate --cache-dir /work/bench-cache-trusted --trusted 100 \
        --run ../shared/data/trec-weak-vote:0 ... [--score-test]

The select stage reports a candidate's accuracy on the trusted rows (drawn from the training texts). Where
the texts a user scores differ from those rows (trec's test split is easier than its training and
validation splits), that number is right for the rows it measured and wrong for the new texts. Three
estimators that read the target texts (unlabelled) are compared with it, all from the trusted rows alone:

  trusted   accuracy on the trusted rows (what the report gives today);
  ac        mean top-label confidence on the target texts, temperature fitted to the trusted rows (NLL);
  doc       trusted accuracy + (ac on the target - ac on the trusted rows) (Guillory et al., 2021);
  atc       the share of target texts above the confidence threshold that the same share of trusted rows
            exceeds as are right (Garg et al., 2022).

Each with a 95 % bootstrap interval over the trusted rows (the temperature refitted per draw). The target is
the validation split (design: its gold is read); `--score-test` adds the test split, for the record only.
The served model is the benchmark's own (`<cache>/<set>-seed<k>/served`, left by the trusted run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from benchmarks.quality import gold_ids, read_split
from benchmarks.quality_estimates import draw_trusted
from sidyp_engine import estimates
from sidyp_engine.temperature import fit_temperature, fit_temperature_nll

BOOTSTRAP_DRAWS = 200


def _confidences(logits: np.ndarray, temperature: float) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double() / temperature, dim=-1).max(dim=-1).values.numpy()


def estimators(src_logits: np.ndarray, src_labels: np.ndarray, tgt_logits: np.ndarray) -> dict[str, float]:
    """Each estimator's accuracy on the target texts, read from labelled source rows and unlabelled targets."""
    t = fit_temperature_nll(torch.from_numpy(src_logits), torch.from_numpy(src_labels))
    src_conf, tgt_conf = _confidences(src_logits, t), _confidences(tgt_logits, t)
    right = src_logits.argmax(1) == src_labels
    accuracy = float(right.mean())
    return {
        "trusted": accuracy,
        "ac": float(tgt_conf.mean()),
        "doc": accuracy + float(tgt_conf.mean() - src_conf.mean()),
        "atc": estimates.thresholded_confidence(src_conf, right, tgt_conf),  # the engine's rule
    }


def with_intervals(src_logits, src_labels, tgt_logits, seed: int) -> dict[str, dict[str, float]]:
    point = estimators(src_logits, src_labels, tgt_logits)
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in point}
    for _ in range(BOOTSTRAP_DRAWS):
        idx = rng.integers(0, len(src_labels), len(src_labels))
        for k, v in estimators(src_logits[idx], src_labels[idx], tgt_logits).items():
            draws[k].append(v)
    return {
        k: {
            "estimate": round(point[k], 4),
            "low": round(float(np.quantile(draws[k], 0.025)), 4),
            "high": round(float(np.quantile(draws[k], 0.975)), 4),
        }
        for k in point
    }


def target_ece(src_logits, src_labels, tgt_logits, gold) -> dict[str, float]:
    """The target's ECE with the temperature fitted to the trusted rows by NLL (the rule on main) and by
    matching their mean top-label confidence to their accuracy (the gold-free rule, with the labels known)."""
    from sidyp_engine.metrics import ece

    src = torch.from_numpy(src_logits).double()
    reference = torch.nn.functional.one_hot(torch.from_numpy(src_labels), src.shape[1]).double()
    temperatures = {
        "nll": fit_temperature_nll(src, torch.from_numpy(src_labels)),
        "match": fit_temperature(src, reference),
    }
    out = {}
    for rule, t in temperatures.items():
        probs = torch.softmax(torch.from_numpy(tgt_logits).double() / t, dim=-1).numpy()
        out[rule] = {"temperature": round(t, 4), "ece": round(float(ece(probs, gold)), 4)}
    return out


def pooled_splits(src_logits, src_labels, valid_logits, valid_gold, seed, draws: int = 200) -> dict:
    """Both temperature rules judged on held-out rows: the trusted and the gold-labelled validation rows
    pooled (all unseen by the served model), split at random into as many fit rows as there are trusted
    rows and the rest to score; mean held-out ECE and NLL per rule over `draws` splits."""
    from sidyp_engine.metrics import ece

    known = valid_gold < valid_logits.shape[1]
    logits = np.concatenate([src_logits, valid_logits[known]])
    labels = np.concatenate([src_labels, valid_gold[known]])
    rng, n_fit = np.random.default_rng(seed), len(src_labels)
    scores: dict[str, dict[str, list]] = {"nll": {"ece": [], "nll": []}, "match": {"ece": [], "nll": []}}
    for _ in range(draws):
        order = rng.permutation(len(labels))
        fit, held = order[:n_fit], order[n_fit:]
        src = torch.from_numpy(logits[fit]).double()
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(labels[fit]), src.shape[1]).double()
        for rule, t in (
            ("nll", fit_temperature_nll(src, torch.from_numpy(labels[fit]))),
            ("match", fit_temperature(src, one_hot)),
        ):
            probs = torch.softmax(torch.from_numpy(logits[held]).double() / t, dim=-1).numpy()
            scores[rule]["ece"].append(ece(probs, labels[held]))
            scores[rule]["nll"].append(-np.log(probs[np.arange(len(held)), labels[held]] + 1e-12).mean())
    return {
        rule: {k: round(float(np.mean(v)), 4) for k, v in metrics.items()}
        | {"held_out_rows": len(labels) - n_fit}
        for rule, metrics in scores.items()
    }


def run_row(
    cache_dir: str, data: str, seed: int, n_trusted: int, score_test: bool, dumps: str | None = None
) -> dict:
    from sidyp_engine.served import ServedClassifier

    name = os.path.basename(os.path.normpath(data))
    train, valid = read_split(os.path.join(data, "train.csv")), read_split(os.path.join(data, "valid.csv"))
    classes = sorted({y for y in train["noisy"] + valid["noisy"] if y is not None})
    trusted = draw_trusted(train, n_trusted, seed)
    rows = [i for i, t in enumerate(trusted) if t is not None and t in classes]
    served = ServedClassifier.load(os.path.join(cache_dir, f"{name}-seed{seed}", "served"))
    src_logits = served.logits([train["texts"][i] for i in rows])
    src_labels = np.array([classes.index(trusted[i]) for i in rows])
    targets = {"valid": valid}
    if score_test:
        targets["test"] = read_split(os.path.join(data, "test.csv"))
    out: dict = {"set": name, "seed": seed, "trusted_rows": len(rows)}
    valid_logits, valid_gold = served.logits(valid["texts"]), gold_ids(valid["gold"], classes)
    out["pooled_splits"] = pooled_splits(src_logits, src_labels, valid_logits, valid_gold, seed)
    if dumps:  # a shift planted in the validation rows, chosen without gold: agreement of two labellers
        arrays = np.load(dumps.format(set=name, seed=seed))
        agree = arrays["valid_noisy"] == arrays["valid_pred_plain"]
        for subset, rows_in in (("valid_agree", agree), ("valid_disagree", ~agree)):
            out[subset] = {
                "rows": int(rows_in.sum()),
                "measured": round(float((valid_logits[rows_in].argmax(1) == valid_gold[rows_in]).mean()), 4),
                "estimators": with_intervals(src_logits, src_labels, valid_logits[rows_in], seed),
            }
    for split, table in targets.items():
        logits = served.logits(table["texts"])
        gold = gold_ids(table["gold"], classes)
        out[split] = {
            "measured": round(float((logits.argmax(1) == gold).mean()), 4),
            "estimators": with_intervals(src_logits, src_labels, logits, seed),
            "ece": target_ece(src_logits, src_labels, logits, gold),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--trusted", type=int, default=100)
    p.add_argument("--run", action="append", required=True, help="<data dir>:<seed>")
    p.add_argument("--score-test", action="store_true")
    p.add_argument(
        "--dumps",
        help="the runs' --dump-arrays dir pattern with {set} and {seed}: adds validation subsets with a planted "
        "shift (rows where the LLM label and the plain classifier agree: easier; where they do not: harder)",
    )
    p.add_argument("--out", help="append one JSON line per run")
    args = p.parse_args(argv)
    for spec in args.run:
        data, seed = spec.rsplit(":", 1)
        row = run_row(args.cache_dir, data, int(seed), args.trusted, args.score_test, args.dumps)
        line = json.dumps(row)
        print(line)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        for split in ("valid", "valid_agree", "valid_disagree", "test"):
            if split in row:
                r = row[split]
                cells = "  ".join(
                    f"{k} {v['estimate']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"
                    for k, v in r["estimators"].items()
                )
                print(f"{row['set']} s{seed} {split}: measured {r['measured']:.3f}  {cells}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
