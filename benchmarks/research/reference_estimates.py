"""Design data for the reported gold-free accuracy estimate: the refined posteriors as the reference.

    python -m benchmarks.research.reference_estimates /work/dumps/*/seed*.npz

Per dumped run (`benchmarks.quality --dump-arrays`) and candidate: the accuracy the validation rows' refined
posteriors expect of its validation predictions, mean_i P(y = pred_i | x_i, ỹ_i) (`estimates.reference_accuracy`),
beside the accuracy measured against validation gold (design data); and for the LLM labels, the training
rows' expected share of right labels beside train gold. Test gold is in the files and never read here. The
method-of-moments estimates of the same runs are in their benchmark JSON (`estimates.rows`, before the
switch; `moment_rows` after).
"""

from __future__ import annotations

import sys

import numpy as np

from sidyp_engine import estimates


def main(paths: list[str]) -> int:
    errors: dict[str, list[float]] = {}
    for path in paths:
        d = np.load(path)
        gold, reference = d["valid_gold"], d["valid_posteriors"]
        cells = []
        for key in sorted(k for k in d.files if k.startswith("valid_pred_")):
            name, pred = key[len("valid_pred_") :], d[key]
            est = estimates.reference_accuracy(pred, reference).accuracy
            measured = float(np.mean(pred == gold))
            errors.setdefault(name, []).append(abs(est - measured))
            cells.append(f"{name} {est:.3f} (valid {measured:.3f})")
        noisy, train_gold, post = d["train_noisy"], d["train_gold"], d["train_refined_posteriors"]
        labelled = noisy >= 0
        est = float(post[labelled, noisy[labelled]].mean())
        measured = float(np.mean(noisy[labelled] == train_gold[labelled]))
        errors.setdefault("llm_labels", []).append(abs(est - measured))
        cells.append(f"llm_labels {est:.3f} (train {measured:.3f})")
        print(f"{path}: " + "; ".join(cells))
    print("mean absolute error per candidate:", {k: round(float(np.mean(v)), 3) for k, v in errors.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
