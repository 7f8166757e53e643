"""Storage item id and web link for every stored message (issue 11): recorded by the move
for mailbox and public-folder storage, and filled by the reconciler when missing."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from exchange_sim import Simulator
from pipeline.directory import Template
from pipeline.ledger import Ledger
from pipeline.metrics import Metrics
from pipeline.model import (
    Candidate,
    Decision,
    Direction,
    Entry,
    InitiatedBy,
    MailRef,
    Outcome,
    hash_key,
)
from pipeline.reconciler import Reconciler, Report
from pipeline.sources import Fetched, Stored
from pipeline.sources.ews import EwsSource
from pipeline.stages.dedupe import record_decisions
from pipeline.store.journal import StorageLink
from tests.service.harness import BUYER, MAILBOX, PUBLIC_STORAGE, QUEUE, SALES, mime, settings_for


async def test_reconciler_fills_a_missing_storage_id_and_link(sim: Simulator, db: str) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, mime(sender=SALES, to=BUYER)[0])
    source = EwsSource(settings_for(sim, db, storage_folder=PUBLIC_STORAGE))
    await source.open()
    try:
        [fetched] = await source.fetch([MailRef(item_id)])
        assert isinstance(fetched, Fetched)
        entry = Entry("C1", "CO1", "", "SP1", Direction.OUTBOUND, InitiatedBy.US, None, "Q")
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
                    [Candidate(item_id, fetched.mail, decision)],
                    Template("EMAIL", "", "", Decimal(0), Decimal(0)),
                )
            [moved] = await source.move_to_storage([MailRef(item_id)])
            assert isinstance(moved, Stored) and moved.item_id and moved.web_link
            # As an older version (or a failed lookup) left it: stored, without a link.
            row_id = await pool.fetchval("SELECT id FROM stored_message")
            message_id = fetched.mail.message_id or ""
            await ledger.record_stored(
                [StorageLink(row_id, item_id, None, None, "Rule 4", hash_key(message_id))]
            )
            reconciler = Reconciler(pool, source, ledger, metrics)
            assert await reconciler.run_once() == Report(linked=1)
            row = await pool.fetchrow("SELECT storage_item_id, web_link FROM stored_message")
            assert (row["storage_item_id"], row["web_link"]) == (moved.item_id, moved.web_link)
            assert await reconciler.run_once() == Report()  # nothing left to fill
    finally:
        await source.close()
