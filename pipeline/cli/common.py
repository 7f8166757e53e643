"""What every command shares: the `add_parser` signature, logging for one-shot commands,
and `until_signalled()`, the one place that installs and removes SIGTERM/SIGINT handlers
(used by `run` and `demo`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import TypeAlias

from pipeline.config import Settings

#: What `add_parser` receives: the `COMMAND` subparsers of `emaillog`.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: Each command module's `add_parser(subparsers)`: registers the command and sets
#: `handler=<function(args, settings) -> exit code>`.
AddParser = Callable[[Subparsers], None]

#: The signals that stop the service: SIGTERM from the orchestrator, SIGINT from Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def configure_command_logging(settings: Settings) -> None:
    """Logging for one-shot commands: stderr (stdout carries their output), warnings only
    unless EMAILLOG_LOG_LEVEL=DEBUG. The service configures its own (JSON) logging."""
    level = logging.DEBUG if settings.log.level == "DEBUG" else logging.WARNING
    logging.basicConfig(
        stream=sys.stderr, level=level, format="emaillog: %(levelname)s: %(message)s"
    )
    # pgserver reports every start/stop step at INFO; only its problems matter here.
    logging.getLogger("pgserver").setLevel(max(level, logging.WARNING))


@contextlib.asynccontextmanager
async def until_signalled() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT while the block runs: pass `event.wait` to
    `serve(shutdown=...)`. The caller may set it too, to stop the service itself.

    The handlers replace the default ones (SIGINT's KeyboardInterrupt) so that a signal
    starts the service's drain instead of cancelling whatever happens to be running;
    leaving the block restores the defaults."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def error(message: str) -> None:
    """One line on stderr, in the shape argparse uses for its own errors."""
    print(f"emaillog: error: {message}", file=sys.stderr)
