"""Quality benchmark on LLM-labelled data: noisy-label baseline vs SiDyP vs the served model.

    python -m benchmarks.quality --data ../shared/data/semeval-mixtral-fewshot --seeds 3 \
        --out benchmarks/results/semeval-mixtral-fewshot.json [--ablation]

The data dir holds train.csv, valid.csv and test.csv with columns text, noisy_label, gold_label. Training
and model selection see only texts and noisy labels (train + valid); gold labels are read only to score
predictions on test. Classes are the distinct noisy labels of train + valid; a test row whose gold class
the labeller never used stays in the scores and can only be counted wrong.

Rows of the result (each metric as mean and sample std over seeds):
  noisy_baseline  one classifier of the same backbone, fine-tuned on the noisy labels for the same epochs,
                  epoch selected by noisy-label accuracy on valid (stage 1 with one branch, no co-reg);
  noisy_ensemble  the stage-1 ensemble of the SiDyP run itself, P(ỹ | x) (free: it is part of the run);
                  the run's own plain candidate is the baseline's recipe (`stages.ensemble.plain_config`),
                  so where the run keeps plain, sidyp equals noisy_baseline;
  sidyp           the refined posterior P(y | x) on the test texts;
  served          the distilled, temperature-scaled served model on the test texts.
With --ablation: knn_prior (the class-balanced k-NN vote over the likely-clean set, alone),
noise_model_prior (the dynamic prior the refiner is trained on: that vote refined by the class-conditional
noise model; equal to knn_prior where the noise model is off, e.g. rule-like labels) and
refiner_no_dynamic_update (the same run with the candidate-weight update off; stage 1 and the sentence
embeddings are reused from the full run's checkpoints, so only the refiner is retrained).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from sidyp_engine import selection
from sidyp_engine.metrics import score_all
from sidyp_engine.types import CalibrationConfig

METRICS = ("accuracy", "macro_f1", "ece")
# sidyp / served: what the run delivers (after the do-no-harm selection); refined / distilled: the method's
# own outputs whether kept or not; plain_model: the plain fine-tune served as it is.
MAIN_ROWS = (
    "noisy_baseline", "logreg", "noisy_ensemble", "sidyp", "served", "refined", "distilled", "plain_model",
)  # fmt: skip
ABLATION_ROWS = ("noisy_baseline", "knn_prior", "noise_model_prior", "refiner_no_dynamic_update", "sidyp")


# ---------------------------------------------------------------------------------------------- data
def read_split(path: str) -> dict[str, list]:
    """texts, noisy labels (None = missing) and gold labels (None where absent) of one split."""
    from sidyp_engine.tables import read_table_file

    # a test row's gold class may be one the labeller never used: it stays, scored as always wrong
    table = read_table_file(path, gold_in_labels=False, min_classes=0)
    gold = table.gold if table.gold is not None else [None] * len(table.texts)
    return {"texts": table.texts, "noisy": table.noisy, "gold": gold}


def subsample(split: dict[str, list], limit: int | None, seed: int = 0) -> dict[str, list]:
    """A fixed random subset (same for every method seed), so seeds vary only the method."""
    n = len(split["texts"])
    if limit is None or limit >= n:
        return split
    keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    return {k: [v[i] for i in keep] for k, v in split.items()}


def gold_ids(gold: list[str | None], classes: list[str]) -> np.ndarray:
    """Gold labels as ids; a gold class outside `classes` gets id C (never predicted, always wrong)."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(g, len(classes)) for g in gold], dtype=np.int64)


