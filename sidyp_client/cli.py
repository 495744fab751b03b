"""Terminal commands over the client: `sidyp datasets|jobs|models ...` (also `python -m sidyp_client`).

The server comes from SIDYP_URL (default http://127.0.0.1:8000) and the key from SIDYP_API_KEY, or from
--url / --api-key. Results go to stdout as JSON (one object, or one per line for rows); progress bars
and errors go to stderr. A problem+json answer is printed with its row errors and exits 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from sidyp_client.client import DEFAULT_URL, Client
from sidyp_client.errors import SidypError, format_problem

EXIT_PROBLEM = 1
EXIT_JOB_NOT_SUCCEEDED = 3


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _command(fn: Callable[[Client, argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    """Open a client from the flags/environment, run, and turn a SidypError into readable lines + exit 1."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            with Client(args.url, args.api_key) as client:
                return int(fn(client, args) or 0)
        except SidypError as exc:
            print(format_problem(exc), file=sys.stderr)
            return EXIT_PROBLEM
        except ValueError as exc:  # no key configured, a bad --param
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_PROBLEM

    return run


def parse_param(text: str) -> tuple[str, Any]:
    """`k=v` with v read as JSON when it is (numbers, true/false/null), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--param wants key=value, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


# ------------------------------------------------------------------------------------------------ commands
@_command
def cmd_datasets_upload(client: Client, args: argparse.Namespace) -> int:
    labels = json.loads(args.labels) if args.labels else None
    dataset = client.datasets.create(
        args.path, name=args.name, text_column=args.text_column, label_column=args.label_column, labels=labels
    )
    _print_json(dataset.raw)
    return 0


@_command
def cmd_jobs_create(client: Client, args: argparse.Namespace) -> int:
    job = client.jobs.create(
        args.dataset,
        dict(args.param or []),
        validation_dataset_id=args.validation_dataset,
        eval_dataset_id=args.eval_dataset,
    )
    _print_json(job.raw)
    return 0


@_command
def cmd_jobs_wait(client: Client, args: argparse.Namespace) -> int:
    job = client.jobs.wait(args.job_id, timeout=args.timeout, progress=not args.quiet)
    _print_json(job.raw)
    if job.status != "succeeded":
        detail = f": {job.error.code}: {job.error.message}" if job.error else ""
        print(f"job {job.id} {job.status}{detail}", file=sys.stderr)
        return EXIT_JOB_NOT_SUCCEEDED
    return 0


@_command
def cmd_jobs_labels(client: Client, args: argparse.Namespace) -> int:
    if args.csv:
        flagged = True if args.flagged else None
        client.jobs.labels_csv(args.job_id, corrected=args.corrected, path=args.csv, is_label_issue=flagged)
        print(f"wrote {args.csv}", file=sys.stderr)
        return 0
    for row in client.jobs.labels(args.job_id, is_label_issue=True if args.flagged else None):
        print(json.dumps(row, ensure_ascii=False))
    return 0


@_command
def cmd_jobs_report(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.jobs.report(args.job_id))
    return 0


@_command
def cmd_models_predict(client: Client, args: argparse.Namespace) -> int:
    for p in client.models.predict(args.model_id, args.texts):
        print(json.dumps({"text": p.text, "label": p.label, "confidence": round(p.confidence, 4)}))
    return 0


# -------------------------------------------------------------------------------------------------- parser
def _connection_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("SIDYP_URL", DEFAULT_URL), help="env SIDYP_URL")
    common.add_argument("--api-key", default=os.environ.get("SIDYP_API_KEY"), help="env SIDYP_API_KEY")
    return common


def add_client_commands(subparsers) -> None:
    """Add `datasets`, `jobs` and `models` (each with its own subcommands) to an argparse subparsers."""
    common = _connection_flags()

    datasets = subparsers.add_parser("datasets", help="upload datasets to a sidyp server")
    ds = datasets.add_subparsers(dest="datasets_command", required=True)
    upload = ds.add_parser("upload", parents=[common], help="upload a CSV / TSV / JSON Lines file")
    upload.add_argument("path")
    upload.add_argument("--name")
    upload.add_argument("--text-column", default="text")
    upload.add_argument("--label-column", default="noisy_label")
    upload.add_argument("--labels", help='declared class names as a JSON array, e.g. \'["a","b"]\'')
    upload.set_defaults(func=cmd_datasets_upload)

    jobs = subparsers.add_parser("jobs", help="calibration jobs on a sidyp server")
    js = jobs.add_subparsers(dest="jobs_command", required=True)
    create = js.add_parser("create", parents=[common], help="start a calibration job")
    create.add_argument("--dataset", required=True, help="dataset id")
    create.add_argument("--param", action="append", type=parse_param, metavar="K=V", help="e.g. epochs=3")
    create.add_argument("--validation-dataset")
    create.add_argument("--eval-dataset")
    create.set_defaults(func=cmd_jobs_create)
    wait = js.add_parser("wait", parents=[common], help="follow a job to its end (exit 3 unless succeeded)")
    wait.add_argument("job_id")
    wait.add_argument("--timeout", type=float, help="seconds")
    wait.add_argument("--quiet", action="store_true", help="no progress bars")
    wait.set_defaults(func=cmd_jobs_wait)
    labels = js.add_parser("labels", parents=[common], help="refined labels: JSON lines, or --csv OUT")
    labels.add_argument("job_id")
    labels.add_argument("--flagged", action="store_true", help="only rows flagged as label issues")
    labels.add_argument("--csv", metavar="OUT", help="write the server's CSV export to OUT")
    labels.add_argument("--corrected", action="store_true", help="with --csv: apply saved reviews")
    labels.set_defaults(func=cmd_jobs_labels)
    report = js.add_parser("report", parents=[common], help="the job's report as JSON")
    report.add_argument("job_id")
    report.set_defaults(func=cmd_jobs_report)

    models = subparsers.add_parser("models", help="calibrated models on a sidyp server")
    ms = models.add_subparsers(dest="models_command", required=True)
    predict = ms.add_parser("predict", parents=[common], help="label texts with a model")
    predict.add_argument("model_id")
    predict.add_argument("texts", nargs="+", metavar="TEXT")
    predict.set_defaults(func=cmd_models_predict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sidyp", description="Client commands for a sidyp server.")
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
