"""Which gold-free temperature suits the served (distilled) model where the refined output is kept (design data).

    python -m benchmarks.research.served_temperature \
        /work/dumps/trec-weak-vote/seed0.npz:benchmarks/results/issue13k/trec-weak-vote-seed0.json ...

Each argument pairs a `benchmarks.quality --dump-arrays` file with the benchmark JSON of the same run. The
served model's untempered validation logits (`valid_logits_served`) are scored against the *validation*
gold (design data; test is not read) under each rule:
  distilled      the rule before: the temperature the distillation fitted (mean top confidence = the
                 accuracy the refined posteriors of the validation texts expect of its predictions; where
                 the plain model was delivered, matched to the posterior estimate, as it is not recorded);
  untempered     T = 1;
  moments        mean top confidence = its method-of-moments estimate (the JSON's `moment_rows`);
  greater        mean top confidence = the greater of the posterior and the moment estimate;
  noisy_nll      minimum NLL of the noisy validation labels;
  gold_nll       minimum NLL of the validation gold: what no run can know, the floor.
Prints one JSON line per run: whether the run's prior used the noise model, the estimates, and the
temperature and validation ECE of each rule.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from benchmarks.research.plain_temperature import _matched
from sidyp_engine.metrics import accuracy, ece
from sidyp_engine.temperature import fit_temperature_nll


def run_row(dump: str, result_json: str) -> dict:
    d = np.load(dump)
    with open(result_json) as f:
        run = json.load(f)["runs"][0]
    logits = torch.from_numpy(d["valid_logits_served"]).double()
    gold, noisy = d["valid_gold"], d["valid_noisy"]
    est = run["estimates"]
    posterior = est["rows"]["served"]["estimated"]["accuracy"]
    moments = est["moment_rows"]["served"]["estimated"]["accuracy"]
    labelled = noisy >= 0
    # the JSON's served_temperature is the delivered model's; where the plain model was kept, the
    # distillation's temperature is not recorded and is recomputed from the estimate it matches
    served_kept = run["scores"]["served"] == run["scores"]["distilled"]
    distilled = float(run["served_temperature"]) if served_kept else _matched(logits, posterior)
    rules = {
        "distilled": distilled,
        "untempered": 1.0,
        "moments": _matched(logits, moments),
        "greater": _matched(logits, max(posterior, moments)),
        "noisy_nll": fit_temperature_nll(logits[labelled], torch.from_numpy(noisy[labelled])),
        "gold_nll": fit_temperature_nll(logits, torch.from_numpy(gold)),
    }
    scored = {}
    for name, t in rules.items():
        probs = torch.softmax(logits / t, dim=-1).numpy()
        scored[name] = {"T": round(t, 3), "valid_ece": round(ece(probs, gold), 4)}
    return {
        "run": result_json,
        "noise_model": run["diagnostics"]["noise_model"],
        "knn_space": run["diagnostics"]["knn_space"],
        "served_delivered": served_kept,
        "served_valid_accuracy": round(accuracy(gold, logits.argmax(1).numpy()), 4),
        "posterior_estimate": posterior,
        "moment_estimate": moments,
        "moment_method": est["moment_rows"]["served"]["estimated"]["method"],
        "rules": scored,
    }


def main(argv: list[str]) -> int:
    for pair in argv:
        dump, result_json = pair.split(":", 1)
        print(json.dumps(run_row(dump, result_json)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
