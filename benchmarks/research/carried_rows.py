"""Should every candidate's gold-free estimate be carried to the evaluation texts (design data, valid gold)?

    python -m benchmarks.research.carried_rows <data dir>:/work/dumps/<set>/seed<S>.npz ...

The report gave each candidate's accuracy as the validation rows' refined posteriors expect it; only the
kept model's was carried to the evaluation texts (ATC, twelfth round, chosen on the served and plain models).
Here every candidate: plain (the plain fine-tune), refined (its posteriors without a label), served and
probe. The validation rows are split without gold as in `evaluation_temperature`: two random halves (no
shift) and the shorter / longer half by word count (a planted shift), each half once the target. On the
source rows the estimate is the report's (mean refined posterior of the candidate's prediction, labelled
rows); it is carried to the target rows by the candidate's top-label confidence (logits at T = 1; the
refined posteriors without the class floor's weights). Scored on the target rows' gold; test is not read.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from benchmarks.research.evaluation_temperature import _splits, _texts
from sidyp_engine import estimates
from sidyp_engine.stages.posterior import reweighted, unfloored


def _candidates(d) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Candidate -> (predictions, top-label confidences) on the validation rows."""
    found = {}
    for name in ("plain_model", "served", "probe"):
        key = f"valid_logits_{name}"
        if key in d:
            probs = torch.softmax(torch.from_numpy(d[key]).double(), -1)
            found[name] = (probs.argmax(1).numpy(), probs.max(1).values.numpy())
    weights = torch.from_numpy(d["class_floor_weights"]).double()
    refined = reweighted(torch.from_numpy(d["valid_refined_unlabelled"]).double(), 1.0 / weights)
    found["refined"] = (d["valid_pred_refined"], refined.max(1).values.numpy())
    return found


def valid_reference(d) -> np.ndarray:
    """The validation rows' calibrated refined posteriors (the class floor's weights taken out): the reference
    the run's gold-free estimates read."""
    return unfloored(
        torch.from_numpy(d["valid_posteriors"]).float(),
        torch.from_numpy(d["class_floor_weights"]).float(),
        float(d["floor_temperature"]),
    ).numpy()


def run_rows(data: str, dump: str, seed: int = 0) -> list[dict]:
    d = np.load(dump)
    gold, noisy = d["valid_gold"], d["valid_noisy"]
    reference = valid_reference(d)
    rows = []
    for name, (pred, conf) in _candidates(d).items():
        for split, (source, target) in _splits(_texts(data), seed).items():
            labelled = source[noisy[source] >= 0]
            est = estimates.reference_accuracy(pred[labelled], reference[labelled], seed).accuracy
            carried = estimates.thresholded_at(conf[source], est, conf[target])
            rows.append(
                {
                    "dump": dump,
                    "candidate": name,
                    "split": split,
                    "source_estimate": round(est, 4),
                    "target_carried": round(carried, 4),
                    "target_measured": round(float((pred[target] == gold[target]).mean()), 4),
                    "source_measured": round(float((pred[source] == gold[source]).mean()), 4),
                }
            )
    return rows


def main(argv: list[str]) -> int:
    rows = [r for pair in argv for r in run_rows(*pair.split(":", 1))]
    for r in rows:
        print(json.dumps(r))
    for kind in ("random", "short", "long", "all"):
        picked = [r for r in rows if kind == "all" or r["split"].startswith(kind)]
        if not picked:
            continue
        plain = np.mean([abs(r["source_estimate"] - r["target_measured"]) for r in picked])
        carried = np.mean([abs(r["target_carried"] - r["target_measured"]) for r in picked])
        print(
            f"# {kind}: n={len(picked)} uncarried MAE {plain:.4f}, carried MAE {carried:.4f}", file=sys.stderr
        )
    for name in sorted({r["candidate"] for r in rows}):
        picked = [r for r in rows if r["candidate"] == name and not r["split"].startswith("random")]
        plain = np.mean([abs(r["source_estimate"] - r["target_measured"]) for r in picked])
        carried = np.mean([abs(r["target_carried"] - r["target_measured"]) for r in picked])
        print(f"# {name}, length splits: uncarried {plain:.4f}, carried {carried:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
