"""Issue 16, point 2: no mail is taken while EMAILLOG_EMAIL_TEMPLATE_CODE names no template.

NAV codeunit 5064 `CheckSetup` fails the whole run when Interaction Template Setup
"E-Mails" names no Interaction Template (it never writes an entry without one). Here the
service keeps running without taking mail: /readyz answers 503 with the reason, the log
says it at start and on every directory reload that still lacks it, the gauge
`emaillog_config_problems` is 1, and intake resumes by itself once the template is
imported. Over the memory source, with a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from pipeline.config import Settings
from pipeline.sources.memory import MemorySource
from tests.service.harness import BUYER, MAILBOX, OTHER, SALES, STRANGER, mime
from tests.service.test_flow import Running, memory_settings, running

TEMPLATE = """INSERT INTO interaction_template
    (code, description, interaction_group_code, unit_cost, unit_duration_min)
    VALUES ('EMAIL', 'E-mail', 'MAIL', 1.50, 3)"""


async def sql(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def readyz(settings: Settings) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{settings.http.port}/readyz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.getMessage().startswith("not taking mail")
    ]


async def settle(service: Running) -> None:
    """Give a (wrongly) open intake every chance to take mail."""
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert service.total() == 0


async def test_no_mail_without_the_template_then_resumes_when_imported(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="emaillog")
    await sql(db, "DELETE FROM interaction_template")
    source = MemorySource(MAILBOX)
    settings = memory_settings(db)
    for raw in (mime(to=BUYER)[0], mime(to=f"{BUYER}, {OTHER}")[0], mime(sender=STRANGER)[0]):
        source.deliver(raw)
    async with running(settings, source) as service:
        await service.until(lambda: service.value("emaillog_config_problems") == 1, "gauge")
        status, body = await readyz(settings)
        assert status == 503
        assert body["checks"]["email_template"] is False
        [problem] = body["problems"]
        assert "EMAILLOG_EMAIL_TEMPLATE_CODE='EMAIL' names no interaction template" in problem
        await settle(service)
        assert len(source.queue()) == 3
        assert len(refusals(caplog)) == 1  # one clear line at start

        # A reload that still lacks it says so again.
        reloads = service.value("emaillog_directory_reloads_total")
        await sql(db, "INSERT INTO contact (no, email) VALUES ('C7', 'c7@theirs.test')")
        await service.until(
            lambda: service.value("emaillog_directory_reloads_total") > reloads, "a reload"
        )
        assert len(refusals(caplog)) == 2
        await settle(service)

        await sql(db, TEMPLATE)  # `emaillog directory import --templates` does this
        await service.until(lambda: service.total() == 3, "the queue taken")
        assert service.counts()["logged"] == 2 and service.counts()["unregistered"] == 1
        assert service.value("emaillog_config_problems") == 0
        status, body = await readyz(settings)
        assert (status, body["problems"]) == (200, [])
        assert any(r.getMessage() == "setup complete: taking mail again" for r in caplog.records)
    conn = await asyncpg.connect(db)
    try:
        entries = await conn.fetch(
            "SELECT interaction_template_code, interaction_group_code, cost_lcy, duration_min "
            "FROM interaction_log_entry"
        )
    finally:
        await conn.close()
    assert len(entries) == 3
    assert {tuple(e) for e in entries} == {("EMAIL", "MAIL", Decimal("1.50"), Decimal("3.00"))}


async def test_a_template_removed_while_running_stops_intake_until_it_is_back(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = MemorySource(MAILBOX)
    settings = memory_settings(db)
    async with running(settings, source) as service:
        source.deliver(mime(sender=SALES, to=BUYER)[0])
        await service.until(lambda: service.counts()["logged"] == 1, "the first logged")
        status, _ = await readyz(settings)
        assert status == 200

        await sql(db, "DELETE FROM interaction_template")
        await service.until(lambda: service.value("emaillog_config_problems") == 1, "gauge")
        status, body = await readyz(settings)
        assert status == 503 and body["problems"]
        source.deliver(mime(sender=SALES, to=BUYER)[0])
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert service.counts()["logged"] == 1 and len(source.queue()) == 1

        await sql(db, TEMPLATE)
        await service.until(lambda: service.counts()["logged"] == 2, "the second logged")
        assert service.value("emaillog_config_problems") == 0
        assert source.queue() == {}


async def test_a_message_in_flight_when_the_template_goes_waits_for_it(db: str) -> None:
    """Past intake already, it reaches the claim without a template: the claim waits (the
    runner retries `SetupIncomplete` without limit, like an outage) instead of writing an
    entry with no template, and goes on once the template is back."""
    source = MemorySource(MAILBOX)
    source.hold("fetch")
    async with running(memory_settings(db), source) as service:
        source.deliver(mime(sender=SALES, to=BUYER)[0])
        await service.until(lambda: source.held("fetch") >= 1, "the fetch waits")
        await sql(db, "DELETE FROM interaction_template")
        await service.until(lambda: service.value("emaillog_config_problems") == 1, "gauge")
        source.release("fetch")
        await service.until(
            lambda: service.value("emaillog_retries_total", {"stage": "dedupe"}) >= 2,
            "the claim waits for the template",
        )
        assert service.total() == 0 and len(source.queue()) == 1
        await sql(db, TEMPLATE)
        await service.until(lambda: service.counts()["logged"] == 1, "logged with it")
        assert service.counts()["failed"] == 0
    conn = await asyncpg.connect(db)
    try:
        assert await conn.fetchval("SELECT cost_lcy FROM interaction_log_entry") == Decimal("1.50")
    finally:
        await conn.close()
