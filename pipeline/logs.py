"""Logging setup: one JSON object per line on stdout (or readable text on a terminal).

Structured fields go in `extra={"fields": {...}}`; they become top-level keys of the JSON
line. Never put a subject, an address or a raw Message-ID in them at INFO: the pipeline
logs a hashed Message-ID (see `model.message_id_hash`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

#: Every logger of the service is named by its module under this root:
#: `pipeline.sources.ews` logs as `emaillog.sources.ews`.
ROOT_LOGGER = "emaillog"


def get_logger(module: str) -> logging.Logger:
    """The logger for `module` (pass `__name__`), under the one root `emaillog`."""
    return logging.getLogger(ROOT_LOGGER + module.removeprefix("pipeline"))


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "event", ...fields, "exc"?}`, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable: `time level logger event key=value ...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, aiohttp, exchangelib) through one stdout handler."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # exchangelib logs request bodies (addresses, subjects) at DEBUG: keep it at WARNING.
    logging.getLogger("exchangelib").setLevel(max(logging.WARNING, root.level))
