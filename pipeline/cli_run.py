"""`emaillog run`: the service, until SIGTERM or SIGINT.

Checks the configuration first (every problem on its own line, exit 2), logs the effective
configuration with secrets redacted, applies migrations, then serves. SIGTERM/SIGINT stop
intake and drain within EMAILLOG_DRAIN_TIMEOUT_SECONDS; the exit code is then 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from pipeline import __version__, logs
from pipeline.config import Settings
from pipeline.service import serve

log = logging.getLogger("emaillog.run")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the service: watch the queue folder and log interactions",
        description="Watch the queue folder, log interactions, serve /metrics, /livez and "
        "/readyz on EMAILLOG_HTTP_PORT. Stops on SIGTERM or SIGINT after draining.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings.check_service()  # a ConfigError: cli.main prints each problem and exits 2
    logs.configure(settings.log_level, settings.log_format)
    log.info("starting", extra={"fields": {"version": __version__, "config": settings.redacted()}})
    try:
        asyncio.run(_serve_until_signalled(settings))
    except ExceptionGroup as group:
        # A task crashed and the TaskGroup cancelled the rest: log each cause, exit non-zero
        # so the orchestrator restarts us.
        for exc in group.exceptions:
            log.error("service failed", exc_info=exc)
        return 1
    return 0


async def _serve_until_signalled(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(settings, shutdown=stop.wait)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
