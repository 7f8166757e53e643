"""`emaillog run`: the service, until SIGTERM or SIGINT.

Checks the configuration first (every problem on its own line, exit 2), logs the effective
configuration with secrets redacted, applies migrations, then serves. SIGTERM/SIGINT stop
intake and drain within EMAILLOG_DRAIN_TIMEOUT_SECONDS; the exit code is then 0.
"""

from __future__ import annotations

import argparse
import asyncio

from pipeline import __version__, logs
from pipeline.cli.common import Subparsers, until_signalled
from pipeline.config import Settings
from pipeline.logs import get_logger
from pipeline.service import serve

log = get_logger(__name__)


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the service: watch the queue folder and log interactions",
        description="Watch the queue folder, log interactions, serve /metrics, /livez and "
        "/readyz on EMAILLOG_HTTP_PORT. Stops on SIGTERM or SIGINT after draining.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings.check_service()  # a ConfigError: cli.main prints each problem and exits 2
    logs.configure(settings.log.level, settings.log.format)
    log.info("starting", extra={"fields": {"version": __version__, "config": settings.redacted()}})
    try:
        asyncio.run(_serve(settings))
    except ExceptionGroup as group:
        # A task crashed and the TaskGroup cancelled the rest: log each cause, exit non-zero
        # so the orchestrator restarts us.
        for exc in group.exceptions:
            log.error("service failed", exc_info=exc)
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    async with until_signalled() as stop:
        await serve(settings, shutdown=stop.wait)
