"""The benchmark with a second served model distilled another way beside the run's own (design runs for
`stages.serve.distill_served`).

    python -m benchmarks.research.served_variant_run VARIANT SIDE.npz <benchmarks.quality arguments>

VARIANT: `soup` (from the uniform average of the stage-1 branches' weights instead of the best branch
alone: the branches are trained together from one pretrained encoder and pulled towards their mean, so
their average is one model of the same shape; stage 1 must be trained in the run, a --cache-dir checkpoint
keeps only the best branch), `epochsN` (N distillation epochs instead of the engine's 2) or `seedN` (the
engine's recipe with the distillation's random draws moved by N: how far a recipe moves by chance). The run
itself is the engine's, unchanged; the variant has the same targets and temperature rule, and the same seed
but with `seedN`. SIDE.npz gets, per distillation call i (0: the run's served model; with trusted rows 1: its
refit), the validation and evaluation-text logits and the temperature of both (`base`, `variant`), and with
`soup` the stage-1 best branch and soup read as they are. Score with `python -m
benchmarks.research.served_variant RUN.json:SIDE.npz`; read validation for a decision.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from benchmarks import quality
from benchmarks.research.script_io import record_variant
from sidyp_engine import pipeline
from sidyp_engine.model import load_tokenizer, resolve_backbone
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages import serve

_seen: dict[str, object] = {}
_side: dict[str, np.ndarray] = {}


def weight_soup(models) -> torch.nn.Module:
    """The uniform average of the models' floating-point weights (other tensors from the first)."""
    soup = copy.deepcopy(models[0]).float()
    states = [m.state_dict() for m in models]
    averaged = {
        k: (torch.stack([s[k].float() for s in states]).mean(0) if v.is_floating_point() else v)
        for k, v in states[0].items()
    }
    soup.load_state_dict(averaged)
    return soup


def _keep_best_branch(ens):
    if _seen["variant"] != "soup":
        return _original_keep(ens)
    if len(ens.models) < 2:
        raise SystemExit("stage 1 came from a checkpoint with one branch: run without --cache-dir reuse")
    soup = weight_soup(ens.models)
    _seen["soup"] = soup
    extra = _seen["calibrate_kwargs"].get("extra_texts") or []
    valid = _seen["calibrate_kwargs"].get("valid_texts") or []
    tokenizer = _seen["tokenizer"]
    for name, model in (("branch", ens.models[0]), ("soup", soup)):
        reader = ServedClassifier(
            model, tokenizer, _seen["classes"], 1.0, _seen["max_length"], _device(model)
        )
        _side[f"stage1_{name}_valid_logits"] = reader.logits(valid)
        _side[f"stage1_{name}_extra_logits"] = reader.logits(extra)
    return _original_keep(ens)


def _device(model) -> torch.device:
    return next(model.parameters()).device


class _Distil:
    """ServedClassifier whose `distill` also distils the variant and keeps both models' outputs."""

    def __init__(self, variant: str):
        self.variant, self.calls = variant, 0

    def distill(self, init_model, backbone, classes, texts, soft_targets, valid_texts, valid_targets, **kw):
        base = ServedClassifier.distill(
            init_model, backbone, classes, texts, soft_targets, valid_texts, valid_targets, **kw
        )
        init, epochs = init_model, kw.pop("epochs", 2)
        if self.variant == "soup":
            init = _seen["soup"]
        elif self.variant.startswith("epochs"):
            epochs = int(self.variant[len("epochs") :])
        else:  # seedN: the same recipe with its RNG (head, dropout, batch order) moved by N
            cfg = kw["config"]
            kw["config"] = cfg.model_copy(update={"seed": cfg.seed + int(self.variant[len("seed") :])})
        variant = ServedClassifier.distill(
            init, backbone, classes, texts, soft_targets, valid_texts, valid_targets, epochs=epochs, **kw
        )
        extra = _seen["calibrate_kwargs"].get("extra_texts") or []
        i = self.calls
        for name, model in (("base", base), ("variant", variant)):
            _side[f"call{i}_{name}_valid_logits"] = model.logits(valid_texts or [])
            _side[f"call{i}_{name}_extra_logits"] = model.logits(extra)
            _side[f"call{i}_{name}_temperature"] = np.array(model.temperature)
        self.calls += 1
        return base


def _calibrate(*args, **kwargs):
    _seen["calibrate_kwargs"] = kwargs
    _seen["classes"] = list(args[2])
    cfg = kwargs["config"]
    _seen["max_length"] = cfg.max_length
    _seen["tokenizer"] = load_tokenizer(resolve_backbone(cfg.backbone))
    return _original_calibrate(*args, **kwargs)


_original_keep = pipeline.keep_best_branch
_original_calibrate = pipeline.calibrate


def main(argv: list[str]) -> int:
    variant, side, args = argv[0], argv[1], argv[2:]
    known = variant == "soup" or any(
        variant.startswith(p) and variant[len(p) :].isdigit() for p in ("epochs", "seed")
    )
    if not known:
        raise SystemExit(f"unknown variant {variant!r}: soup, epochsN or seedN")
    _seen["variant"] = variant
    if "--seeds" in args and args[args.index("--seeds") + 1] != "1":
        raise SystemExit("one seed per run: the side file holds one run")
    pipeline.keep_best_branch = _keep_best_branch
    pipeline.calibrate = _calibrate
    serve.ServedClassifier = _Distil(variant)
    code = quality.main(args)
    np.savez_compressed(side, **_side)
    record_variant(
        args,
        {
            "served_variant": variant,
            "side": side,
            "runner": "python -m benchmarks.research.served_variant_run",
        },
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
