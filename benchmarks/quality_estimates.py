"""What `benchmarks.quality` adds for issue 13: trusted rows, estimated vs measured accuracy, design arrays.

Gold labels read here: test (scoring, as everywhere) and train / valid for the *measured* side of the
estimate comparison and for `--trusted N` (N training rows whose gold label is revealed as trusted_label).
Nothing here feeds gold into a decision of the run other than those trusted labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sidyp_engine import estimates, selection


def draw_trusted(train: dict[str, list], n: int, seed: int) -> list[str | None]:
    """trusted_label per training row: the gold label on n rows drawn at random (seed-dependent), else None."""
    trusted: list[str | None] = [None] * len(train["texts"])
    if n <= 0:
        return trusted
    rng = np.random.default_rng(10_000 + seed)
    for i in rng.choice(len(trusted), size=min(n, len(trusted)), replace=False):
        trusted[int(i)] = train["gold"][int(i)]
    return trusted


def _accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((pred == gold).mean()) if len(gold) else float("nan")


def given_label_accuracy(splits: list[dict[str, list]]) -> float:
    """Accuracy of the labels a run was given (its training and validation rows with a label) against gold:
    what the run's estimate of the LLM labels' accuracy is about. On a development set the test split keeps
    the source labeller's labels (`benchmarks/dev_sets.py`), so its test accuracy is another labeller's."""
    pairs = [
        (n, g)
        for split in splits
        for n, g in zip(split["noisy"], split["gold"], strict=True)
        if n is not None
    ]
    return float(np.mean([n == g for n, g in pairs])) if pairs else float("nan")


def estimate_table(result, train, valid, test, classes, y_test, test_preds) -> dict[str, Any]:
    """Per row: the run's estimate (validation rows) beside the measured accuracy on valid and on test; for
    the LLM labels and the wrong-label share also on the labels given (`measured_given`, train + valid)."""
    from benchmarks.quality import gold_ids

    chosen = result.diagnostics.get("selection")
    if not chosen:
        return {"not_available": "the run made no selection"}
    y_valid = gold_ids(valid["gold"], classes)
    noisy_valid = np.array([classes.index(n) if n in classes else -1 for n in valid["noisy"]])
    arrays = result.diagnostic_arrays
    valid_preds = {k[len("valid_pred_") :]: v for k, v in arrays.items() if k.startswith("valid_pred_")}
    found = dict(chosen["estimates"])
    on_evaluation = chosen.get("evaluation_estimates") or {}
    table = {}
    for name, est in found.items():
        row = {"estimated": est, "measured_test": None, "measured_valid": None}
        if name in on_evaluation:  # the same estimate carried to the test texts (gold-free runs)
            row["estimated_on_test_texts"] = on_evaluation[name]
        if name in valid_preds:
            row["measured_valid"] = _accuracy(np.asarray(valid_preds[name]), y_valid)
        if name in test_preds:
            row["measured_test"] = _accuracy(test_preds[name].argmax(1), y_test)
        table[name] = row
    llm_valid = _accuracy(noisy_valid, y_valid)
    llm_test = float(np.mean([n == g for n, g in zip(test["noisy"], test["gold"], strict=True)]))
    llm_given = given_label_accuracy([train, valid])
    table["llm_labels"] = {
        "estimated": chosen["llm_label_accuracy"],
        "measured_valid": llm_valid,
        "measured_test": llm_test,
        "measured_given": llm_given,
    }
    moments = {  # the method-of-moments estimates the run keeps beside its reported ones
        name: {"estimated": est, "measured_test": table.get(name, {}).get("measured_test")}
        for name, est in (chosen.get("moment_estimates") or {}).items()
    }
    out = {
        "rows": table,
        "moment_rows": moments,
        "anchor_t": _anchor_estimates(arrays, valid_preds, noisy_valid, y_valid),
        "kept": chosen["kept"],
        "kept_model": chosen["kept_model"],
        "reason": chosen["reason"],
        "margins": chosen.get("margins", {}),
        "trusted_sample": chosen.get("trusted_sample"),
        # the report's asks for trusted rows: a close gate reading, a gate opened on the expected gain
        "gate_close": chosen.get("gate_close"),
        "expected_gain": chosen.get("expected_gain"),
        # with trusted rows, what of the kept classifiers was fitted again with their labels
        "refit": chosen.get("refit"),
        "wrong_label_share": {
            "estimated": chosen["noise_share"],
            "measured_valid": 1 - llm_valid,
            "measured_given": 1 - llm_given,
            "flagged_share_train": float(result.diagnostics.get("flagged_share", float("nan"))),
        },
    }
    kept_model = chosen["kept_model"]
    # the kept model's accuracy carried from the trusted rows to the test texts, beside the measured one
    if chosen.get("evaluation_estimate") and kept_model in test_preds:
        out["evaluation"] = {
            "model": kept_model,
            "estimated": chosen["evaluation_estimate"],
            "measured_test": _accuracy(test_preds[kept_model].argmax(1), y_test),
        }
    return out


def _anchor_estimates(arrays, valid_preds, noisy_valid, y_valid) -> dict[str, Any]:
    """The same estimates with T from anchor points of the plain classifier (design data for the T choice)."""
    t = estimates.anchor_noise_matrix(arrays["valid_noisy_posteriors"])
    rows = {
        name: {
            "estimated": estimates.predictor_accuracy(np.asarray(p), noisy_valid, t).as_dict(),
            "measured_valid": _accuracy(np.asarray(p), y_valid),
        }
        for name, p in valid_preds.items()
    }
    rows["llm_labels"] = {
        "estimated": estimates.label_accuracy(noisy_valid, t).as_dict(),
        "measured_valid": _accuracy(noisy_valid, y_valid),
    }
    return {"noise_matrix_diagonal": [round(float(x), 3) for x in np.diag(t)], "rows": rows}


def candidate_test_probs(result, arrays) -> dict[str, np.ndarray]:
    """Test-text probabilities of every candidate (the distilled and plain models from the run's arrays)."""
    rows = {
        selection.PLAIN: result.extra_noisy_posteriors,
        selection.REFINED: arrays.get("extra_refined_posteriors", result.extra_posteriors),
    }
    for name in (selection.SERVED, selection.PLAIN_MODEL, selection.PROBE):
        key = f"extra_{name}"
        if key in arrays:
            rows[name] = arrays[key]
    return rows


def format_estimates(table: dict[str, Any]) -> str:
    if "rows" not in table:
        return f"  estimates: {table.get('not_available')}"
    lines = [f"  kept: labels {table['kept']}, model {table['kept_model']}; {table['reason']}"]
    lines.append(f"  {'row':<14}{'estimated [interval]':>30}{'valid':>9}{'on test texts':>16}{'test':>9}")
    for name, row in table["rows"].items():
        e = row["estimated"]
        est = f"{e['accuracy']:.3f} [{e['low']:.3f}, {e['high']:.3f}] {e['method']}"
        carried = (row.get("estimated_on_test_texts") or {}).get("accuracy")
        cells = "".join(
            f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"
            for v, w in ((row["measured_valid"], 9), (carried, 16), (row["measured_test"], 9))
        )
        lines.append(f"  {name:<14}{est:>30}{cells}")
    anchor = table["anchor_t"]["rows"]
    lines.append(
        "  anchor-T estimates: "
        + ", ".join(
            f"{n} {r['estimated']['accuracy']:.3f} (valid {r['measured_valid']:.3f})"
            for n, r in anchor.items()
        )
    )
    if "evaluation" in table:
        ev = table["evaluation"]
        e = ev["estimated"]
        lines.append(
            f"  {ev['model']} on the test texts: estimated {e['accuracy']:.3f} [{e['low']:.3f}, {e['high']:.3f}] "
            f"{e['method']}, measured {ev['measured_test']:.3f}"
        )
    w = table["wrong_label_share"]
    lines.append(
        f"  wrong LLM labels: estimated {w['estimated']['accuracy']:.3f} "
        f"[{w['estimated']['low']:.3f}, {w['estimated']['high']:.3f}], measured (valid) {w['measured_valid']:.3f}, "
        f"flagged (train) {w['flagged_share_train']:.3f}"
    )
    return "\n".join(lines)


def mean_absolute_errors(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean |estimated - measured test accuracy| per row over seeds, and of the wrong-label share (valid)."""
    errors: dict[str, list[float]] = {}
    for run in runs:
        table = run.get("estimates", {})
        for name, row in table.get("rows", {}).items():
            if row["measured_test"] is not None and row["estimated"]["accuracy"] is not None:
                errors.setdefault(name, []).append(abs(row["estimated"]["accuracy"] - row["measured_test"]))
        if "wrong_label_share" in table:
            w = table["wrong_label_share"]
            errors.setdefault("wrong_label_share_valid", []).append(
                abs(w["estimated"]["accuracy"] - w["measured_valid"])
            )
    return {k: round(float(np.mean(v)), 4) for k, v in errors.items()}


def dump_arrays(directory, seed, result, valid, classes, y_test, test_probs, train_gold=None) -> None:
    """One .npz per seed with what a selection rule reads, and the gold it is judged by (design only)."""
    import os

    from benchmarks.quality import gold_ids

    arrays = {
        k: v
        for k, v in result.diagnostic_arrays.items()
        if k.startswith(
            (
                "valid_",
                "train_refined",
                "class_floor",
                "unlabelled_floor",
                "floor_",
                "trusted_",
                "extra_stage1",
                "extra_refined_confidence",
            )
        )
    }
    arrays["selection_noise_matrix"] = result.diagnostic_arrays["selection_noise_matrix"]
    arrays["valid_noisy"] = np.array([classes.index(n) if n in classes else -1 for n in valid["noisy"]])
    arrays["valid_gold"] = gold_ids(valid["gold"], classes)
    arrays["test_gold"] = y_test
    arrays["train_posteriors"] = result.posteriors
    arrays["train_noisy"] = np.array([classes.index(n) if n in classes else -1 for n in result.given_labels])
    arrays["train_gold"] = gold_ids(train_gold, classes) if train_gold is not None else arrays["train_noisy"]
    arrays["fit_rows"] = np.flatnonzero(~result.is_validation)
    for name, probs in test_probs.items():
        arrays[f"test_probs_{name}"] = probs
    os.makedirs(directory, exist_ok=True)
    np.savez_compressed(os.path.join(directory, f"seed{seed}.npz"), **arrays)
