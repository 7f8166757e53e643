"""Recovery end to end: a database restart mid-run, a poison message, half-done claims left by
a crash, and SIGTERM during a burst of a real `emaillog run` subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pgserver
import pytest
from pgserver._commands import pg_ctl

from exchange_sim import Simulator
from pipeline.directory import Template
from pipeline.ledger import Book, Ledger
from pipeline.metrics import Metrics
from pipeline.model import (
    Candidate,
    Decision,
    Direction,
    Entry,
    InitiatedBy,
    Mail,
    MailRef,
    Outcome,
    hash_key,
)
from pipeline.reconciler import RULE_RECONCILED, Reconciler, Report
from pipeline.sources import Fetched, Stored
from pipeline.sources.ews import EwsSource
from pipeline.stages.dedupe import record_decisions
from tests.service.harness import (
    BUYER,
    MAILBOX,
    QUEUE,
    SALES,
    STORAGE,
    STRANGER,
    WAIT_SECONDS,
    disposals,
    free_port,
    mime,
    prepare_database,
    queue_empty,
    running,
    settings_for,
)


class OwnPostgres:
    """A PostgreSQL server of this test alone, so it can be stopped and started again."""

    def __init__(self, pgdata: Path) -> None:
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.url = self.server.get_uri("postgres")
        self._socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]

    async def stop(self) -> None:
        await asyncio.to_thread(self._pg_ctl, ["-w", "-m", "fast", "stop"])

    async def start(self) -> None:
        args = ["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self.server.log)]
        await asyncio.to_thread(self._pg_ctl, [*args, "start"])

    def _pg_ctl(self, args: list[str]) -> None:
        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user)


@pytest.fixture
async def own_pg(tmp_path: Path) -> AsyncIterator[OwnPostgres]:
    pg = await asyncio.to_thread(OwnPostgres, tmp_path / "pg")
    try:
        yield pg
    finally:
        # After a restart pgserver no longer knows the server's pid: stop it ourselves.
        try:
            await pg.stop()
        finally:
            await asyncio.to_thread(pg.server.cleanup)


def deliver_mix(sim: Simulator, count: int) -> int:
    """Deliver `count` messages, every other one logged; return how many will be logged."""
    for i in range(count):
        raw, _ = mime(sender=SALES, to=BUYER) if i % 2 else mime(sender=STRANGER, to=BUYER)
        sim.deliver(MAILBOX, QUEUE, raw)
    return count // 2


async def assert_exactly_once(url: str, sim: Simulator, *, delivered: int, logged: int) -> None:
    log = await disposals(url)
    assert len(log) == delivered
    assert all(len(outcomes) == 1 for outcomes in log.values())
    assert sum(outcomes == ["logged"] for outcomes in log.values()) == logged
    storage = sim.list_items(MAILBOX, STORAGE)
    assert len(storage) == logged
    assert len({item["message_id"] for item in storage}) == logged
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM interaction_log_entry") == logged
        stored = await conn.fetch("SELECT state, storage_item_id FROM stored_message")
    finally:
        await conn.close()
    assert {r["storage_item_id"] for r in stored} == {item["id"] for item in storage}
    assert all(r["state"] == "stored" for r in stored)


async def test_database_restart_mid_run_pauses_and_resumes(
    sim: Simulator, own_pg: OwnPostgres
) -> None:
    await prepare_database(own_pg.url)
    settings = settings_for(sim, own_pg.url)
    ready_url = f"http://127.0.0.1:{settings.http.port}/readyz"
    async with running(settings) as service:
        logged = deliver_mix(sim, 10)
        await service.until(lambda: service.settled(sim, 10))

        await own_pg.stop()
        logged += deliver_mix(sim, 20)
        # The messages reach the journal stage and wait there, retrying.
        await service.until(
            lambda: service.value("emaillog_retries_total", {"stage": "dedupe"}) >= 1,
            "the pipeline pausing on the outage",
        )
        async with aiohttp.ClientSession() as http, http.get(ready_url) as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["database"] is False
        assert len(sim.list_items(MAILBOX, QUEUE)) == 20  # nothing deleted undecided

        await own_pg.start()
        await service.until(lambda: service.settled(sim, 30))
        assert service.count(Outcome.FAILED) == 0

    await assert_exactly_once(own_pg.url, sim, delivered=30, logged=logged)


async def test_poison_message_fails_after_bounded_retries_and_blocks_nothing(
    sim: Simulator, db: str
) -> None:
    settings = settings_for(sim, db, retry_max_attempts=3, retry_max_wait_seconds=0.05)
    raw, poison_id = mime(sender=STRANGER, to=BUYER)
    poison = sim.deliver(MAILBOX, QUEUE, raw)
    sim.fail_items([poison], ops=("DeleteItem",), code="ErrorAccessDenied")
    logged = deliver_mix(sim, 10)

    async with running(settings) as service:
        await service.until(
            lambda: (
                service.count(Outcome.FAILED) == 1
                and [i["id"] for i in sim.list_items(MAILBOX, QUEUE)] == [poison]
                and service.value("emaillog_in_flight_messages") == 0
            )
        )
        assert service.count(Outcome.LOGGED) == logged

    conn = await asyncpg.connect(db)
    try:
        failed = await conn.fetch("SELECT * FROM disposal_log WHERE outcome = 'failed'")
    finally:
        await conn.close()
    assert [r["queue_item_id"] for r in failed] == [poison]
    assert "ErrorAccessDenied" in failed[0]["rule"]
    assert poison_id is not None
    assert failed[0]["message_id_hash"] == hash_key(poison_id)


async def test_half_done_claims_are_finished_once_at_start(sim: Simulator, db: str) -> None:
    # A crashed run left two claims in 'moving': one before its move (the message is still
    # in the queue), one after it (the message is already in storage).
    raw_a, mid_a = mime(sender=SALES, to=BUYER)
    raw_b, mid_b = mime(sender=SALES, to=BUYER)
    queued = sim.deliver(MAILBOX, QUEUE, raw_a)
    already_stored = sim.deliver(MAILBOX, STORAGE, raw_b)
    assert mid_a is not None and mid_b is not None
    entry = Entry("C1", "CO1", "", "SP1", Direction.OUTBOUND, InitiatedBy.US, None, "Quote")
    decision = Decision(Outcome.LOGGED, "Rule 4", Direction.OUTBOUND, (entry,))
    conn = await asyncpg.connect(db)
    try:
        async with conn.transaction():
            await record_decisions(
                Book(conn, MAILBOX),
                [
                    Candidate(queued, Mail(mid_a, "a" * 64), decision),
                    Candidate("moved-before-the-crash", Mail(mid_b, "b" * 64), decision),
                ],
                Template("EMAIL", "", "", Decimal(0), Decimal(0)),
            )
    finally:
        await conn.close()

    async with running(settings_for(sim, db)) as service:
        await service.until(lambda: service.count(Outcome.LOGGED) == 2 and queue_empty(sim))

    storage = {item["message_id"]: item["id"] for item in sim.list_items(MAILBOX, STORAGE)}
    assert set(storage) == {mid_a, mid_b}
    assert storage[mid_b] == already_stored
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT * FROM stored_message")
        assert await conn.fetchval("SELECT count(*) FROM interaction_log_entry") == 2
    finally:
        await conn.close()
    assert {r["internet_message_id"]: r["storage_item_id"] for r in rows} == storage
    assert all(r["state"] == "stored" for r in rows)


async def test_reconciler_finds_claims_without_message_id_by_their_key(
    sim: Simulator, db: str
) -> None:
    # A crashed run left three claims of messages without a Message-ID in 'moving': one
    # moved before the crash (its queue item id no longer exists), one still in the queue,
    # one removed from the queue by hand.
    created = [
        sim.create_item(
            MAILBOX, QUEUE, mime(sender=SALES, to=BUYER, message_id=None)[0], is_read=True
        )
        for _ in range(2)
    ]
    moved_id, queued_id = created
    source = EwsSource(settings_for(sim, db))
    await source.open()
    try:
        fetched = await source.fetch([MailRef(i) for i in created])
        moved_mail, queued_mail = [f.mail for f in fetched if isinstance(f, Fetched)]
        assert moved_mail.message_id is None and queued_mail.message_id is None
        [moved] = await source.move_to_storage([MailRef(moved_id)])
        assert isinstance(moved, Stored)
        entry = Entry("C1", "CO1", "", "SP1", Direction.OUTBOUND, InitiatedBy.US, None, "Quote")
        decision = Decision(Outcome.LOGGED, "Rule 4", Direction.OUTBOUND, (entry,))
        async with asyncpg.create_pool(db, min_size=1, max_size=2) as pool:
            metrics = Metrics()
            ledger = Ledger(
                pool,
                mailbox=MAILBOX,
                metrics=metrics,
                max_in_flight_messages=10,
                retry_max_wait_seconds=1,
            )
            async with ledger.transaction() as book:
                await record_decisions(
                    book,
                    [
                        Candidate(moved_id, moved_mail, decision),
                        Candidate(queued_id, queued_mail, decision),
                        Candidate("removed-by-hand", Mail(None, "f" * 64), decision),
                    ],
                    Template("EMAIL", "", "", Decimal(0), Decimal(0)),
                )
            reconciler = Reconciler(pool, source, ledger, metrics)
            assert await reconciler.run_once() == Report(completed=2, unresolved=1)
            assert await reconciler.run_once() == Report(completed=0, unresolved=1)
            rows = await pool.fetch(
                "SELECT queue_item_id, state, storage_item_id FROM stored_message"
            )
            rules = await pool.fetch("SELECT queue_item_id, rule FROM disposal_log")
    finally:
        await source.close()

    assert queue_empty(sim)
    storage = {item["id"] for item in sim.list_items(MAILBOX, STORAGE)}
    assert len(storage) == 2 and moved.item_id in storage
    state = {r["queue_item_id"]: (r["state"], r["storage_item_id"]) for r in rows}
    assert state[moved_id] == ("stored", moved.item_id)
    assert state[queued_id] == ("stored", (storage - {moved.item_id}).pop())
    assert state["removed-by-hand"] == ("moving", None)
    assert {r["queue_item_id"]: r["rule"] for r in rules} == {
        moved_id: RULE_RECONCILED,
        queued_id: RULE_RECONCILED,
    }


async def test_sigterm_during_a_burst_drains_exits_0_and_a_restart_finishes(
    sim: Simulator, db: str, tmp_path: Path
) -> None:
    drain_seconds = 15
    env = {
        **os.environ,
        "EMAILLOG_DATABASE_URL": db,
        "EMAILLOG_EWS_URL": sim.ews_url,
        "EMAILLOG_EWS_MAILBOX": MAILBOX,
        "EMAILLOG_EWS_AUTH": "none",
        "EMAILLOG_QUEUE_FOLDER": QUEUE,
        "EMAILLOG_STORAGE_FOLDER": STORAGE,
        "EMAILLOG_HTTP_HOST": "127.0.0.1",
        "EMAILLOG_FETCH_BATCH_MESSAGES": "5",
        "EMAILLOG_MOVE_BATCH_MESSAGES": "5",
        "EMAILLOG_STORE_BATCH_MESSAGES": "5",
        "EMAILLOG_DRAIN_TIMEOUT_SECONDS": str(drain_seconds),
        "EMAILLOG_LOG_FORMAT": "json",
        "EMAILLOG_UI_PORT": "0",  # no web UI: it would need sign-in set up
    }
    # Slow the server down so that SIGTERM lands in the middle of the burst.
    sim.set_latency(20, 60)
    logged = deliver_mix(sim, 60)

    async def run_until_sigterm(log_path: Path, done: int) -> int:
        with log_path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pipeline",
                "run",
                env={**env, "EMAILLOG_HTTP_PORT": str(free_port())},
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                async with asyncio.timeout(WAIT_SECONDS):
                    # SIGTERM once the service takes mail (its handler is in place) and
                    # `done` messages are disposed of.
                    while (
                        b"service started" not in log_path.read_bytes()
                        or len(await disposals(db)) < done
                    ):
                        assert proc.returncode is None, log_path.read_text()
                        await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                # A hang guard (the drain budget plus start-up slack), not a measurement.
                async with asyncio.timeout(drain_seconds + WAIT_SECONDS):
                    return await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    first_log = tmp_path / "first.log"
    assert await run_until_sigterm(first_log, done=5) == 0, first_log.read_text()
    lines = [
        json.loads(line) for line in first_log.read_text().splitlines() if line.startswith("{")
    ]
    events = [line["event"] for line in lines]
    assert "shutdown: intake stopped, draining" in events
    assert "service stopped" in events
    started = next(line for line in lines if line["event"] == "starting")
    assert started["config"]["EMAILLOG_DATABASE_URL"] == "***"  # secrets redacted
    for line in lines:
        if line["event"] == "disposed":  # the canonical line: no subject, no addresses
            assert "Quote" not in json.dumps(line) and "@" not in json.dumps(line)

    sim.set_latency(0)
    second_log = tmp_path / "second.log"
    assert await run_until_sigterm(second_log, done=60) == 0, second_log.read_text()
    assert queue_empty(sim)
    await assert_exactly_once(db, sim, delivered=60, logged=logged)


async def test_sigterm_during_start_up_is_a_clean_stop(
    sim: Simulator, db: str, tmp_path: Path
) -> None:
    """SIGTERM while the service is still starting (slow folder lookups and subscribe): it
    finishes starting, stops at once and exits 0."""
    log_path = tmp_path / "run.log"
    env = {
        **os.environ,
        "EMAILLOG_DATABASE_URL": db,
        "EMAILLOG_EWS_URL": sim.ews_url,
        "EMAILLOG_EWS_MAILBOX": MAILBOX,
        "EMAILLOG_EWS_AUTH": "none",
        "EMAILLOG_QUEUE_FOLDER": QUEUE,
        "EMAILLOG_STORAGE_FOLDER": STORAGE,
        "EMAILLOG_HTTP_HOST": "127.0.0.1",
        "EMAILLOG_HTTP_PORT": str(free_port()),
        "EMAILLOG_UI_PORT": "0",  # no web UI: it would need sign-in set up
    }
    sim.set_latency(300)  # start-up (folder lookups, subscribe) takes a while
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipeline", "run", env=env, stdout=out, stderr=out
        )
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while b'"starting"' not in log_path.read_bytes():  # handlers are in place
                    assert proc.returncode is None, log_path.read_text()
                    await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(WAIT_SECONDS):  # a hang guard, not a measurement
                assert await proc.wait() == 0, log_path.read_text()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert b"service started" not in log_path.read_bytes() or b"service stopped" in (
        log_path.read_bytes()
    )
