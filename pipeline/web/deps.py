"""What the web application needs from the rest of the service, in one frozen value.

`emaillog run` builds it from the running service (its pool, its source, its metrics);
`emaillog ui` builds it from a pool and a source it opens only to fetch stored messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from pipeline.config import Settings

#: Fetch a stored message's MIME from the storage folder: (storage item id, Internet
#: Message-ID) -> the raw bytes. Either may be None (a public-folder move returns no item
#: id; a message may have no Message-ID). Raises `ItemGone` when the storage folder no
#: longer holds it, `Retryable` when the mail server cannot be asked right now.
MimeFetcher = Callable[[str | None, str | None], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """The mail source as the operations page shows it (no personal data)."""

    kind: str  # "ews" | "imap" | "graph" | "memory"
    mailbox: str
    connected: bool | None  # None: this process does no intake (`emaillog ui`)
    mode: str | None  # "streaming" | "polling" | None


@dataclass(frozen=True, slots=True)
class WebDeps:
    pool: asyncpg.Pool
    settings: Settings
    fetch_mime: MimeFetcher
    #: The intake's state, when this process runs one (`emaillog run`); None in `emaillog ui`.
    source_status: Callable[[], SourceStatus] | None = None
