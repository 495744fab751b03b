"""Training rows' refined labels read in-sample against cross-fitted, on dumps of the same run made both ways.

    python -m benchmarks.research.crossfit_refiner --base <dump .npz ...> --variant <dump .npz ...>

Dumps are `benchmarks.quality --dump-arrays` files (<set>/seed<N>.npz); a base and a variant dump pair up by
set and seed. Per pair, accuracy / macro-F1 against train gold of the delivered labels of the training
rows (the suggestions a user gets), the LLM's labels there, and against validation gold the refined labels of
the validation texts read without a label and the served model (`valid_pred_*`). Research: reads train and
validation gold, never test.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from benchmarks.research.lab import macro_f1


def _key(path: str) -> tuple[str, int]:
    return os.path.basename(os.path.dirname(path)), int(os.path.basename(path)[len("seed") : -len(".npz")])


def _scores(pred: np.ndarray, gold: np.ndarray, n_classes: int) -> str:
    onehot = np.eye(n_classes)[pred]
    return f"{(pred == gold).mean():.3f} / {macro_f1(onehot, gold):.3f}"


def rows(base: list[str], variant: list[str]) -> list[str]:
    found = {_key(p): p for p in variant}
    out = []
    for path in sorted(base):
        if _key(path) not in found:
            continue
        b, v = np.load(path), np.load(found[_key(path)])
        gold, vgold = b["train_gold"], b["valid_gold"]
        k = b["train_refined_posteriors"].shape[1]
        labelled = b["train_noisy"] >= 0 if "train_noisy" in b else np.ones(len(gold), bool)
        cells = [f"{_key(path)[0]} ({_key(path)[1]})"]
        if "train_noisy" in b:
            cells.append(_scores(np.where(labelled, b["train_noisy"], 0), gold, k))
        else:
            cells.append("-")
        for d in (b, v):
            cells.append(_scores(d["train_refined_posteriors"].argmax(1), gold, k))
        for name in ("refined", "served"):
            for d in (b, v):
                cells.append(_scores(d[f"valid_pred_{name}"], vgold, k))
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    groups: dict[str, list[str]] = {"--base": [], "--variant": []}
    current = None
    for arg in argv:
        if arg in groups:
            current = arg
        elif current is None:
            raise SystemExit(f"unexpected argument {arg!r}: give --base and --variant")
        else:
            groups[current].append(arg)
    print(
        "| run | LLM labels (train) | delivered training labels, in-sample | cross-fitted | "
        "refined valid, in-sample | cross-fitted | served valid, in-sample | cross-fitted |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for line in rows(groups["--base"], groups["--variant"]):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
