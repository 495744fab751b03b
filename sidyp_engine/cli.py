"""`sidyp calibrate` and `sidyp predict`: the engine from the command line.

Reads CSV or JSONL (`text`, `noisy_label`, optional `gold_label`; names overridable), runs the method
with a progress bar per stage, and writes the served model, `labels.csv` and `report.json`. Bad input
exits with status 2 and a message naming the file, the problem and the rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sidyp_engine.cli_options import add_config_options, config_from_args
from sidyp_engine.tables import read_table_file
from sidyp_engine.types import CalibrationStopped, InvalidInputError, Progress

EXIT_INVALID_INPUT = 2
EXIT_STOPPED = 130
ROW_HINT = "rows count data records from 0 (in a CSV file, row r is on line r + 2)"


# ---------------------------------------------------------------------------------------------- input
def read_table(path: str, args, need_labels: bool) -> dict[str, Any]:
    """texts, labels (None = missing) and gold (or None) of one file, through the engine's one reader."""
    table = read_table_file(
        path,
        text_column=args.text_column,
        label_column=args.label_column,
        gold_column=args.gold_column,
        require_labels=need_labels,
        gold_in_labels=False,  # an eval file's gold class may be one the labeller never used
        min_classes=0,  # the class list is checked over all files together (and by calibrate)
    )
    return {
        "path": path,
        "texts": table.texts,
        "labels": table.noisy,
        "gold": table.gold,
        "trusted": table.trusted,
    }


def _classes_from(args, tables: Sequence[dict[str, Any]]) -> list[str]:
    if args.labels:
        return [c.strip() for c in args.labels.split(",") if c.strip()]
    seen = {label for t in tables if t["labels"] is not None for label in t["labels"] if label is not None}
    return sorted(seen)


# ---------------------------------------------------------------------------------------------- progress
class StageProgress:
    """One progress bar per stage on stderr (tqdm when it is importable, else a plain line per 10%)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.stage: str | None = None
        self.bar = None
        self.last_tenth = -1
        self.started = time.perf_counter()

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        if p.stage == "done":  # the summary follows; a bar for it would only repeat 100%
            self.close()
            return
        if p.stage != self.stage:
            self.close()
            self.stage = p.stage
            self.last_tenth = -1
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=1000,
                    desc=f"{p.stage:>10}",
                    file=sys.stderr,
                    leave=True,
                    bar_format="{desc}: {percentage:3.0f}%|{bar:30}| {elapsed}{postfix}",
                )
            except ImportError:
                self.bar = None
        shown = {k: round(float(v), 4) for k, v in list(p.metrics.items())[:3]}
        if self.bar is not None:
            self.bar.n = int(round(1000 * min(max(p.fraction, 0.0), 1.0)))
            # set_postfix_str refreshes the bar (tqdm rate-limits terminal writes itself)
            self.bar.set_postfix_str(
                (p.message + " " + " ".join(f"{k}={v}" for k, v in shown.items())).strip()
            )
        else:
            tenth = int(p.fraction * 10)
            if tenth != self.last_tenth:
                self.last_tenth = tenth
                print(f"[{p.stage}] {100 * p.fraction:5.1f}% {p.message} {shown or ''}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopOnSignal:
    """First Ctrl-C asks the engine to stop at the next batch; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nstopping after the current batch (Ctrl-C again to abort)", file=sys.stderr)

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread (e.g. called from a test runner thread)
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def __call__(self) -> bool:
        return self.requested


# ---------------------------------------------------------------------------------------------- output
def write_eval_predictions(path: str, texts: Sequence[str], probs: np.ndarray, classes: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "text", "predicted_label", "confidence"] + [f"p_{c}" for c in classes])
        for i, text in enumerate(texts):
            j = int(probs[i].argmax())
            w.writerow([i, text, classes[j], f"{probs[i, j]:.6f}"] + [f"{float(p):.6f}" for p in probs[i]])


def run_report(args, config, train, valid, evaluation, result) -> dict[str, Any]:
    """Report v2 of this run. The served model is scored on the eval texts, so the report rates the model
    `sidyp predict` serves; rows whose gold label is missing or not a class are counted, not scored."""
    from sidyp_engine.report import build_report

    served_probs = None
    if evaluation is not None and result.model is not None:
        served_probs = result.model.predict_proba(evaluation["texts"])
    files = (("train", args.train), ("valid", args.valid), ("eval", args.eval))
    # File names, not paths: a report is often shared.
    inputs = {key: os.path.basename(path) if path else None for key, path in files}
    return build_report(
        result,
        eval_gold=None if evaluation is None else evaluation["gold"],
        eval_given=None if evaluation is None else evaluation["labels"],
        served_eval_probs=served_probs,
        inputs={
            **inputs,
            "n_valid": 0 if valid is None else len(valid["texts"]),
            "n_eval": 0 if evaluation is None else len(evaluation["texts"]),
        },
        config=config.model_dump(),
    )


