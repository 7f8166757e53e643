"""How a setting is declared (`setting`, `group`), the typed values settings are parsed
into, and the parsers that make them.

Each parser takes the variable's text and returns the value, or raises ValueError with a
reason (`config.Settings.from_env` adds the variable's name and collects every problem).
`as_text` is the inverse: how a variable spells a value.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.model import Disposal

PREFIX = "EMAILLOG_"
PUBLIC_PREFIX = "public:"


@dataclass(frozen=True, slots=True)
class FolderPath:
    """A configured folder: path parts under the mailbox's folder root, or under the public
    folders (`public:/...`)."""

    public: bool
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str) -> FolderPath:
        """ "Email Logging/Queue" or "public:/Email Logging/Queue" (leading "/" optional)."""
        text = raw.strip()
        public = text.lower().startswith(PUBLIC_PREFIX)
        if public:
            text = text[len(PUBLIC_PREFIX) :]
        parts = tuple(p.strip() for p in text.split("/") if p.strip())
        if not parts:
            raise ValueError(f"folder path {raw!r} names no folder")
        return cls(public=public, parts=parts)

    def __str__(self) -> str:
        return (PUBLIC_PREFIX + "/" if self.public else "") + "/".join(self.parts)


@dataclass(frozen=True, slots=True)
class DisposalSetting:
    """EMAILLOG_DISPOSAL: how non-logged mail leaves the queue, and where `move:` puts it."""

    how: Disposal = Disposal.HARD_DELETE
    folder: FolderPath | None = None

    @classmethod
    def parse(cls, raw: str) -> DisposalSetting:
        text = raw.strip()
        if text.startswith("move:"):
            return cls(Disposal.MOVE, FolderPath.parse(text[len("move:") :]))
        if text in ("delete", "trash"):
            return cls(Disposal(text))
        raise ValueError("expected delete, trash or move:<folder>")

    def __str__(self) -> str:
        return f"move:{self.folder}" if self.folder is not None else self.how.value


class SourceKind(enum.StrEnum):
    """EMAILLOG_SOURCE: which mail system the queue lives in."""

    EWS = "ews"
    GRAPH = "graph"
    IMAP = "imap"


class EwsAuth(enum.StrEnum):
    BASIC = "basic"
    NTLM = "ntlm"
    OAUTH2 = "oauth2"
    NONE = "none"


class ImapSecurity(enum.StrEnum):
    """EMAILLOG_IMAP_SECURITY: implicit TLS (993), STARTTLS or none (143)."""

    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


class ImapAuth(enum.StrEnum):
    LOGIN = "login"
    PLAIN = "plain"
    XOAUTH2 = "xoauth2"


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def parse_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be {low}-{high}, got {value}" if high else f"must be >= {low}")
        return value

    return parse


def positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def choice(kind: type[enum.StrEnum]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return kind(raw.strip().lower())
        except ValueError:
            raise ValueError(f"expected one of {', '.join(kind)}, got {raw!r}") from None

    return parse


def ews_version(raw: str) -> str:
    numbers = [n.strip() for n in raw.split(".")]
    if not 1 <= len(numbers) <= 4 or not all(n.isdigit() for n in numbers):
        raise ValueError(f"expected like 15.1, got {raw!r}")
    return raw.strip()


def log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"unknown level {raw!r}")
    return level


positive_int = int_in(1)


def as_text(value: Any) -> str:
    """A setting's value as its variable would spell it (the inverse of its parser)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def setting(variable: str, default: Any, parse: Callable[[str], Any] = str, doc: str = "") -> Any:
    """Declare one setting: its variable (without the prefix), default, parser and meaning."""
    return field(
        default=default, metadata={"variable": PREFIX + variable, "parse": parse, "doc": doc}
    )


def group(kind: type[Any]) -> Any:
    """Declare a group of settings (a frozen dataclass of `setting`s or groups)."""
    return field(default_factory=kind, metadata={"group": kind})
