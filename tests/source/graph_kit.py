"""The Graph kit: `GraphSource` against exchange_sim's Graph face (app-only, a registered
app and its client-credentials tokens), over the same store the EWS kit uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from exchange_sim import Simulator, SimulatorThread
from pipeline.config import Settings
from pipeline.model import MailRef
from pipeline.sources import Disposal, MailSource, SourceEvents
from pipeline.sources.graph import GraphSource
from tests.settings import make_settings
from tests.sim_graph.conftest import GraphRecorder
from tests.source.conftest import AUDIT, FOLDERS, MAILBOX, QUEUE, STORAGE

APP_ID = "emaillog-tests"
APP_SECRET = "graph-secret"
TENANT = "contoso.onmicrosoft.com"


def graph_id(ews_id: str) -> str:
    """The simulator's Graph ids are its EWS ids in URL-safe base64, as Exchange Online's."""
    return ews_id.replace("/", "-").replace("+", "_")


def graph_values(sim: Simulator | SimulatorThread) -> dict[str, Any]:
    """The settings (flat names) of a Graph source on the simulator's registered test app."""
    return {
        "source": "graph",
        "graph_mailbox": MAILBOX,
        "graph_tenant_id": TENANT,
        "graph_client_id": APP_ID,
        "graph_client_secret": APP_SECRET,
        "graph_url": sim.graph_url,
        "graph_authority_url": sim.base_url,
        "graph_poll_seconds": 0.05,
        "graph_timeout_seconds": 30.0,
        "queue_folder": QUEUE,
        "storage_folder": STORAGE,
    }


def graph_settings(sim: Simulator, **overrides: Any) -> Settings:
    return make_settings(**{**graph_values(sim), **overrides})


class GraphKit:
    def __init__(self, sim: Simulator, events: SourceEvents) -> None:
        self.sim = sim
        self.events = events
        self.opened: list[GraphSource] = []

    async def open_source(self) -> MailSource:
        source = GraphSource(graph_settings(self.sim, disposal=f"move:{AUDIT}"), self.events)
        self.opened.append(source)
        await source.open()
        return source

    def deliver(self, raw: bytes) -> str:
        return graph_id(self.sim.deliver(MAILBOX, QUEUE, raw))

    def create(self, raw: bytes) -> str:
        return graph_id(self.sim.create_item(MAILBOX, QUEUE, raw))

    def save_draft(self, raw: bytes) -> str:
        return graph_id(self.sim.save_draft(MAILBOX, QUEUE, raw))

    async def remove(self, item_id: str) -> None:
        result = await self.opened[-1].dispose([MailRef(item_id)], Disposal.HARD_DELETE)
        assert result == [None]

    def drop_connection(self) -> None:
        # Graph has no subscription to lose: its equivalent is a delta token the server
        # no longer knows (410 Gone / SyncStateNotFound).
        self.sim.graph.expire_delta_tokens()

    def throttle_next_fetch(self, seconds: float) -> None:
        self.sim.graph.throttle(1, retry_after_seconds=seconds)  # the next request, any kind

    def ids(self, folder: Any) -> set[str]:
        names = {"queue": QUEUE, "storage": STORAGE, "trash": "Deleted Items", "disposal": AUDIT}
        items = self.sim.list_items(MAILBOX, names[folder.value])
        return {graph_id(item["id"]) for item in items}


@asynccontextmanager
async def graph_kit(events: SourceEvents) -> AsyncIterator[GraphKit]:
    recorder = GraphRecorder()
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as sim:
        sim.graph.register_app(APP_ID, APP_SECRET)
        sim.graph.record_responses(recorder)
        kit = GraphKit(sim, events)
        try:
            yield kit
        finally:
            for source in kit.opened:
                await source.close()
    # Every JSON answer of the Graph face, checked against Microsoft's metadata.
    assert recorder.invalid() == []
