"""The refined labels of training rows beside those of validation rows, read with and without the label.

    python -m benchmarks.research.label_reads <dump .npz ...>

Dumps are `benchmarks.quality --dump-arrays` files (<set>/seed<N>.npz). Per dump, accuracy against gold of:
the LLM's labels on the training and the validation rows; the delivered refined labels of the training rows
(read with their given label, `train_refined_posteriors`); the validation rows read with their label
(`valid_posteriors`) and without it (`valid_pred_refined`, as a test text is). Separates what the training
rows' in-sample reading costs from what the split does (docs/method.md, "Twenty-eighth round"). Research:
reads train and validation gold, never test.
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.research.script_io import dump_key


def row(path: str) -> str:
    d = np.load(path)
    tg, tn, vg, vn = d["train_gold"], d["train_noisy"], d["valid_gold"], d["valid_noisy"]
    set_name, seed = dump_key(path)
    name = f"{set_name} ({seed})"
    cells = [
        (tn == tg).mean(),
        (vn == vg).mean(),
        (d["train_refined_posteriors"].argmax(1) == tg).mean(),
        (d["valid_posteriors"].argmax(1) == vg).mean(),
        (d["valid_pred_refined"] == vg).mean(),
    ]
    return f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |"


def main(argv: list[str] | None = None) -> int:
    paths = sorted(sys.argv[1:] if argv is None else argv)
    print(
        "| run | LLM labels, train | LLM labels, valid | refined, training rows (with label) | "
        "refined, validation rows with label | without label |"
    )
    print("|---|---|---|---|---|---|")
    for path in paths:
        print(row(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
