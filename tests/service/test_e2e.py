"""End to end: mail delivered to exchange_sim, processed by `serve()` through exchangelib into
real PostgreSQL. Every rule of GUIDE section 2, catch-up, and the mail-server faults."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from exchange_sim import Simulator
from pipeline.model import Outcome
from tests.service.harness import (
    BOSS,
    BUYER,
    MAILBOX,
    OTHER,
    OTHER_HOME,
    PUBLIC_QUEUE,
    PUBLIC_STORAGE,
    QUEUE,
    SALES,
    STORAGE,
    STRANGER,
    disposals,
    hashed,
    mime,
    running,
    settings_for,
)


async def test_every_rule_end_to_end(sim: Simulator, db: str) -> None:
    settings = settings_for(sim, db, never_log=("blocked.test",))
    messages = {
        "outbound": mime(sender=SALES, to=f"{BUYER}, {OTHER}", subject="Offer"),
        "inbound": mime(sender=OTHER_HOME, to=f"{SALES}, {BOSS}"),
        "sensitive": mime(sender=SALES, to=BUYER, sensitivity="Private"),
        "excluded": mime(sender=SALES, to=f"{BUYER}, someone@blocked.test"),
        "draft": mime(sender=SALES, to=BUYER),
        "no_parties": mime(sender=SALES, to=None),
        "address_too_long": mime(sender=STRANGER, to="x@" + "d" * 80 + ".test"),
        "unregistered": mime(sender=STRANGER, to=BUYER),
    }
    async with running(settings) as service:
        for name, (raw, _) in messages.items():
            if name == "draft":  # saved by a client, not delivered by transport
                sim.create_item(MAILBOX, QUEUE, raw, is_draft=True, is_read=False)
            else:
                sim.deliver(MAILBOX, QUEUE, raw)
        await service.until(lambda: service.settled(sim, len(messages)))

        # Rule 3: a second copy of a logged message (same Message-ID), after the first.
        copy_raw, _ = mime(sender=SALES, to=BUYER, message_id=messages["outbound"][1])
        sim.deliver(MAILBOX, QUEUE, copy_raw)
        await service.until(lambda: service.settled(sim, len(messages) + 1))

        expected = {
            Outcome.LOGGED: 2,
            Outcome.SENSITIVE: 1,
            Outcome.EXCLUDED: 1,
            Outcome.NO_PARTIES: 1,
            Outcome.DUPLICATE: 1,
            Outcome.ADDRESS_TOO_LONG: 1,
            Outcome.UNREGISTERED: 1,
            Outcome.FAILED: 0,
            Outcome.DRAFT: 1,
        }
        assert {o: service.count(o) for o in Outcome} == expected
        assert service.value("emaillog_interactions_logged_total") == 4
        assert service.value("emaillog_in_flight_messages") == 0
        assert service.value("emaillog_last_disposed_timestamp_seconds") > 0
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{settings.http.port}"
            async with http.get(base + "/metrics") as resp:
                exposition = await resp.text()
            async with http.get(base + "/readyz") as resp:
                ready = (resp.status, await resp.json())
            async with http.get(base + "/livez") as resp:
                alive = resp.status
        assert 'emaillog_messages_total{outcome="logged"} 2.0' in exposition
        assert "@" not in exposition  # no addresses in labels
        assert ready[0] == 200 and ready[1]["status"] == "ready"
        assert alive == 200

    # The disposal log says what happened to each message, exactly once.
    log = await disposals(db)
    outbound_id = messages["outbound"][1]
    assert outbound_id is not None
    assert log[hashed(outbound_id)] == ["logged", "duplicate"]
    for name, (_, message_id) in messages.items():
        if name != "outbound":
            assert message_id is not None
            assert log[hashed(message_id)] == [name if name != "inbound" else "logged"]

    # Storage holds exactly the logged messages, and each stored_message points at its copy.
    storage = {item["id"]: item["message_id"] for item in sim.list_items(MAILBOX, STORAGE)}
    assert sorted(storage.values()) == sorted([outbound_id, messages["inbound"][1]])
    conn = await asyncpg.connect(db)
    try:
        stored = await conn.fetch("SELECT * FROM stored_message ORDER BY id")
        entries = await conn.fetch(
            """SELECT s.internet_message_id, e.* FROM interaction_log_entry e
               JOIN stored_message s ON s.id = e.stored_message_id
               ORDER BY e.entry_no"""
        )
    finally:
        await conn.close()
    assert {r["storage_item_id"]: r["internet_message_id"] for r in stored} == storage
    assert all(r["state"] == "stored" for r in stored)

    by_message: dict[str, set[tuple[str, ...]]] = {}
    for e in entries:
        by_message.setdefault(e["internet_message_id"], set()).add(
            (
                e["contact_no"],
                e["contact_alt_address_code"],
                e["salesperson_code"],
                e["information_flow"],
                e["initiated_by"],
            )
        )
    assert by_message[outbound_id] == {
        ("C1", "", "SP1", "outbound", "us"),
        ("C2", "", "SP1", "outbound", "us"),
    }
    assert by_message[messages["inbound"][1]] == {
        ("C2", "HOME", "SP1", "inbound", "them"),
        ("C2", "HOME", "SP2", "inbound", "them"),
    }
    offer = next(e for e in entries if e["internet_message_id"] == outbound_id)
    assert offer["subject"].startswith("Offer")
    assert offer["interaction_template_code"] == "EMAIL"
    assert offer["interaction_group_code"] == "MAIL"
    assert offer["contact_company_no"] == "CO1"


@pytest.mark.parametrize(
    ("queue", "storage"),
    [(QUEUE, STORAGE), (PUBLIC_QUEUE, PUBLIC_STORAGE)],
    ids=["mailbox", "public"],
)
async def test_catch_up_of_mail_waiting_before_start(
    sim: Simulator, db: str, queue: str, storage: str
) -> None:
    waiting = [mime(sender=SALES, to=BUYER) for _ in range(12)]
    waiting += [mime(sender=STRANGER, to=BUYER) for _ in range(8)]
    for raw, _ in waiting:
        sim.deliver(MAILBOX, queue, raw)

    settings = settings_for(sim, db, queue_folder=queue, storage_folder=storage)
    async with running(settings) as service:
        await service.until(lambda: service.settled(sim, 20, queue))
        # And mail arriving afterwards, through the stream.
        late, _ = mime(sender=BUYER, to=SALES)
        sim.deliver(MAILBOX, queue, late)
        await service.until(lambda: service.settled(sim, 21, queue))
        assert service.count(Outcome.LOGGED) == 13
        assert service.count(Outcome.UNREGISTERED) == 8

    assert len(sim.list_items(MAILBOX, storage)) == 13
    log = await disposals(db)
    assert all(len(outcomes) == 1 for outcomes in log.values())
    assert len(log) == 21


async def test_stream_faults_and_throttling_lose_nothing_and_log_nothing_twice(
    sim: Simulator, db: str
) -> None:
    settings = settings_for(sim, db)
    delivered = 0

    def deliver(count: int) -> None:
        nonlocal delivered
        for i in range(count):
            raw, _ = mime(sender=SALES, to=BUYER) if i % 2 else mime(sender=STRANGER, to=BUYER)
            sim.deliver(MAILBOX, QUEUE, raw)
        delivered += count

    async with running(settings) as service:
        deliver(10)
        await service.until(lambda: service.settled(sim, delivered))

        # The stream dies mid-body; mail delivered meanwhile comes in by catch-up.
        sim.drop_streams()
        deliver(10)
        await service.until(lambda: service.settled(sim, delivered))
        # The subscription expires on the server.
        sim.expire_subscriptions()
        deliver(10)
        await service.until(lambda: service.settled(sim, delivered))
        # The server is busy for a while: everyone backs off as told.
        sim.set_busy(6, back_off_ms=100)
        deliver(10)
        await service.until(lambda: service.settled(sim, delivered))

        assert service.value("emaillog_upstream_throttled_total") >= 1
        assert service.value("emaillog_source_reconnects_total") >= 2
        assert service.count(Outcome.FAILED) == 0
        assert service.count(Outcome.LOGGED) == 20

    log = await disposals(db)
    assert len(log) == delivered
    assert all(len(outcomes) == 1 for outcomes in log.values())
    assert len(sim.list_items(MAILBOX, STORAGE)) == 20
