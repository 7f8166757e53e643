"""`emaillog demo --source graph`: the demo's service reads exchange_sim through its Graph
face (Microsoft Graph, app-only) instead of EWS.

`GraphWorld` wraps the demo's `Simulator`: the few calls the demo makes of its mail server,
with item ids as the Graph source sees them (URL-safe base64). `graph_settings()` registers
a demo app on the simulator and points the service's Graph source at it. The simulator is
passed in (the demo imports it lazily, only in `demo`).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from pipeline.config import GraphSettings, Settings, SourceKind

DEMO_APP_ID = "emaillog-demo"
DEMO_TENANT = "demo.onmicrosoft.com"


def graph_id(ews_id: str) -> str:
    """exchange_sim's Graph ids are its EWS ids in URL-safe base64, as Exchange Online's."""
    return ews_id.replace("/", "-").replace("+", "_")


class GraphWorld:
    """What the demo asks of its mail server, on exchange_sim seen through Graph (`sim`: an
    exchange_sim.Simulator)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    @property
    def base_url(self) -> str:
        return str(self.sim.base_url)

    @property
    def graph_url(self) -> str:
        return str(self.sim.graph_url)

    def deliver(self, mailbox: str, folder: str, raw: bytes) -> str:
        return graph_id(self.sim.deliver(mailbox, folder, raw))

    def save_draft(self, mailbox: str, folder: str, raw: bytes) -> str:
        return graph_id(self.sim.save_draft(mailbox, folder, raw))

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        items = self.sim.list_items(mailbox, folder)
        return [item | {"id": graph_id(item["id"])} for item in items]

    def hint(self, folder: str) -> str:
        return (
            "Deliver more mail: curl --data-binary @message.eml "
            f"'{self.base_url}/_sim/deliver?mailbox=...&folder={folder.replace(' ', '%20')}' "
            f"(the service reads it through Graph at {self.graph_url})"
        )


def graph_settings(settings: Settings, world: GraphWorld, mailbox: str) -> Settings:
    """`settings` with the Graph source pointed at the demo's simulator (a new app)."""
    secret = secrets.token_urlsafe(24)
    world.sim.graph.register_app(DEMO_APP_ID, secret)
    graph = GraphSettings(
        mailbox=mailbox,
        tenant_id=DEMO_TENANT,
        client_id=DEMO_APP_ID,
        client_secret=secret,
        url=world.graph_url,
        authority_url=world.base_url,
        poll_seconds=0.5,
    )
    source = dataclasses.replace(settings.source, kind=SourceKind.GRAPH, graph=graph)
    return dataclasses.replace(settings, source=source)
