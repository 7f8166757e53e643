"""End to end with EMAILLOG_SOURCE=graph: mail delivered to exchange_sim, read through its
Graph face by `serve()` (the source built by `build_source`, as in production) into real
PostgreSQL. Every rule, the delta link kept across a restart, and the same queue logged
alike by the EWS and the Graph source."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from exchange_sim import Simulator
from pipeline.config import Settings
from pipeline.model import Outcome
from tests.conftest import _create_database
from tests.service.harness import (
    BOSS,
    BUYER,
    FOLDERS,
    MAILBOX,
    OTHER,
    OTHER_HOME,
    QUEUE,
    SALES,
    STORAGE,
    STRANGER,
    mime,
    prepare_database,
    running,
    service_settings,
    settings_for,
)
from tests.sim_graph.conftest import GraphRecorder
from tests.source.graph_kit import APP_ID, APP_SECRET, graph_id, graph_settings

MESSAGES = {
    "outbound": dict(sender=SALES, to=f"{BUYER}, {OTHER}", subject="Offer"),
    "inbound": dict(sender=OTHER_HOME, to=f"{SALES}, {BOSS}"),
    "sensitive": dict(sender=SALES, to=BUYER, sensitivity="Private"),
    "confidential": dict(sender=SALES, to=BUYER, sensitivity="Company-Confidential"),
    "excluded": dict(sender=SALES, to=f"{BUYER}, someone@blocked.test"),
    "draft": dict(sender=SALES, to=BUYER),
    "no_parties": dict(sender=SALES, to=None),
    "address_too_long": dict(sender=STRANGER, to="x@" + "d" * 80 + ".test"),
    "unregistered": dict(sender=STRANGER, to=BUYER),
    "no_message_id": dict(sender=OTHER, to=SALES, message_id=None),
}


@pytest.fixture
async def graph_sim() -> AsyncIterator[Simulator]:
    recorder = GraphRecorder()
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as simulator:
        simulator.graph.register_app(APP_ID, APP_SECRET)
        simulator.graph.record_responses(recorder)
        yield simulator
    assert recorder.invalid() == []


def graph_service_settings(sim: Simulator, db: str, **overrides: Any) -> Settings:
    source = graph_settings(sim)
    values: dict[str, Any] = {
        name: value
        for name, value in source.environment().items()
        if name.startswith("EMAILLOG_GRAPH_") or name == "EMAILLOG_SOURCE"
    }
    values = {k.removeprefix("EMAILLOG_").lower(): v for k, v in values.items()}
    values.update(queue_folder=QUEUE, storage_folder=STORAGE, never_log=("blocked.test",))
    values.update(overrides)
    return service_settings(db, **values)


def put(sim: Simulator, name: str, raw: bytes) -> None:
    if name == "draft":  # saved by a client, not delivered by transport
        sim.create_item(MAILBOX, QUEUE, raw, is_draft=True, is_read=False)
    elif name == "no_message_id":  # saved by a client: no Message-ID is added
        sim.create_item(MAILBOX, QUEUE, raw)
    else:
        sim.deliver(MAILBOX, QUEUE, raw)


async def outcome_rows(url: str) -> list[tuple[str, str]]:
    """(message_id_hash, outcome) of every disposal, sorted."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT message_id_hash, outcome FROM disposal_log")
        return sorted((r["message_id_hash"], r["outcome"]) for r in rows)
    finally:
        await conn.close()


async def entry_rows(url: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT e.contact_no, e.contact_alt_address_code, e.salesperson_code,
                      e.information_flow, e.initiated_by, e.description,
                      m.internet_message_id
               FROM interaction_log_entry e
               JOIN stored_message m ON m.id = e.stored_message_id"""
        )
        return sorted(tuple(r.values()) for r in rows)
    finally:
        await conn.close()


async def test_every_rule_end_to_end_with_graph(graph_sim: Simulator, db: str) -> None:
    sim = graph_sim
    settings = graph_service_settings(sim, db, disposal="trash")
    built = {name: mime(**spec) for name, spec in MESSAGES.items()}  # type: ignore[arg-type]
    async with running(settings) as service:
        for name, (raw, _) in built.items():
            put(sim, name, raw)
        await service.until(lambda: service.settled(sim, len(built)), "settled")
        counts = {o: service.count(o) for o in Outcome}
    assert counts[Outcome.LOGGED] == 3 and counts[Outcome.SENSITIVE] == 2
    assert counts[Outcome.DRAFT] == 1 and counts[Outcome.FAILED] == 0
    storage = {graph_id(i["id"]) for i in sim.list_items(MAILBOX, STORAGE)}
    trash = sim.list_items(MAILBOX, "Deleted Items")
    assert len(storage) == 3 and len(trash) == 5  # sensitive mail is never kept
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT mailbox, state, storage_item_id, web_link FROM stored_message"
        )
        link = await conn.fetchval("SELECT delta_link FROM graph_delta_link")
    finally:
        await conn.close()
    assert {r["storage_item_id"] for r in rows} == storage
    assert all(r["state"] == "stored" and r["mailbox"] == MAILBOX for r in rows)
    assert all(r["web_link"].startswith("https://outlook.office365.com/owa/") for r in rows)
    assert "$deltatoken=" in link


async def test_restart_resumes_from_the_kept_delta_link(graph_sim: Simulator, db: str) -> None:
    sim = graph_sim
    settings = graph_service_settings(sim, db)
    async with running(settings) as service:
        sim.deliver(MAILBOX, QUEUE, mime(sender=SALES, to=BUYER)[0])
        await service.until(lambda: service.settled(sim, 1), "first")
    # Delivered while the service is down; then the kept link expires too: both recover.
    sim.deliver(MAILBOX, QUEUE, mime(sender=OTHER, to=SALES)[0])
    async with running(settings) as service:
        await service.until(lambda: service.settled(sim, 1), "caught up")
        sim.graph.expire_delta_tokens()
        sim.deliver(MAILBOX, QUEUE, mime(sender=STRANGER, to=BUYER)[0])
        await service.until(lambda: service.settled(sim, 2), "after expiry")
    assert len(sim.list_items(MAILBOX, STORAGE)) == 2


async def test_ews_and_graph_log_the_same_queue_alike(pg_server_url: str) -> None:
    """The same mixed queue, once through EWS and once through Graph (each into its own
    database): the same outcome for every message and the same entries."""
    built = {name: mime(**spec) for name, spec in MESSAGES.items()}  # type: ignore[arg-type]
    results = {}
    for kind in ("ews", "graph"):
        url = await _create_database(pg_server_url)
        await prepare_database(url)
        recorder = GraphRecorder()
        async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as sim:
            sim.graph.register_app(APP_ID, APP_SECRET)
            sim.graph.record_responses(recorder)
            if kind == "ews":
                settings = settings_for(sim, url, never_log=("blocked.test",))
            else:
                settings = graph_service_settings(sim, url)
            async with running(settings) as service:
                for name, (raw, _) in built.items():
                    put(sim, name, raw)
                await service.until(lambda: service.settled(sim, len(built)), kind)
                counts = {o: service.count(o) for o in Outcome}
        results[kind] = (counts, await outcome_rows(url), await entry_rows(url))
        assert recorder.invalid() == []
    assert results["ews"] == results["graph"]
    assert results["graph"][0][Outcome.LOGGED] == 3
