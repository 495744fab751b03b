"""The `sidyp` command: engine commands (calibrate, predict) and service commands (serve, worker).

Imports are deferred to each command so `sidyp predict` never loads the web stack and
`sidyp worker` never loads FastAPI.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from app.service_cli import add_service_commands
    from sidyp_engine.cli import add_engine_commands

    parser = argparse.ArgumentParser(prog="sidyp", description="Calibrate classifiers trained on LLM labels.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(sub)
    add_service_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
