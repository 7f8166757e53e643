"""`emaillog`: the command line. `main()` is the console script and `python -m pipeline`.

One module per command, each with `add_parser(subparsers)` (see `common.AddParser`):

    migrate.py    `emaillog migrate`: apply the database migrations
    directory.py  `emaillog directory import|export|retire`: the directory as CSV files
    explain.py    `emaillog explain`: which rule fires for a message, nothing written
    run.py        `emaillog run`: the service, until SIGTERM or SIGINT
    ui.py         `emaillog ui`: only the web UI and REST API (no intake), until signalled
    demo/         `emaillog demo`: the service against exchange_sim, on demo data
    common.py     what the commands share: logging, error lines, the signal handling

This module only builds the parser, loads the settings and turns errors into one line
each on stderr:

    exit 0  success
    exit 1  a runtime error (database unreachable, bad input file, ...)
    exit 2  a usage or configuration error (argparse, EMAILLOG_* variables)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.cli import demo, directory, explain, migrate, run, ui
from pipeline.cli.common import AddParser, error
from pipeline.config import Settings
from pipeline.errors import ConfigError, EmailLogError, describe
from pipeline.logs import get_logger

log = get_logger(__name__)

#: Every command, in `--help` order. To add one: write a module with
#: `add_parser(subparsers)` and list it here.
COMMANDS: tuple[AddParser, ...] = (
    migrate.add_parser,
    directory.add_parser,
    explain.add_parser,
    run.add_parser,
    ui.add_parser,
    demo.add_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emaillog",
        description="Log e-mail between salespersons/purchasers and contacts as interactions. "
        "Configuration comes from EMAILLOG_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"emaillog {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        code: int = handler(args, settings)
        return code
    except ConfigError as exc:
        for problem in exc.problems:
            error(problem)
        return 2
    except EmailLogError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            error(line)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line for the user, the traceback at DEBUG
        log.debug("unexpected error", exc_info=True)
        error(f"unexpected {describe(exc)} (EMAILLOG_LOG_LEVEL=DEBUG shows details)")
        return 1
