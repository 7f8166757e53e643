"""Source kits: the per-source plumbing behind the contract suite (test_contract.py).

A kit opens one kind of `MailSource` against its server (or none), and does to that server
what the world does: transport delivers mail, a client saves a draft, someone deletes an
item, the connection drops, the server throttles. A new source (Graph, IMAP) joins the
suite by adding a kit here and an entry in `KITS`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from exchange_sim import Simulator
from pipeline.errors import Throttled
from pipeline.model import MailRef
from pipeline.sources import Disposal, MailSource, SourceEvents
from pipeline.sources.ews import EwsSource
from pipeline.sources.memory import QUEUE as MEMORY_QUEUE
from pipeline.sources.memory import STORAGE as MEMORY_STORAGE
from pipeline.sources.memory import TRASH as MEMORY_TRASH
from pipeline.sources.memory import MemorySource
from tests.source.conftest import AUDIT, FOLDERS, MAILBOX, QUEUE, STORAGE, settings_for
from tests.source.graph_kit import graph_kit
from tests.source.imap_kit import imap_kit


class Folder(enum.Enum):
    QUEUE = "queue"
    STORAGE = "storage"
    TRASH = "trash"
    #: Where Disposal.MOVE puts mail: every kit opens its source with one configured.
    DISPOSAL = "disposal"


class SourceKit(Protocol):
    """What the contract suite needs from one kind of source."""

    async def open_source(self) -> MailSource:
        """A new source on the kit's mailbox, opened (closed by the kit at the end)."""
        ...

    def deliver(self, raw: bytes) -> str:
        """Transport delivery into the queue; the item id. A server may add a Message-ID."""
        ...

    def create(self, raw: bytes) -> str:
        """A client saves `raw` (sent mail) in the queue: a missing Message-ID stays missing."""
        ...

    def save_draft(self, raw: bytes) -> str:
        """A client saves `raw` as a draft in the queue."""
        ...

    async def remove(self, item_id: str) -> None:
        """Someone else deletes the item."""
        ...

    def drop_connection(self) -> None:
        """The server loses the source's subscription."""
        ...

    def throttle_next_fetch(self, seconds: float) -> None:
        """The server answers the next fetch with 'busy, back off `seconds`'."""
        ...

    def ids(self, folder: Folder) -> set[str]:
        """The item ids in `folder`, as the server holds them."""
        ...


# --- memory ---


class MemoryKit:
    def __init__(self, events: SourceEvents) -> None:
        self.source = MemorySource(MAILBOX, disposal_folder=AUDIT, events=events)

    async def open_source(self) -> MailSource:
        await self.source.open()
        return self.source

    def deliver(self, raw: bytes) -> str:
        return self.source.deliver(raw).item_id

    def create(self, raw: bytes) -> str:
        return self.source.deliver(raw).item_id  # MemorySource adds no Message-ID

    def save_draft(self, raw: bytes) -> str:
        return self.source.deliver(b"X-Unsent: 1\r\n" + raw).item_id  # how MIME marks a draft

    async def remove(self, item_id: str) -> None:
        self.source.remove(item_id)

    def drop_connection(self) -> None:
        self.source.drop_connection()

    def throttle_next_fetch(self, seconds: float) -> None:
        self.source.fail_next("fetch", Throttled("busy", retry_after=seconds))

    def ids(self, folder: Folder) -> set[str]:
        names = {
            Folder.QUEUE: MEMORY_QUEUE,
            Folder.STORAGE: MEMORY_STORAGE,
            Folder.TRASH: MEMORY_TRASH,
            Folder.DISPOSAL: AUDIT,
        }
        return set(self.source.folder(names[folder]))


@asynccontextmanager
async def memory_kit(events: SourceEvents) -> AsyncIterator[SourceKit]:
    kit = MemoryKit(events)
    try:
        yield kit
    finally:
        await kit.source.close()


# --- EWS, through exchangelib against exchange_sim ---

EWS_FOLDERS = {
    Folder.QUEUE: QUEUE,
    Folder.STORAGE: STORAGE,
    Folder.TRASH: "Deleted Items",
    Folder.DISPOSAL: AUDIT,
}


def sim_folder_ids(sim: Simulator, folder: str) -> set[str]:
    """The one place the kit lists a simulator folder (public `Simulator.list_items`)."""
    return {item["id"] for item in sim.list_items(MAILBOX, folder)}


class EwsKit:
    def __init__(self, sim: Simulator, events: SourceEvents) -> None:
        self.sim = sim
        self.events = events
        self.opened: list[EwsSource] = []

    async def open_source(self) -> MailSource:
        source = EwsSource(settings_for(self.sim, disposal=f"move:{AUDIT}"), self.events)
        self.opened.append(source)
        await source.open()
        return source

    def deliver(self, raw: bytes) -> str:
        return self.sim.deliver(MAILBOX, QUEUE, raw)

    def create(self, raw: bytes) -> str:
        return self.sim.create_item(MAILBOX, QUEUE, raw)

    def save_draft(self, raw: bytes) -> str:
        return self.sim.save_draft(MAILBOX, QUEUE, raw)

    async def remove(self, item_id: str) -> None:
        # The simulator has no public "delete": send the DeleteItem another client would,
        # through the open source (the server cannot tell clients apart).
        result = await self.opened[-1].dispose([MailRef(item_id)], Disposal.HARD_DELETE)
        assert result == [None]

    def drop_connection(self) -> None:
        assert self.sim.expire_subscriptions(), "no subscription to drop"

    def throttle_next_fetch(self, seconds: float) -> None:
        self.sim.set_busy(1, back_off_ms=round(seconds * 1000))  # the next request, any kind

    def ids(self, folder: Folder) -> set[str]:
        return sim_folder_ids(self.sim, EWS_FOLDERS[folder])


@asynccontextmanager
async def ews_kit(events: SourceEvents) -> AsyncIterator[SourceKit]:
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as sim:
        kit = EwsKit(sim, events)
        try:
            yield kit
        finally:
            for source in kit.opened:
                await source.close()


KITS: dict[str, Callable[[SourceEvents], AbstractAsyncContextManager[SourceKit]]] = {
    "memory": memory_kit,
    "ews": ews_kit,
    "imap": imap_kit,  # Dovecot: tests/source/imap_kit.py
    "graph": graph_kit,  # exchange_sim's Graph face: tests/source/graph_kit.py
}