def score(probs: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    probs = np.asarray(probs, dtype=np.float64)
    # one zero column for the "unknown gold class" id, so it is scored as a class nobody predicts
    padded = np.concatenate([probs, np.zeros((len(probs), 1))], axis=1)
    out = score_all(padded, y, n_classes + 1, n_bins=15)
    return {k: out[k] for k in (*METRICS, "nll")}


# ---------------------------------------------------------------------------------------------- machine
def machine_info(device: str) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def code_version() -> dict[str, Any] | None:
    """The commit the run's code came from, and whether the engine's or the benchmarks' Python files had
    uncommitted edits (None outside a git checkout): a summary that pools runs of several rounds says which
    code made each."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        code_files = (":(glob)sidyp_engine/**/*.py", ":(glob)benchmarks/**/*.py")  # not results JSON
        edited = git("status", "--porcelain", "--untracked-files=no", "--", *code_files)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "edited": bool(edited)}


def peak_rss_mb() -> dict[str, float]:
    """ru_maxrss (KiB on Linux) of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own, 1), "children": round(children, 1), "total": round(own + children, 1)}


# ---------------------------------------------------------------------------------------------- runs
def run_noisy_baseline(cfg: CalibrationConfig, train, valid, test, classes) -> tuple[np.ndarray, float]:
    """Stage 1 with one branch (co-regularisation needs two): the plain noisy-label fine-tune."""
    from sidyp_engine.classifier import train_ensemble
    from sidyp_engine.data import encode_labels
    from sidyp_engine.device import resolve_device
    from sidyp_engine.model import load_tokenizer, resolve_backbone
    from sidyp_engine.stages.ensemble import plain_config

    t0 = time.perf_counter()
    backbone = resolve_backbone(cfg.backbone)
    # the baseline is what a user gets by fine-tuning on the LLM labels as they are
    out = train_ensemble(
        plain_config(cfg),
        backbone,
        load_tokenizer(backbone),
        train["texts"],
        torch.from_numpy(encode_labels(train["noisy"], classes)),
        valid["texts"],
        torch.from_numpy(encode_labels(valid["noisy"], classes)),
        test["texts"],
        len(classes),
        resolve_device(cfg.device),
    )
    probs = out.noisy_posteriors["extra"].numpy()
    del out
    return probs, time.perf_counter() - t0


@contextlib.contextmanager
def dynamic_update_off():
    """Refiner with the candidate-weight update disabled (prior_update_rate = 0).

    CalibrationConfig has no switch for it, so the benchmark swaps the refiner stage's `refiner_config`
    for one whose rate is 0; the stage looks it up at call time.
    """
    import dataclasses

    from sidyp_engine.stages import refine

    original = refine.refiner_config

    def no_update(cfg):
        return dataclasses.replace(original(cfg), prior_update_rate=0.0)

    refine.refiner_config = no_update
    try:
        yield
    finally:
        refine.refiner_config = original


def _copy_stage_checkpoints(src: str, dst: str, stages: tuple[str, ...]) -> None:
    os.makedirs(dst, exist_ok=True)
    for stage in stages:
        for ext in (".json", ".safetensors"):
            path = os.path.join(src, stage + ext)
            if os.path.isfile(path):
                shutil.copy2(path, dst)
    if "served" in stages and os.path.isdir(os.path.join(src, "served")):
        shutil.copytree(os.path.join(src, "served"), os.path.join(dst, "served"), dirs_exist_ok=True)


# What --cache-dir keeps between benchmark runs: stage 1 and the frozen embeddings, whose engine keys cover
# every setting they read. Later stages are always recomputed, so a change to them is measured as it is.
CACHED_STAGES = ("stage1", "plain", "embeddings")


def _seed_dir(args, seed: int) -> str:
    name = os.path.basename(os.path.normpath(args.data))
    work = os.path.join(args.cache_dir, f"{name}-seed{seed}")
    os.makedirs(work, exist_ok=True)
    return work


