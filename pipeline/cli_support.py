"""Small helpers shared by the command modules (kept out of cli.py to avoid import cycles)."""

from __future__ import annotations

import logging
import sys

from pipeline.config import Settings


def configure_command_logging(settings: Settings) -> None:
    """Logging for one-shot commands: stderr (stdout carries their output), warnings only
    unless EMAILLOG_LOG_LEVEL=DEBUG. The service configures its own (JSON) logging."""
    level = logging.DEBUG if settings.log_level.upper() == "DEBUG" else logging.WARNING
    logging.basicConfig(
        stream=sys.stderr, level=level, format="emaillog: %(levelname)s: %(message)s"
    )
    # pgserver reports every start/stop step at INFO; only its problems matter here.
    logging.getLogger("pgserver").setLevel(max(level, logging.WARNING))
