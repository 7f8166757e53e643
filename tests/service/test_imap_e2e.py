"""End to end on a real Dovecot: mail APPENDed to the queue folder, processed by `serve()`
with EMAILLOG_SOURCE=imap (built by `build_source`, as in production) into real PostgreSQL.
Every rule, each transport security mode, and the link kept for a stored message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from pipeline.config import Settings
from pipeline.model import Outcome
from tests.dovecot import USER, Dovecot, imap_values
from tests.service.harness import (
    BOSS,
    BUYER,
    OTHER,
    OTHER_HOME,
    QUEUE,
    SALES,
    STORAGE,
    STRANGER,
    Service,
    mime,
    running,
    service_settings,
)
from tests.source.imap_kit import dovecot_server

TRASH = "Trash"


@pytest.fixture
async def server() -> AsyncIterator[Dovecot]:
    async with dovecot_server() as dovecot:
        yield dovecot


def imap_service_settings(server: Dovecot, db: str, **overrides: Any) -> Settings:
    return service_settings(db, **{**imap_values(server), **overrides})


def settled(service: Service, server: Dovecot, total: int) -> bool:
    return (
        service.total() == total
        and not server.uids(QUEUE)
        and service.value("emaillog_in_flight_messages") == 0
    )


async def test_every_rule_end_to_end_on_dovecot(server: Dovecot, db: str) -> None:
    settings = imap_service_settings(server, db, never_log=("blocked.test",), disposal="trash")
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
            server.append(QUEUE, raw, flags="\\Draft" if name == "draft" else "")
        await service.until(lambda: settled(service, server, len(messages)))
        copy_raw, _ = mime(sender=SALES, to=BUYER, message_id=messages["outbound"][1])
        server.append(QUEUE, copy_raw)  # rule 3: the same Message-ID again
        await service.until(lambda: settled(service, server, len(messages) + 1))
        counts = {o: service.count(o) for o in Outcome}
    assert counts == {
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
    # Logged mail is in storage once each; the rest in \Trash, except sensitive mail,
    # which is always expunged.
    assert len(server.uids(STORAGE)) == 2
    assert len(server.uids(TRASH)) == 6
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT mailbox, state, storage_item_id, web_link FROM stored_message ORDER BY id"
        )
        entries = await conn.fetchval("SELECT count(*) FROM interaction_log_entry")
    finally:
        await conn.close()
    validity = server.uidvalidity(STORAGE)
    assert {r["storage_item_id"] for r in rows} == {f"{validity}:{u}" for u in server.uids(STORAGE)}
    assert all(r["mailbox"] == USER and r["state"] == "stored" for r in rows)
    assert all(
        r["web_link"].startswith(f"imap://queue%40example.com@localhost:{server.tls_port}/")
        for r in rows
    )
    assert entries == 4


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
async def test_each_security_mode_end_to_end(server: Dovecot, db: str, security: str) -> None:
    port = server.tls_port if security == "tls" else server.port
    settings = imap_service_settings(server, db, imap_security=security, imap_port=port)
    async with running(settings) as service:
        raw, _ = mime(sender=SALES, to=BUYER)
        server.append(QUEUE, raw)
        await service.until(lambda: settled(service, server, 1))
        assert service.count(Outcome.LOGGED) == 1
    assert len(server.uids(STORAGE)) == 1