def _seed_cache(args, seed: int) -> str:
    """The seed's work dir under --cache-dir, emptied of everything but CACHED_STAGES and the baseline."""
    work = _seed_dir(args, seed)
    for entry in os.listdir(work):
        if entry.split(".")[0] in CACHED_STAGES or entry.startswith("baseline."):
            continue
        path = os.path.join(work, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return work


def cached_noisy_baseline(
    cfg: CalibrationConfig, train, valid, test, classes, args
) -> tuple[np.ndarray, float]:
    """run_noisy_baseline, its test probabilities kept under --cache-dir (the baseline reads no engine stage
    after stage 1's trainer, so its result depends only on the data and these settings)."""
    if not args.cache_dir:
        return (*run_noisy_baseline(cfg, train, valid, test, classes), False)
    from safetensors.numpy import load_file, save_file

    from sidyp_engine.checkpoints import call_key

    fields = ("epochs", "batch_size", "learning_rate", "max_length", "backbone", "seed")
    key = call_key(
        {
            "train": [train["texts"], train["noisy"]],
            "valid": [valid["texts"], valid["noisy"]],
            "test": test["texts"],
            "classes": classes,
            "config": {f: getattr(cfg, f) for f in fields},
        }
    )
    work = _seed_dir(args, cfg.seed)
    meta_path, tensor_path = os.path.join(work, "baseline.json"), os.path.join(work, "baseline.safetensors")
    if os.path.isfile(meta_path) and os.path.isfile(tensor_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("key") == key:
            return load_file(tensor_path)["probs"], float(meta["seconds"]), True
    probs, seconds = run_noisy_baseline(cfg, train, valid, test, classes)
    save_file({"probs": np.ascontiguousarray(probs, dtype=np.float32)}, tensor_path)
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump({"key": key, "seconds": seconds}, f)
    return probs, seconds, False


def run_seed(cfg: CalibrationConfig, train, valid, test, classes, y_test, args) -> dict[str, Any]:
    from benchmarks import quality_estimates as qe
    from sidyp_engine.pipeline import calibrate

    n_classes = len(classes)
    out: dict[str, Any] = {"seed": cfg.seed, "scores": {}, "wall_seconds": {}}
    trusted = qe.draw_trusted(train, args.trusted, cfg.seed) if args.trusted else None
    out["trusted_rows"] = sum(t is not None for t in trusted) if trusted else 0

    def run_calibrate(work_dir: str | None):
        return calibrate(
            train["texts"],
            train["noisy"],
            classes,
            valid_texts=valid["texts"],
            valid_labels=valid["noisy"],
            extra_texts=test["texts"],
            config=cfg,
            progress=_progress_printer(args.verbose),
            work_dir=work_dir,
            collect_diagnostics=True,
            trusted_labels=trusted,
        )

    with tempfile.TemporaryDirectory(prefix="sidyp-bench-") as tmp:
        work = os.path.join(tmp, "full")
        if args.cache_dir:
            work = _seed_cache(args, cfg.seed)
        t0 = time.perf_counter()
        result = run_calibrate(work if args.ablation or args.cache_dir else None)
        out["wall_seconds"]["sidyp_end_to_end"] = round(time.perf_counter() - t0, 2)
        # with --cache-dir a reused stage 1 leaves the end-to-end time short of a real run's
        out["reused"] = {"stage1": bool(result.diagnostics.get("reused_stage1"))}
        _score_run(result, test, y_test, n_classes, out)
        test_probs = qe.candidate_test_probs(result, result.diagnostic_arrays)
        # the logreg row: the engine's linear probe (scikit-learn's default logistic regression)
        out["scores"]["logreg"] = score(test_probs[selection.PROBE], y_test, n_classes)
        out["estimates"] = qe.estimate_table(result, train, valid, test, classes, y_test, test_probs)
        print(qe.format_estimates(out["estimates"]), file=sys.stderr, flush=True)
        if args.dump_arrays:
            qe.dump_arrays(
                args.dump_arrays,
                cfg.seed,
                result,
                valid,
                classes,
                y_test,
                test_probs,
                train["gold"],
            )
        if args.ablation:
            _run_ablation(result, run_calibrate, work, os.path.join(tmp, "no-dynamic-update"), y_test, out)
        del result
    gc.collect()
    if not args.no_baseline:
        probs, seconds, cached = cached_noisy_baseline(cfg, train, valid, test, classes, args)
        out["reused"]["noisy_baseline"] = cached
        out["scores"]["noisy_baseline"] = score(probs, y_test, n_classes)
        out["wall_seconds"]["noisy_baseline"] = round(seconds, 2)
    gc.collect()
    out["peak_rss_mb_so_far"] = peak_rss_mb()["total"]
    return out


DIAGNOSTICS_KEPT = (
    "selected_epoch",
    "noisy_fraction",
    "clean_set_size",
    "certain_share",
    "prior_agrees_with_label",
    "held_out_label_agreement",
    "knn_space",
    "noise_model",
    "k",
    "flagged_share",
)


def _score_run(result, test, y_test: np.ndarray, n_classes: int, out: dict[str, Any]) -> None:
    """Scores of the refined posteriors, the stage-1 ensemble and the served model on the test texts."""
    out["wall_seconds"]["sidyp_stages"] = {k: round(float(v), 2) for k, v in result.timings.items()}
    out["scores"]["sidyp"] = score(result.extra_posteriors, y_test, n_classes)
    out["scores"]["noisy_ensemble"] = score(
        result.diagnostic_arrays["extra_stage1_ensemble"], y_test, n_classes
    )
    t1 = time.perf_counter()
    served_probs = result.model.predict_proba(test["texts"])
    out["wall_seconds"]["served_predict_test"] = round(time.perf_counter() - t1, 2)
    out["scores"]["served"] = score(served_probs, y_test, n_classes)
    arrays = result.diagnostic_arrays
    for row, key in (("refined", "extra_refined_posteriors"), ("distilled", "extra_served")):
        out["scores"][row] = score(arrays[key], y_test, n_classes)
    out["scores"]["plain_model"] = score(arrays["extra_plain_model"], y_test, n_classes)
    out["served_temperature"] = float(result.model.temperature)
    out["noise_share_estimate"] = float(result.noise_share)
    out["flagged_share"] = float(np.mean(result.is_label_issue))
    out["diagnostics"] = {k: result.diagnostics[k] for k in DIAGNOSTICS_KEPT if k in result.diagnostics}


def _run_ablation(result, run_calibrate, work: str, ablation_dir: str, y_test, out: dict[str, Any]) -> None:
    """The priors alone, and the same run with the refiner's dynamic update off."""
    n_classes = result.extra_posteriors.shape[1]
    arrays = result.diagnostic_arrays
    out["scores"]["knn_prior"] = score(arrays["extra_vote_prior"], y_test, n_classes)
    out["scores"]["noise_model_prior"] = score(arrays["extra_prior"], y_test, n_classes)
    shifts_full = list(result.diagnostics.get("refiner_history", {}).get("weights_shift", []))
    # stage 1, embeddings and the served model are identical for this variant: reuse them
    _copy_stage_checkpoints(work, ablation_dir, ("stage1", "embeddings", "served"))
    t2 = time.perf_counter()
    with dynamic_update_off():
        variant = run_calibrate(ablation_dir)
    out["wall_seconds"]["ablation_no_dynamic_update"] = round(time.perf_counter() - t2, 2)
    out["scores"]["refiner_no_dynamic_update"] = score(variant.extra_posteriors, y_test, n_classes)
    # evidence that the switch took effect: the variant's refiner records no weight shifts
    out["ablation_check"] = {
        "weights_shift_full": shifts_full,
        "weights_shift_no_update": list(
            variant.diagnostics.get("refiner_history", {}).get("weights_shift", [])
        ),
        "note": "the dynamic update runs after each refiner epoch, so with 1 diffusion epoch the "
        "two variants train identically",
    }


def _progress_printer(verbose: bool):
    if not verbose:
        return None
    last: dict[str, int] = {}

    def show(p) -> None:
        tenth = int(p.fraction * 10)
        if last.get(p.stage) != tenth:
            last[p.stage] = tenth
            print(f"  [{p.stage}] {100 * p.fraction:3.0f}% {p.message}", file=sys.stderr, flush=True)

    return show


# ---------------------------------------------------------------------------------------------- summary
def aggregate(runs: list[dict[str, Any]], rows: tuple[str, ...]) -> dict[str, Any]:
    """Per row and metric: mean, sample std (0 for one seed) and the per-seed values."""
    table: dict[str, Any] = {}
    for row in rows:
        per_seed = [r["scores"].get(row) for r in runs]
        if not per_seed or any(s is None or "not_available" in s for s in per_seed):
            reason = next((s["not_available"] for s in per_seed if s and "not_available" in s), "not run")
            table[row] = {"not_available": reason}
            continue
        table[row] = {}
        for metric in (*METRICS, "nll"):
            values = np.array([s[metric] for s in per_seed], dtype=np.float64)
            table[row][metric] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "values": [float(v) for v in values],
            }
    return table


def format_table(table: dict[str, Any], title: str) -> str:
    lines = [title, f"  {'':<26}" + "".join(f"{m:>18}" for m in METRICS)]
    for row, metrics in table.items():
        if "not_available" in metrics:
            lines.append(f"  {row:<26}  not available: {metrics['not_available']}")
            continue
        cells = "".join(f"{metrics[m]['mean']:>11.3f} ± {metrics[m]['std']:.3f}" for m in METRICS)
        lines.append(f"  {row:<26}{cells}")
    return "\n".join(lines)


def stage_means(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for r in runs for k in r["wall_seconds"]["sidyp_stages"]})
    return {
        k: round(float(np.mean([r["wall_seconds"]["sidyp_stages"].get(k, math.nan) for r in runs])), 2)
        for k in keys
    }


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dir with train.csv, valid.csv, test.csv")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (seed-start, seed-start + 1, ...)")
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--branches", type=int, default=3)
    p.add_argument("--diffusion-epochs", type=int, default=4)
    p.add_argument("--k", type=int, default=None, help="k-NN neighbours (default: the engine's, by space)")
    p.add_argument("--noise-fraction", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--backbone", default=None)
    p.add_argument("--encoder", default=None)
    p.add_argument("--knn-space", default="auto", choices=["auto", "stage1", "encoder"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--ablation", action="store_true", help="add k-NN prior and no-dynamic-update rows")
    p.add_argument("--no-baseline", action="store_true", help="skip the separate noisy-label baseline")
    p.add_argument(
        "--trusted", type=int, default=0, help="N random training rows get their gold label as trusted_label"
    )
    p.add_argument(
        "--limit-train", type=int, default=None, help="random subset of N training rows (smoke runs)"
    )
    p.add_argument(
        "--dump-arrays",
        default=None,
        help="dir for one .npz per seed: every candidate's validation predictions and test probabilities, "
        "the noisy and gold validation labels (design data for the selection rule; not committed)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="keep each seed's stage 1, frozen embeddings and noisy baseline here and reuse them in a later "
        "run of the same data and settings (everything after stage 1 is recomputed); clear it when stage-1 "
        "code changes",
    )
    p.add_argument("--limit-test", type=int, default=None, help="random subset of N test rows (smoke runs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--verbose", action="store_true", help="stage progress on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    with contextlib.suppress(Exception):  # the per-load weight bars would bury the benchmark's own output
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    started = time.perf_counter()
    name = os.path.basename(os.path.normpath(args.data))
    train = subsample(read_split(os.path.join(args.data, "train.csv")), args.limit_train)
    valid = read_split(os.path.join(args.data, "valid.csv"))
    test = subsample(read_split(os.path.join(args.data, "test.csv")), args.limit_test)
    classes = sorted({y for y in train["noisy"] + valid["noisy"] if y is not None})
    # gold labels: test only, for scoring
    y_test = gold_ids(test["gold"], classes)
    llm_acc = float(np.mean([n == g for n, g in zip(test["noisy"], test["gold"], strict=True)]))

    noise_fraction: Any = "auto" if args.noise_fraction == "auto" else float(args.noise_fraction)
    base = {
        "epochs": args.epochs,
        "branches": args.branches,
        "diffusion_epochs": args.diffusion_epochs,
        "k": args.k,
        "noise_fraction": noise_fraction,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "backbone": args.backbone,
        "encoder": args.encoder,
        "knn_space": args.knn_space,
        "device": args.device,
    }
    if args.learning_rate is not None:
        base["learning_rate"] = args.learning_rate
    from sidyp_engine.device import resolve_device

    device = str(resolve_device(args.device))
    print(
        f"{name}: {len(train['texts'])} train / {len(valid['texts'])} valid / {len(test['texts'])} test, "
        f"{len(classes)} classes, device {device}, seeds {args.seed_start}..{args.seed_start + args.seeds - 1}",
        file=sys.stderr,
    )

    from benchmarks import quality_estimates as qe

    code = code_version()

    def write_report(runs: list[dict[str, Any]]) -> dict[str, Any]:
        """Write the JSON for the seeds finished so far: a long run that is cut short keeps its results."""
        results = aggregate(runs, MAIN_ROWS)
        report: dict[str, Any] = {
            "dataset": name,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(
                ["python -m benchmarks.quality", *(argv if argv is not None else sys.argv[1:])]
            ),
            "config": CalibrationConfig(seed=args.seed_start, **base).model_dump(mode="json"),
            "seeds": [r["seed"] for r in runs],
            "n": {"train": len(train["texts"]), "valid": len(valid["texts"]), "test": len(test["texts"])},
            "subsampled": {"train": args.limit_train, "test": args.limit_test},
            "classes": classes,
            # "given": the labels the run was given (train + valid); a development set's test labels are the
            # source labeller's (benchmarks/dev_sets.py)
            "llm_label_accuracy": {"test": llm_acc, "given": qe.given_label_accuracy([train, valid])},
            "results": results,
            "std": "sample standard deviation over seeds (ddof=1); 0 for one seed",
            "wall_seconds": {
                "sidyp_stages_mean": stage_means(runs),
                "sidyp_end_to_end_mean": round(
                    float(np.mean([r["wall_seconds"]["sidyp_end_to_end"] for r in runs])), 2
                ),
                "per_seed": [r["wall_seconds"] for r in runs],
                "benchmark_total": round(time.perf_counter() - started, 2),
            },
            "peak_rss_mb": peak_rss_mb(),
            "machine": machine_info(device),
            "code": code,
            "runs": runs,
            "estimate_mean_absolute_error": qe.mean_absolute_errors(runs),
        }
        if args.ablation:
            report["ablation"] = aggregate(runs, ABLATION_ROWS)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)

        return report

    runs = []
    for s in range(args.seed_start, args.seed_start + args.seeds):
        cfg = CalibrationConfig(seed=s, **base)
        t = time.perf_counter()
        run = run_seed(cfg, train, valid, test, classes, y_test, args)
        runs.append(run)
        report = write_report(runs)
        brief = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in run["scores"].items() if "accuracy" in v)
        print(f"seed {s}: {time.perf_counter() - t:.0f}s; accuracy: {brief}", file=sys.stderr, flush=True)

    results = report["results"]

    print(f"\n{name}  (test n={len(test['texts'])}, LLM label accuracy {llm_acc:.3f}, {len(runs)} seed(s))")
    print(format_table(results, "results (mean ± std over seeds)"))
    if args.ablation:
        print(format_table(report["ablation"], "ablation"))
    w = report["wall_seconds"]
    print(
        f"sidyp end to end {w['sidyp_end_to_end_mean']:.1f}s per seed; stages "
        + ", ".join(f"{k} {v:.1f}s" for k, v in w["sidyp_stages_mean"].items())
    )
    print(f"peak RSS {report['peak_rss_mb']['total']:.0f} MB; benchmark total {w['benchmark_total']:.0f}s")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