# ---------------------------------------------------------------------------------------------- commands
def cmd_calibrate(args) -> int:
    from sidyp_engine.data import encode_labels, validate_classes

    config = config_from_args(args)
    train = read_table(args.train, args, need_labels=True)
    valid = read_table(args.valid, args, need_labels=True) if args.valid else None
    evaluation = read_table(args.eval, args, need_labels=False) if args.eval else None
    classes = validate_classes(_classes_from(args, [t for t in (train, valid) if t is not None]))
    # Check labels per file here so the message names the file the bad rows are in.
    for table in (train, valid):
        if table is not None:
            encode_labels(table["labels"], classes, what=table["path"])

    from transformers.utils import logging as hf_logging

    from sidyp_engine.pipeline import calibrate

    hf_logging.disable_progress_bar()  # per-model "Loading weights" bars would interleave with ours
    os.makedirs(args.out, exist_ok=True)
    bar = StageProgress(enabled=not args.quiet)
    started = time.perf_counter()
    with StopOnSignal() as stop:
        try:
            result = calibrate(
                train["texts"],
                train["labels"],
                classes,
                valid_texts=None if valid is None else valid["texts"],
                valid_labels=None if valid is None else valid["labels"],
                extra_texts=None if evaluation is None else evaluation["texts"],
                config=config,
                trusted_labels=train["trusted"],
                progress=bar,
                should_stop=stop,
                work_dir=args.work_dir,
            )
        finally:
            bar.close()
    wall = time.perf_counter() - started

    from sidyp_engine.labels import label_table, write_labels_csv
    from sidyp_engine.report import write_report_files

    result.model.save(os.path.join(args.out, "model"))
    write_labels_csv(os.path.join(args.out, "labels.csv"), label_table(result, train["texts"]))
    if evaluation is not None and result.extra_posteriors is not None:
        write_eval_predictions(
            os.path.join(args.out, "eval_predictions.csv"),
            evaluation["texts"],
            np.asarray(result.extra_posteriors),
            classes,
        )
    report = run_report(args, config, train, valid, evaluation, result)
    write_report_files(args.out, report)
    print(summary_text(report, args.out, wall))
    return 0


def summary_text(report: dict[str, Any], out_dir: str, wall_seconds: float) -> str:
    n, flagged = report["n_rows"], report["n_flagged"]
    lines = [
        f"classes: {len(report['labels'])}   training rows: {n}   wall: {wall_seconds:.1f}s",
        f"estimated share of wrong noisy labels: {report['noise_share']:.1%}",
        f"flagged as label issues: {flagged} of {n} ({flagged / max(n, 1):.1%})",
        f"served model temperature: {report['served']['temperature']:.3f}",
    ]
    lines += _delivered_lines(report)
    lines += [f"warning: {w['message']}" for w in report["warnings"]]
    ev = report.get("eval")
    if ev and ev["n_scored"]:
        lines.append(f"on {ev['n_scored']} gold-labelled eval rows:")
        if ev["llm_label_accuracy"] is not None:
            lines.append(f"  {'LLM labels':<22} accuracy {ev['llm_label_accuracy']:.3f}")
        lines.append(f"  {'':<22} {'accuracy':>9} {'macro-F1':>9} {'ECE':>7}")
        for key, name in (
            ("noisy_classifier", "noisy-label classifier"),
            ("refined_posterior", "refined posterior"),
            ("served", "served"),
        ):
            if s := ev.get(key):
                lines.append(f"  {name:<22} {s['accuracy']:>9.3f} {s['macro_f1']:>9.3f} {s['ece']:>7.3f}")
    lines.append(f"outputs in {out_dir}: model/, labels.csv, report.json, report.html, plots/")
    return "\n".join(lines)


def _delivered_lines(report: dict[str, Any]) -> list[str]:
    """What the do-no-harm stage delivered and why, and the estimates (the report's own words)."""
    from sidyp_engine.report import ESTIMATE_SOURCES, gold_free_note, shown_estimates
    from sidyp_engine.selection import CANDIDATE_DESCRIPTIONS

    selection = report.get("selection") or {}
    if not selection.get("kept"):
        return []
    labels, model = selection["kept"], selection.get("kept_model")
    lines = [
        f"delivered labels: {CANDIDATE_DESCRIPTIONS.get(labels, labels)}",
        f"delivered model:  {CANDIDATE_DESCRIPTIONS.get(model, model)}",
        f"  why: {selection.get('reason', '')}",
    ]
    shown = shown_estimates(report)
    if shown:
        lines.append("estimates (no gold labels read):")
        for title, e in shown:
            source = ESTIMATE_SOURCES.get(e.get("method"), e.get("method"))
            lines.append(f"  {title:<28} {e['accuracy']:.3f} [{e['low']:.3f}, {e['high']:.3f}]  {source}")
        if note := gold_free_note(shown):
            lines.append(f"  {note}")
    return lines


