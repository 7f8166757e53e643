"""The exactly-once journal against real PostgreSQL: the dedupe step's claim plan run as SQL
(claim, rule 3, resume, keep an earlier decision) and the ledger's idempotent records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from pipeline.claims import Claim, Recorded
from pipeline.directory import Template
from pipeline.errors import DatabaseUnavailable
from pipeline.ledger import Book, Ledger
from pipeline.metrics import Metrics
from pipeline.model import Candidate, Decision, Direction, Entry, InitiatedBy, Mail, Outcome
from pipeline.stages.dedupe import record_decisions
from pipeline.store import journal
from pipeline.store.journal import DisposalRow, StorageLink

MAILBOX = "queue@example.com"
TEMPLATE = Template("EMAIL", "E-mail", "EMAILS", Decimal("1.50"), Decimal("3"))
SENT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def mail(message_id: str | None = "<m1@example.com>", subject: str = "Quote") -> Mail:
    return Mail(message_id=message_id, content_hash="c" * 64, subject=subject, sent_at=SENT)


def entry(contact: str, salesperson: str = "SP1") -> Entry:
    return Entry(
        contact_no=contact,
        contact_company_no="CO1",
        contact_alt_address_code="",
        salesperson_code=salesperson,
        information_flow=Direction.OUTBOUND,
        initiated_by=InitiatedBy.US,
        interaction_at=SENT,
        description="Quote",
    )


LOGGED = Decision(Outcome.LOGGED, "Rule 4", Direction.OUTBOUND, (entry("C1"), entry("C2")))
UNREGISTERED = Decision(Outcome.UNREGISTERED, "Rule 7")
SENSITIVE = Decision(Outcome.SENSITIVE, "Rule 1")


def ledger(pool: asyncpg.Pool) -> Ledger:
    return Ledger(
        pool,
        mailbox=MAILBOX,
        metrics=Metrics(),
        max_in_flight_messages=10,
        retry_max_wait_seconds=1,
    )


async def record(pool: asyncpg.Pool, *cands: Candidate) -> list[Recorded]:
    async with ledger(pool).transaction() as book:
        return await record_decisions(book, cands, TEMPLATE)


async def mark(pool: asyncpg.Pool, *links: StorageLink) -> list[bool]:
    return await ledger(pool).record_stored(links)


def link(stored_id: int, queue_item: str, storage_item: str = "S1") -> StorageLink:
    return StorageLink(stored_id, queue_item, storage_item, "https://owa/x", "Rule 4", "h")


async def test_claim_writes_the_row_in_moving_and_its_entries(pool: asyncpg.Pool) -> None:
    long_subject = "S" * 150
    [rec] = await record(pool, Candidate("Q1", mail(subject=long_subject), LOGGED))

    assert rec.claim is Claim.NEW and rec.entries_written == 2 and not rec.newly_recorded
    row = await pool.fetchrow("SELECT * FROM stored_message WHERE id = $1", rec.stored_message_id)
    assert row["state"] == "moving"
    assert row["queue_item_id"] == "Q1"
    assert row["message_key"] == "<m1@example.com>"
    entries = await pool.fetch(
        "SELECT * FROM interaction_log_entry WHERE stored_message_id = $1 ORDER BY contact_no",
        rec.stored_message_id,
    )
    assert [e["contact_no"] for e in entries] == ["C1", "C2"]
    first = entries[0]
    assert first["subject"] == "S" * 100
    assert first["interaction_template_code"] == "EMAIL"
    assert first["interaction_group_code"] == "EMAILS"
    assert first["cost_lcy"] == Decimal("1.50") and first["duration_min"] == Decimal("3")
    assert first["information_flow"] == "outbound" and first["initiated_by"] == "us"
    assert first["interaction_at"] == SENT
    # A claim is not a disposal: the log row comes when the message is in storage.
    assert await pool.fetchval("SELECT count(*) FROM disposal_log") == 0


async def test_second_copy_in_one_batch_is_a_duplicate(pool: asyncpg.Pool) -> None:
    first, second = await record(
        pool, Candidate("Q1", mail(), LOGGED), Candidate("Q2", mail(), LOGGED)
    )

    assert first.claim is Claim.NEW
    assert second.decision.outcome is Outcome.DUPLICATE and second.claim is Claim.NONE
    assert second.newly_recorded
    assert await pool.fetchval("SELECT count(*) FROM stored_message") == 1
    assert await pool.fetchval("SELECT count(*) FROM interaction_log_entry") == 2
    log = await pool.fetch("SELECT queue_item_id, outcome FROM disposal_log")
    assert [(r["queue_item_id"], r["outcome"]) for r in log] == [("Q2", "duplicate")]


async def test_copy_of_a_stored_or_foreign_moving_message_is_a_duplicate(
    pool: asyncpg.Pool,
) -> None:
    [stored] = await record(pool, Candidate("Q1", mail("<a@x>"), LOGGED))
    assert stored.stored_message_id is not None
    await mark(pool, link(stored.stored_message_id, "Q1"))
    await record(pool, Candidate("Q2", mail("<b@x>"), LOGGED))  # stays 'moving' for Q2

    results = await record(
        pool,
        Candidate("Q3", mail("<a@x>"), UNREGISTERED),  # copy of a stored one
        Candidate("Q4", mail("<b@x>"), LOGGED),  # copy of another item's claim
        Candidate("Q5", mail("<a@x>"), SENSITIVE),  # rule 1 comes before rule 3
    )

    assert [r.decision.outcome for r in results] == [
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        Outcome.SENSITIVE,
    ]
    assert all(r.newly_recorded for r in results)
    assert await pool.fetchval("SELECT count(*) FROM stored_message") == 2


async def test_own_moving_row_is_resumed_not_inserted_again(pool: asyncpg.Pool) -> None:
    [claimed] = await record(pool, Candidate("Q1", mail(), LOGGED))

    # The service crashed before the move; the queue item comes round again.
    [again] = await record(pool, Candidate("Q1", mail(), LOGGED))

    assert again.claim is Claim.RESUMED
    assert again.stored_message_id == claimed.stored_message_id
    assert again.decision.outcome is Outcome.LOGGED and again.entries_written == 0
    assert await pool.fetchval("SELECT count(*) FROM interaction_log_entry") == 2
    assert await pool.fetchval("SELECT count(*) FROM disposal_log") == 0


async def test_disposal_record_is_idempotent_and_the_first_decision_stands(
    pool: asyncpg.Pool,
) -> None:
    [first] = await record(pool, Candidate("Q1", mail(), UNREGISTERED))
    # Crash before the delete; meanwhile the directory changed and the message would log now.
    [again] = await record(pool, Candidate("Q1", mail(), LOGGED))

    assert first.newly_recorded
    assert not again.newly_recorded
    assert again.decision.outcome is Outcome.UNREGISTERED and again.claim is Claim.NONE
    assert await pool.fetchval("SELECT count(*) FROM stored_message") == 0
    assert await pool.fetchval("SELECT count(*) FROM disposal_log") == 1


async def test_mark_stored_records_the_link_once(pool: asyncpg.Pool) -> None:
    [rec] = await record(pool, Candidate("Q1", mail(), LOGGED))
    assert rec.stored_message_id is not None

    assert await mark(pool, link(rec.stored_message_id, "Q1", "S1")) == [True]
    # The reconciler may finish the same row: nothing changes, nothing is counted twice.
    assert await mark(pool, link(rec.stored_message_id, "Q1", "S-other")) == [False]

    row = await pool.fetchrow("SELECT * FROM stored_message WHERE id = $1", rec.stored_message_id)
    assert (row["state"], row["storage_item_id"], row["web_link"]) == (
        "stored",
        "S1",
        "https://owa/x",
    )
    log = await pool.fetchrow("SELECT * FROM disposal_log")
    assert (log["outcome"], log["stored_message_id"], log["queue_item_id"]) == (
        "logged",
        rec.stored_message_id,
        "Q1",
    )


async def test_failed_rows_do_not_block_a_later_disposal(pool: asyncpg.Pool) -> None:
    for _ in range(2):
        async with ledger(pool).transaction() as book:
            await book.record([DisposalRow("Q1", Outcome.FAILED, "boom", "h")])
    [rec] = await record(pool, Candidate("Q1", mail(), UNREGISTERED))

    assert rec.newly_recorded and rec.decision.outcome is Outcome.UNREGISTERED
    outcomes = await pool.fetch("SELECT outcome FROM disposal_log ORDER BY id")
    assert [r["outcome"] for r in outcomes] == ["failed", "failed", "unregistered"]


async def test_message_without_message_id_is_keyed_by_content_hash(pool: asyncpg.Pool) -> None:
    first, second = await record(
        pool, Candidate("Q1", mail(None), LOGGED), Candidate("Q2", mail(None), LOGGED)
    )
    assert first.claim is Claim.NEW and second.decision.outcome is Outcome.DUPLICATE
    key = await pool.fetchval("SELECT message_key FROM stored_message")
    assert key == "sha256:" + "c" * 64


async def test_concurrent_claims_of_one_message_log_it_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as first_conn, pool.acquire() as second_conn:
        tx = first_conn.transaction()
        await tx.start()
        [first] = await record_decisions(
            Book(first_conn, MAILBOX), [Candidate("Q1", mail(), LOGGED)], TEMPLATE
        )

        async def second_batch() -> list[Recorded]:
            async with second_conn.transaction():
                return await record_decisions(
                    Book(second_conn, MAILBOX), [Candidate("Q2", mail(), LOGGED)], TEMPLATE
                )

        # The second transaction read no row yet, so only the unique key can stop it: its
        # insert waits for the first transaction and then yields nothing.
        pending = asyncio.create_task(second_batch())
        await _until_waiting_on_a_lock(pool, second_conn.get_server_pid())
        await tx.commit()
        [second] = await pending

    assert first.claim is Claim.NEW
    assert second.decision.outcome is Outcome.DUPLICATE
    assert await pool.fetchval("SELECT count(*) FROM stored_message") == 1
    assert await pool.fetchval("SELECT count(*) FROM interaction_log_entry") == 2


async def _until_waiting_on_a_lock(pool: asyncpg.Pool, pid: int) -> None:
    while not await pool.fetchval(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
    ):
        await asyncio.sleep(0.01)


async def test_moving_rows_lists_half_done_claims(pool: asyncpg.Pool) -> None:
    first, second = await record(
        pool, Candidate("Q1", mail("<a@x>"), LOGGED), Candidate("Q2", mail("<b@x>"), LOGGED)
    )
    assert first.stored_message_id is not None
    await mark(pool, link(first.stored_message_id, "Q1"))

    async with pool.acquire() as conn:
        rows = await journal.moving_rows(conn, mailbox=MAILBOX, limit=10)

    assert [(r.id, r.internet_message_id, r.queue_item_id) for r in rows] == [
        (second.stored_message_id, "<b@x>", "Q2")
    ]


async def test_a_killed_connection_is_reported_as_database_unavailable(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        async with pool.acquire() as killer:
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(DatabaseUnavailable), journal.database_errors():
            await conn.fetchval("SELECT 1")
