"""What the research scripts share: a dump's (set, seed), its candidates' validation scores, file arguments in
named groups, and the record of which variant a design run had in place."""

from __future__ import annotations

import json
import os

import numpy as np

from sidyp_engine.metrics import macro_f1


def dump_key(path: str) -> tuple[str, int]:
    """(set, seed) of a `benchmarks.quality --dump-arrays` file, <set>/seed<N>.npz."""
    return os.path.basename(os.path.dirname(path)), int(os.path.basename(path)[len("seed") : -len(".npz")])


def validation_scores(path: str, names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Accuracy and macro-F1 of each candidate's validation predictions (`valid_pred_<name>`) in a dump,
    against the validation gold of the rows that have one."""
    a = np.load(path)
    gold, n_classes = a["valid_gold"], a["selection_noise_matrix"].shape[0]  # the run's classes
    keep = gold >= 0
    out = {}
    for name in names:
        pred = a[f"valid_pred_{name}"][keep]
        out[name] = (float((pred == gold[keep]).mean()), macro_f1(gold[keep], pred, n_classes))
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (max subtracted first)."""
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def grouped_args(argv: list[str], flags: tuple[str, ...], usage: str) -> dict[str, list[str]]:
    """`--a x y --b z` -> {"--a": [x, y], "--b": [z]} for the given flags; SystemExit(usage) on a value
    before any flag."""
    groups: dict[str, list[str]] = {flag: [] for flag in flags}
    current = None
    for arg in argv:
        if arg in groups:
            current = arg
        elif current is None:
            raise SystemExit(f"unexpected argument {arg!r}: {usage}")
        else:
            groups[current].append(arg)
    return groups


def record_variant(args: list[str], variant: dict) -> None:
    """Add `variant` to the JSON a `benchmarks.quality` run with `args` wrote (its `command` is the
    benchmark's own and does not say which variant was in place)."""
    if "--out" not in args:
        return
    path = args[args.index("--out") + 1]
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    doc["variant"] = variant
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
