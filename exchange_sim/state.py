"""The simulator's shared state: one `SimState` per simulator, kept on the aiohttp app under
`STATE`.

The EWS handler, the middleware, the /_sim/ side channel and the Python API all reach the
store, the faults, the subscriptions and the open streams through it. It imports none of
them, so none of them need to import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exchange_sim.config import SimConfig
from exchange_sim.faults import Faults
from exchange_sim.graph.state import GraphState
from exchange_sim.model import Folder, Item, StoreError
from exchange_sim.store import Store
from exchange_sim.streaming import StreamRegistry
from exchange_sim.subscriptions import Subscriptions

# Sees every response document: (operation or "Fault", body bytes). Streaming responses are
# reported one complete envelope at a time.
Recorder = Callable[[str, bytes], None]
PUBLIC_PREFIX = "public:"


@dataclass(frozen=True)
class SimSnapshot:
    """Counters and sizes at one moment (GET /_sim/state returns the same fields)."""

    mailboxes: tuple[str, ...]
    items: int  # in every folder of every mailbox and the public tree
    subscriptions: int  # active ones
    open_streams: int  # GetStreamingEvents responses in progress
    in_flight: int  # EWS requests being answered
    requests_served: int  # EWS requests that passed authentication, since the start


@dataclass
class SimState:
    config: SimConfig
    store: Store = field(default_factory=Store)
    faults: Faults = field(default_factory=Faults)
    streams: StreamRegistry = field(default_factory=StreamRegistry)
    graph: GraphState = field(default_factory=GraphState)  # the Graph face (graph/)
    subscriptions: Subscriptions = field(init=False)
    in_flight: int = 0
    requests_served: int = 0
    recorder: Recorder | None = None

    def __post_init__(self) -> None:
        self.subscriptions = Subscriptions(minute_seconds=self.config.minute_seconds)
        self.store.listeners.append(self.subscriptions.on_event)
        self.faults.set_latency(self.config.latency_min_ms, self.config.latency_max_ms)
        for address in self.config.mailboxes:
            self.store.add_mailbox(address)
        for path in self.config.folders:
            self.ensure_folder(path)

    def ensure_folder(self, path: str, mailbox: str | None = None) -> list[str]:
        """Create `path` in `mailbox` (every mailbox when None); "public:/..." in the
        public-folder tree. Returns the folder ids."""
        if path.startswith(PUBLIC_PREFIX):
            return [self.store.ensure_path(path[len(PUBLIC_PREFIX) :], None).id]
        targets = [self.store.mailbox(mailbox)] if mailbox else list(self.store.mailboxes.values())
        return [self.store.ensure_path(path, mb).id for mb in targets]

    def folder(self, mailbox: str | None, path: str) -> Folder:
        """An existing folder: `path` in `mailbox`, or "public:/..." in the public tree."""
        if path.startswith(PUBLIC_PREFIX):
            return self.store.find_path(path[len(PUBLIC_PREFIX) :], None)
        if not mailbox:
            raise StoreError("ErrorNonExistentMailbox", "mailbox is required for mailbox folders")
        return self.store.find_path(path, self.store.mailbox(mailbox))

    def list_items(self, mailbox: str | None, path: str) -> list[dict[str, Any]]:
        """A summary of each item in a folder, in the order they entered it (JSON-ready)."""
        return [item_summary(item) for item in self.folder(mailbox, path).items.values()]

    def snapshot(self) -> SimSnapshot:
        return SimSnapshot(
            mailboxes=tuple(m.address for m in self.store.mailboxes.values()),
            items=len(self.store.items),
            subscriptions=len(self.subscriptions.active),
            open_streams=len(self.streams.open),
            in_flight=self.in_flight,
            requests_served=self.requests_served,
        )


def item_summary(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "changekey": item.changekey,
        "message_id": item.props.message_id,
        "subject": item.props.subject,
        "is_draft": item.is_draft,
        "received": item.received.isoformat(),
        "size": len(item.raw),
    }


STATE: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
