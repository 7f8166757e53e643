"""Mail sources: where queue messages come from and where they go.

`MailSource` is the seam between the pipeline and a mail system. `ews.EwsSource` is the
first adapter (Exchange Web Services through exchangelib); `memory.MemorySource` is the
in-memory test double; Microsoft Graph and IMAP join as peers. Every source passes one
contract suite (tests/source/test_contract.py). The pipeline knows nothing of EWS: it
sees `MailRef`s arriving, fetches them in batches as `Fetched`, and asks the source to move
or dispose of them in batches.

Batch methods return one result per input, in input order: a value, or the exception for
that item (an `ItemGone`, a `Retryable`, ...). They raise only when the whole call failed
(`Throttled`, `SourceUnavailable`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import asyncpg

from pipeline.model import Disposal, Mail, MailRef

__all__ = [
    "Disposal",
    "Fetched",
    "MailSource",
    "NoEvents",
    "SourceEvents",
    "Stored",
    "UsesDatabase",
]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A queue item with what the rules need to know of it."""

    ref: MailRef
    mail: Mail


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a logged message now lives. `item_id` is None when the server returns no id
    (moves into a public folder); `web_link` is an OWA link when the server gives one."""

    item_id: str | None
    web_link: str | None = None


class SourceEvents(Protocol):
    """Hooks a source calls on the event loop thread (never from its worker threads), so
    the service can feed metrics without the source importing them. Keep them cheap."""

    def on_connected(self, connected: bool) -> None:
        """The subscription went live (True) or was lost (False); called on changes only."""

    def on_reconnect(self) -> None:
        """A new subscription replaced a lost one (not called for the first)."""

    def on_throttled(self, seconds: float) -> None:
        """The server asked us to back off `seconds`: once per ErrorServerBusy the source
        sees, whether it waited itself (the stream) or raised `Throttled` to the caller."""

    def on_mode(self, mode: str) -> None:
        """Intake now works by `mode`: "streaming" (push) or "polling" (push unavailable
        or not wanted); called on changes only."""


class NoEvents:
    """The default `SourceEvents`: ignores everything."""

    def on_connected(self, connected: bool) -> None:
        pass

    def on_reconnect(self) -> None:
        pass

    def on_throttled(self, seconds: float) -> None:
        pass

    def on_mode(self, mode: str) -> None:
        pass


class MailSource(Protocol):
    """A queue folder and its storage folder in one mailbox (or in public folders)."""

    @property
    def mailbox(self) -> str:
        """The mailbox (or 'public') the journal keys stored messages by."""
        ...

    @property
    def connected(self) -> bool:
        """True while intake works: a live subscription, or (without one) the last poll
        of the queue succeeded."""
        ...

    async def open(self) -> None:
        """Connect, resolve the folders; raise FolderNotFound / SourceUnavailable."""
        ...

    async def close(self) -> None: ...

    def arrivals(self) -> AsyncIterator[MailRef]:
        """Every item in the queue folder, now and later, forever: subscribe first, then
        catch up on what is already there, then follow the stream; resubscribe and catch up
        again whenever the subscription is lost. May repeat an item; never skips one."""
        ...

    async def backlog(self) -> int:
        """How many items the queue folder holds right now."""
        ...

    async def fetch(self, refs: Sequence[MailRef]) -> list[Fetched | Exception]: ...

    async def move_to_storage(self, refs: Sequence[MailRef]) -> list[Stored | Exception]: ...

    async def dispose(self, refs: Sequence[MailRef], how: Disposal) -> list[Exception | None]: ...

    async def fetch_stored_mime(self, item_id: str) -> bytes:
        """The raw RFC 5322 bytes of the storage folder's item `item_id` (a `Stored.item_id`),
        as the server keeps them, without marking it read. Raises `ItemGone` when the storage
        folder does not hold it (any more): an id of another folder is not found either, so
        nothing but stored (logged) mail can be read through here. Raises
        `SourceUnavailable` / `Throttled` as the other methods. Needs `open()`, never
        `arrivals()`: `emaillog ui` opens a source only for this."""
        ...

    async def find_in_queue(self, message_id: str) -> list[MailRef]:
        """Queue items with this Internet Message-ID (for the reconciler)."""
        ...

    async def find_in_storage(self, message_id: str) -> list[Stored]:
        """Storage items with this Internet Message-ID (for the reconciler)."""
        ...

    async def find_in_queue_by_key(self, dedupe_key: str) -> list[MailRef]:
        """Queue items WITHOUT an Internet Message-ID whose `Mail.dedupe_key` (as `fetch`
        computes it: `sha256:<content hash>`) is `dedupe_key` (for the reconciler). A
        message with a Message-ID is looked up by `find_in_queue`; its key matches nothing
        here. Every copy with the same content is returned: the journal treats them as one
        message, since they share the key."""
        ...

    async def find_in_storage_by_key(self, dedupe_key: str) -> list[Stored]:
        """Storage items WITHOUT an Internet Message-ID whose `Mail.dedupe_key` is
        `dedupe_key`: as `find_in_queue_by_key`, in the storage folder."""
        ...


@runtime_checkable
class UsesDatabase(Protocol):
    """A source that keeps state of its own in PostgreSQL (the Graph source: its delta
    link). The service hands it the pool before `open()`."""

    def use_database(self, pool: asyncpg.Pool) -> None: ...
