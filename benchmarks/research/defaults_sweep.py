"""Re-deciding the method's inner defaults on development data: stages 1-4 of `calibrate`, scored on train
and validation gold only (issue 13, part 4).

    python -m benchmarks.research.defaults_sweep --data ../shared/data/trec-weak-vote /work/sidyp-dev/* \
        --cache-dir /work/bench-cache --variants '[{}, {"knn_space": "stage1"}, {"k": 25}]' --out sweep.json

Every variant runs the engine's own stage functions (the ones `calibrate` composes) up to the refined
posteriors: the served model and the select stage are left out, they do not change what is compared here.
Stage 1 and the frozen embeddings come from the `benchmarks.quality --cache-dir` layout (`<name>-seed<s>`),
computed and kept there when missing, so a later acceptance run reuses them. The test split's texts are
passed as extra texts, as the benchmark passes them (they are part of stage 1's key); its gold is never read.

Scores per variant: accuracy and macro-F1 of the suggested training labels against train gold, of the
validation rows' refined posteriors (with their label, and as if unlabelled) against validation gold, the
plain classifier's validation accuracy, validation ECE of the refined posteriors, and the estimated against
the true wrong-label share of the training rows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.quality import gold_ids, read_split
from sidyp_engine.metrics import ece, macro_f1
from sidyp_engine.pipeline import _setup
from sidyp_engine.stages.ensemble import (
    EnsembleOutput,
    encode_stage1,
    keep_best_branch,
    stage1_decoder,
    train_classifiers,
)
from sidyp_engine.stages.inputs import Inputs, validate
from sidyp_engine.stages.posterior import Posteriors, class_floor_weights, compose_posteriors, reweighted
from sidyp_engine.stages.prior import (
    NoiseFlags,
    Prior,
    dynamic_prior,
    flag_noise,
    frozen_embeddings,
    split_rows,
)
from sidyp_engine.stages.refine import Conditioning, Refiner, conditioning, train_refiner
from sidyp_engine.stages.select import calibrated
from sidyp_engine.types import CalibrationConfig

# class-floor shares compared on the suggested training labels (0: plain argmax; 0.5 is the default)
FLOORS = (0, 0.25, 0.5, 0.75, 1.0)


def _variant_name(overrides: dict) -> str:
    return "-".join(f"{k}{v}" for k, v in sorted(overrides.items())) or "default"


def _quiet(*_args, **_kwargs) -> None:
    return None


@dataclass
class FrontHalf:
    """What stages 1-4 of one variant produced on one set, with the gold the scores read."""

    data: dict  # split name -> the `read_split` columns
    classes: list[str]
    inputs: Inputs
    ens: EnsembleOutput
    flags: NoiseFlags
    prior: Prior
    cond: Conditioning
    refiner: Refiner
    post: Posteriors
    seconds: dict[str, float]


@dataclass
class Stage1:
    """Stage 1 of one set and seed from (or into) the cache, with what the later stages need to go on."""

    data: dict  # split name -> the `read_split` columns
    classes: list[str]
    cfg: CalibrationConfig
    inputs: Inputs
    setup: object  # pipeline._Setup
    ens: EnsembleOutput


def load_stage1(data_dir: str, seed: int, overrides: dict, cache_dir: str) -> Stage1:
    """Stage 1 of `calibrate` for one variant (the best branch kept), from or into the cache."""
    train, valid, test = (read_split(os.path.join(data_dir, f"{s}.csv")) for s in ("train", "valid", "test"))
    classes = sorted({y for y in train["noisy"] + valid["noisy"] if y is not None})  # as the benchmark
    cfg = CalibrationConfig(seed=seed, **overrides)
    inputs = validate(
        cfg, train["texts"], train["noisy"], classes, valid["texts"], valid["noisy"], test["texts"]
    )
    work = os.path.join(cache_dir, f"{os.path.basename(os.path.normpath(data_dir))}-seed{seed}")
    os.makedirs(work, exist_ok=True)
    setup = _setup(cfg, inputs, work)
    ens, _ = setup.checkpoints.run(
        "stage1",
        lambda: train_classifiers(cfg, inputs, setup.backbone, setup.tokenizer, setup.device, None, None),
        encode_stage1,
        stage1_decoder(setup.backbone, inputs.n_classes, setup.device),
    )
    keep_best_branch(ens)
    return Stage1({"train": train, "valid": valid, "test": test}, classes, cfg, inputs, setup, ens)


def run_front_half(data_dir: str, seed: int, overrides: dict, cache_dir: str) -> FrontHalf:
    """Stages 1-4 of `calibrate` for one variant, stage 1 and the embeddings from (or into) the cache."""
    started = time.perf_counter()
    s1 = load_stage1(data_dir, seed, overrides, cache_dir)
    cfg, inputs, setup, ens = s1.cfg, s1.inputs, s1.setup, s1.ens
    ckpt, device = setup.checkpoints, setup.device
    flags = flag_noise(cfg, inputs, ens)
    frozen_rows, _ = ckpt.run(
        "embeddings",
        lambda: frozen_embeddings(cfg, inputs, setup.encoder, device, None),
        lambda rows: ({"embeddings": rows}, {}),
        lambda tensors, data: tensors["embeddings"],
    )
    frozen = split_rows(inputs, frozen_rows)
    t_front = time.perf_counter()
    prior = dynamic_prior(cfg, inputs, ens, flags, frozen, _quiet)
    cond = conditioning(inputs, ens, frozen)
    refiner = train_refiner(cfg, inputs, cond, prior, device, None, None)
    post = compose_posteriors(inputs, ens, refiner, cond, prior, _quiet)
    seconds = {
        "stage1_and_embeddings": round(t_front - started, 1),
        "stages_2_4": round(time.perf_counter() - t_front, 1),
    }
    return FrontHalf(s1.data, s1.classes, inputs, ens, flags, prior, cond, refiner, post, seconds)


def front_half(data_dir: str, seed: int, overrides: dict, cache_dir: str, arrays: str | None = None) -> dict:
    """Stages 1-4 of one variant on one set; the scores of the module docstring."""
    run = run_front_half(data_dir, seed, overrides, cache_dir)
    train, valid, classes, inputs = run.data["train"], run.data["valid"], run.classes, run.inputs
    ens, prior, post = run.ens, run.prior, run.post
    unlabelled = post.valid_unlabelled
    c = inputs.n_classes
    g_train = gold_ids([train["gold"][i] for i in inputs.fit_rows], classes)
    g_valid = gold_ids(valid["gold"], classes)
    noisy = inputs.train_ids
    labelled = noisy >= 0
    train_pred = post.train.argmax(1).numpy()
    cal_train = calibrated(post.train, post).numpy()
    cal_valid = calibrated(post.valid, post)

    def acc_f1(pred: np.ndarray, gold: np.ndarray) -> list[float]:
        return [round(float(np.mean(pred == gold)), 4), round(float(macro_f1(gold, pred, c)), 4)]

    floors = {}
    for floor in FLOORS:
        w = class_floor_weights(torch.from_numpy(cal_train), inputs.y_train, floor=floor) if floor else None
        floors[str(floor)] = acc_f1(reweighted(torch.from_numpy(cal_train), w).argmax(1).numpy(), g_train)
    if arrays:
        os.makedirs(arrays, exist_ok=True)
        name = f"{os.path.basename(os.path.normpath(data_dir))}-seed{seed}-" + _variant_name(overrides)
        np.savez_compressed(
            os.path.join(arrays, name + ".npz"),
            valid_calibrated=cal_valid.numpy(),
            valid_unlabelled=unlabelled.numpy(),
            valid_prior=prior.valid.probs.numpy(),
            valid_plain=ens.noisy_posteriors["valid"].numpy(),
            train_plain=ens.noisy_posteriors["train"].numpy(),
            valid_noisy=inputs.valid_ids,
            valid_gold=g_valid,
            train_calibrated=cal_train,
            train_noisy=noisy,
            train_gold=g_train,
            temperature=np.array(post.temperature),
            vote_smoothing=np.array(post.vote_smoothing),
            channel=np.eye(c) if prior.channel is None else prior.channel.numpy(),
        )
    return {
        "data": os.path.basename(os.path.normpath(data_dir)),
        "seed": seed,
        "variant": overrides,
        "seconds": run.seconds,
        "facts": {
            k: prior.metrics[k] for k in ("noise_model", "k", "held_out_label_agreement", "noisy_fraction")
        }
        | {
            "space": prior.space,
            "posterior_temperature": post.temperature,
            "vote_smoothing": post.vote_smoothing,
        },
        "llm_train": acc_f1(noisy[labelled], g_train[labelled]),
        "prior_train": acc_f1(prior.train.probs.argmax(1).numpy(), g_train),
        "refined_train": acc_f1(train_pred, g_train),
        "refined_valid": acc_f1(post.valid.argmax(1).numpy(), g_valid),
        "refined_valid_unlabelled": acc_f1(unlabelled.argmax(1).numpy(), g_valid),
        "plain_valid": acc_f1(ens.noisy_posteriors["valid"].argmax(1).numpy(), g_valid),
        "refined_train_by_class_floor": floors,
        "refined_valid_ece": round(float(ece(cal_valid.numpy(), g_valid)), 4),
        "wrong_share": {
            "estimated": round(float(1 - cal_train[labelled, noisy[labelled]].mean()), 4),
            "train_gold": round(float(np.mean(noisy[labelled] != g_train[labelled])), 4),
        },
    }


def emit(row: dict, path: str) -> None:
    """One result row: printed, and appended to the JSON-lines file `path`."""
    print(json.dumps(row), flush=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="[{}]", help="JSON list of CalibrationConfig overrides")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--arrays", help="dir for one .npz per (set, variant): the scored arrays (design data)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="JSON lines, one per (set, variant), appended")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    for data_dir in args.data:
        for overrides in json.loads(args.variants):
            row = front_half(data_dir, args.seed, overrides, args.cache_dir, args.arrays)
            row |= {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": machine,
            }
            emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
