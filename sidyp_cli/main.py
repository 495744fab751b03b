"""The `sidyp` command: engine commands (calibrate, predict), service commands (serve, worker, healthcheck) and the
HTTP client commands when sidyp_client provides them.

Imports are deferred to each command so `sidyp predict` never loads the web stack and
`sidyp worker` never loads FastAPI.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def _add_client_commands(subparsers) -> None:
    # sidyp_client is optional: the CLI works without it, and gains its commands once it is there.
    try:
        client_cli = importlib.import_module("sidyp_client.cli")
    except ModuleNotFoundError as exc:
        if exc.name not in ("sidyp_client", "sidyp_client.cli"):
            raise  # the client is there but broken: say so rather than hide its commands
        return
    add = getattr(client_cli, "add_client_commands", None)
    if add is not None:
        add(subparsers)


def build_parser() -> argparse.ArgumentParser:
    from sidyp_cli.healthcheck import add_healthcheck_command
    from sidyp_cli.serve import add_serve_command
    from sidyp_cli.worker import add_worker_command
    from sidyp_engine.cli import add_engine_commands

    parser = argparse.ArgumentParser(prog="sidyp", description="Calibrate classifiers trained on LLM labels.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(sub)
    add_serve_command(sub)
    add_worker_command(sub)
    add_healthcheck_command(sub)
    _add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
