"""Design data for the do-no-harm rule: gold-free estimates vs measured validation accuracy, per dumped run.

    python -m benchmarks.research.selection_rule /work/sidyp-dev/arrays/*/seed*.npz

Reads the `--dump-arrays` files of `benchmarks.quality`. Scores only against *validation* gold (design data);
test gold is in the files for the final report and is never read here.
"""

from __future__ import annotations

import sys

import numpy as np

from sidyp_engine import estimates, selection

CANDIDATES = ("plain", "refined", "served", "plain_model", "probe")


def noise_matrices(d) -> dict[str, np.ndarray]:
    return {
        "run_T": d["selection_noise_matrix"],
        "anchor_T": estimates.anchor_noise_matrix(d["valid_noisy_posteriors"]),
        "anchor_T_valid+extra": estimates.anchor_noise_matrix(
            np.concatenate([d["valid_noisy_posteriors"], d["test_probs_plain"]])
        ),
    }


def main(paths: list[str]) -> int:
    errors: dict[str, list[float]] = {}
    for path in paths:
        d = np.load(path)
        noisy, gold = d["valid_noisy"], d["valid_gold"]
        print(f"\n{path}: valid n={len(gold)}, LLM label accuracy (valid) {np.mean(noisy == gold):.3f}")
        for t_name, t in noise_matrices(d).items():
            cells = []
            for name in CANDIDATES:
                key = f"valid_pred_{name}"
                if key not in d:
                    continue
                pred = d[key]
                est = estimates.predictor_accuracy(pred, noisy, t)
                measured = float(np.mean(pred == gold))
                errors.setdefault(t_name, []).append(abs(est.accuracy - measured))
                cells.append(f"{name} {est.accuracy:.3f}[{est.low:.2f},{est.high:.2f}]/{measured:.3f}")
            if t_name == "run_T":
                agree = {
                    n: float(np.mean(d[f"valid_pred_{n}"] == noisy))
                    for n in CANDIDATES
                    if f"valid_pred_{n}" in d
                }
                for n, a in agree.items():
                    errors.setdefault("agreement", []).append(
                        abs(a - float(np.mean(d[f"valid_pred_{n}"] == gold)))
                    )
                print("  agreement with noisy: " + ", ".join(f"{n} {a:.3f}" for n, a in agree.items()))
            labels = estimates.label_accuracy(noisy, t)
            errors.setdefault(f"{t_name}_labels", []).append(abs(labels.accuracy - np.mean(noisy == gold)))
            preds = {k: d[f"valid_pred_{k}"] for k in ("plain", "refined", "served", "plain_model")}
            chosen = selection.select(preds, noisy, t, gold_free_may_switch=True)
            print(f"  {t_name}: labels est {labels.accuracy:.3f}; " + "; ".join(cells))
            print(
                f"    -> kept labels {chosen.kept_labels}, model {chosen.kept_model}; margins {chosen.margins}"
            )
    print("\nmean |estimate - measured valid accuracy|:")
    for name, values in errors.items():
        print(f"  {name}: {np.mean(values):.4f} over {len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