def _resolve_model_dir(path: str) -> str:
    from sidyp_engine.served import META_FILE

    nested = os.path.join(path, "model")
    if not os.path.isfile(os.path.join(path, META_FILE)) and os.path.isfile(os.path.join(nested, META_FILE)):
        return nested  # the --out dir of `sidyp calibrate`
    return path


def _read_predict_inputs(args) -> list[str]:
    texts = list(args.texts or [])
    if args.input:
        if args.input == "-":
            texts += [line.rstrip("\n") for line in sys.stdin if line.strip()]
        elif args.input.lower().endswith((".csv", ".jsonl", ".ndjson", ".json")):
            texts += read_table_file(args.input, text_column=args.text_column, require_labels=False).texts
        else:
            if not os.path.isfile(args.input):
                raise InvalidInputError(f"{args.input}: file not found")
            with open(args.input, encoding="utf-8") as f:
                texts += [line.rstrip("\n") for line in f if line.strip()]
    if not texts:
        raise InvalidInputError("no texts to predict: give TEXT arguments or --input FILE")
    bad = [i for i, t in enumerate(texts) if not t.strip()]
    if bad:
        raise InvalidInputError("empty text", rows=bad)
    return texts


def cmd_predict(args) -> int:
    from sidyp_engine.served import ServedClassifier

    texts = _read_predict_inputs(args)
    model = ServedClassifier.load(_resolve_model_dir(args.model), device=args.device or "cpu")
    probs = model.predict_proba(texts, batch_size=args.batch_size or 64)
    if args.json:
        out = []
        for i, text in enumerate(texts):
            j = int(probs[i].argmax())
            out.append(
                {
                    "text": text,
                    "label": model.classes[j],
                    "confidence": float(probs[i, j]),
                    "probabilities": {c: float(p) for c, p in zip(model.classes, probs[i], strict=True)},
                }
            )
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for i, text in enumerate(texts):
            j = int(probs[i].argmax())
            print(f"{model.classes[j]}\t{probs[i, j]:.3f}\t{text}")
    return 0


def _guard(command):
    """Turn bad input into exit status 2 with a message on stderr; a requested stop into 130."""

    def run(args) -> int:
        try:
            return command(args)
        except InvalidInputError as e:
            hint = f"\n  ({ROW_HINT})" if e.rows else ""
            print(f"sidyp {args.command}: error: {e}{hint}", file=sys.stderr)
            return EXIT_INVALID_INPUT
        except CalibrationStopped as e:
            print(f"sidyp {args.command}: stopped: {e}", file=sys.stderr)
            return EXIT_STOPPED

    return run


def add_engine_commands(subparsers) -> None:
    """Register `calibrate` and `predict` on an argparse subparsers object (used by app/cli.py)."""
    cal = subparsers.add_parser(
        "calibrate",
        help="fit SiDyP on an LLM-labelled dataset and write a calibrated model",
        description="Fit SiDyP on texts with noisy (LLM) labels; write the served model, labels.csv and report.json.",
    )
    cal.add_argument("--train", required=True, help="CSV or JSONL with text and noisy_label columns")
    cal.add_argument(
        "--valid", help="optional validation file with noisy labels (else 10%% of train is held out)"
    )
    cal.add_argument(
        "--eval", help="optional file of texts to score (gold_label column, if any, is used for scores)"
    )
    cal.add_argument("--out", required=True, help="output directory")
    cal.add_argument("--text-column", default="text")
    cal.add_argument("--label-column", default="noisy_label")
    cal.add_argument("--gold-column", default="gold_label")
    cal.add_argument(
        "--labels", help="comma-separated class list (default: the distinct labels of train + valid)"
    )
    add_config_options(cal)
    cal.add_argument("--work-dir", help="checkpoint stages here; a repeated run reuses finished stages")
    cal.add_argument("--quiet", action="store_true", help="no progress bars")
    cal.set_defaults(func=_guard(cmd_calibrate))

    pred = subparsers.add_parser(
        "predict",
        help="label texts with a calibrated model",
        description="Print label and calibrated confidence per text (tab-separated), or JSON with --json.",
    )
    pred.add_argument("texts", nargs="*", metavar="TEXT")
    pred.add_argument("--model", required=True, help="model dir (or the --out dir of sidyp calibrate)")
    pred.add_argument(
        "--input", help="file of texts: CSV/JSONL (text column) or one text per line; '-' = stdin"
    )
    pred.add_argument("--text-column", default="text")
    pred.add_argument("--json", action="store_true", help="JSON list with all class probabilities")
    pred.add_argument("--batch-size", type=int)
    pred.add_argument("--device", choices=["cpu", "cuda", "auto"])
    pred.set_defaults(func=_guard(cmd_predict))


def main(argv: list[str] | None = None) -> int:
    """Engine-only entry point (`python -m sidyp_engine.cli`), without the service commands."""
    parser = argparse.ArgumentParser(prog="sidyp", description="Calibrate classifiers trained on LLM labels.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
