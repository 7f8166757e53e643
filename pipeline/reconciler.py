"""The reconciler: finishes logged messages left half-done (state 'moving') by a crash.

A stored_message row stays 'moving' when the service stopped between the claim and
recording the storage link. For each such row whose queue item is not in flight, the
message is looked for by its Internet Message-ID or, when it has none, by its journal key
(`sha256:<content hash>`, recomputed by the source for each item without a Message-ID):

1. found in storage -> the move happened: record the link;
2. else found in the queue (our own queue item first, else a copy) -> move it now, record
   the link;
3. else leave the row, log a warning and count it (emaillog_reconcile_unresolved_total):
   someone removed the message by hand, and only a person can say what it should be.

It also fills the storage item id and web link of stored messages that lack them (a move
into a public folder returns no id, and the lookup right after it may have failed).

Two messages without a Message-ID and with the same content hash share one journal key, so
the journal already treats them as one message (the second is a duplicate): whichever of
them the lookup finds is that message.

The entries were committed with the claim, so nothing is ever logged twice here. Runs once
at start, before intake, and then every `reconcile_interval_seconds`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from pipeline.claims import Claim, Recorded
from pipeline.crashpoints import crash_point
from pipeline.errors import EmailLogError, describe
from pipeline.ledger import Ledger
from pipeline.logs import get_logger
from pipeline.metrics import Metrics
from pipeline.model import Decision, MailRef, Outcome, hash_key
from pipeline.sources import MailSource, Stored
from pipeline.store import journal

log = get_logger(__name__)

#: Rows looked at per pass: a pass stays short; the next pass takes the rest.
ROWS_PER_PASS = 200
#: Stored messages whose link is looked for per pass (one FindItem each).
LINKS_PER_PASS = 50
RULE_RECONCILED = "Reconciled: claimed before a restart, then found or moved to storage"


@dataclass(frozen=True, slots=True)
class Report:
    completed: int = 0
    unresolved: int = 0
    linked: int = 0  # stored messages whose missing storage id / web link was filled


class Reconciler:
    def __init__(
        self, pool: asyncpg.Pool, source: MailSource, ledger: Ledger, metrics: Metrics
    ) -> None:
        self._pool = pool
        self._source = source
        self._ledger = ledger
        self._metrics = metrics
        # Count an unresolved row once per process, not once per pass.
        self._reported: set[int] = set()

    async def run(self, interval_seconds: float) -> None:
        """Every `interval_seconds`, forever; a failed pass is logged and tried next time."""
        while True:
            await asyncio.sleep(interval_seconds)
            await self.run_once_logged()

    async def run_once_logged(self) -> Report:
        try:
            return await self.run_once()
        except Exception as exc:  # a janitor: never take the service down
            log.warning(
                "reconcile pass failed; trying again next interval",
                extra={"fields": {"error": describe(exc)}},
                exc_info=not isinstance(exc, EmailLogError),
            )
            return Report()

    async def run_once(self) -> Report:
        with journal.database_errors():
            async with self._pool.acquire() as conn:
                rows = await journal.moving_rows(
                    conn, mailbox=self._source.mailbox, limit=ROWS_PER_PASS
                )
        completed = unresolved = 0
        for row in rows:
            async with self._ledger.hold(row.queue_item_id) as ours:
                if not ours:
                    continue  # the pipeline has it: it will resume the claim itself
                if await self._complete(row):
                    completed += 1
                    continue
            unresolved += 1
            self._report_unresolved(row)
        linked = await self._fill_links()
        if rows or linked:
            log.info(
                "reconcile pass",
                extra={
                    "fields": {"completed": completed, "unresolved": unresolved, "linked": linked}
                },
            )
        return Report(completed, unresolved, linked)

    async def _fill_links(self) -> int:
        """Stored messages without their storage item id or web link (a move into a public
        folder returns no id; a lookup right after the move can fail): find them in storage
        by Message-ID (or journal key) and record what was missing. Not accounting: the
        message's outcome and counts are already recorded."""
        with journal.database_errors():
            async with self._pool.acquire() as conn:
                rows = await journal.unlinked_rows(
                    conn, mailbox=self._source.mailbox, limit=LINKS_PER_PASS
                )
        linked = 0
        for row in rows:
            if row.internet_message_id:
                found = await self._source.find_in_storage(row.internet_message_id)
            else:
                found = await self._source.find_in_storage_by_key(row.message_key)
            # The copy we already know of, if we know one; else the one storage holds.
            ours = [s for s in found if s.item_id == row.storage_item_id] or found
            stored = ours[0] if ours else Stored(item_id=None)
            linked += stored.item_id is not None
            with journal.database_errors():
                async with self._pool.acquire() as conn:
                    await journal.fill_link(
                        conn,
                        stored_message_id=row.id,
                        storage_item_id=stored.item_id,
                        web_link=stored.web_link,
                    )
        return linked

    async def _complete(self, row: journal.MovingRow) -> bool:
        """Find or move the claimed message into storage and record it; False if neither."""
        stored = await self._resolve(row)
        if stored is None:
            return False
        crash_point("reconciler_before_record")  # in storage, link not recorded
        hashed = hash_key(row.message_key)
        link = journal.StorageLink(
            stored_message_id=row.id,
            queue_item_id=row.queue_item_id,
            storage_item_id=stored.item_id,
            web_link=stored.web_link,
            rule=RULE_RECONCILED,
            message_id_hash=hashed,
        )
        [new] = await self._ledger.record_stored([link])
        if new:
            recorded = Recorded(Decision(Outcome.LOGGED, RULE_RECONCILED), Claim.RESUMED, row.id)
            self._ledger.finish(None, recorded, hashed)  # the hold releases the slot
        return True

    def _report_unresolved(self, row: journal.MovingRow) -> None:
        if row.id in self._reported:
            return
        self._reported.add(row.id)
        self._metrics.reconcile_unresolved.inc()
        log.warning(
            "claimed message found neither in storage nor in the queue",
            extra={"fields": {"stored_message_id": row.id}},
        )

    async def _resolve(self, row: journal.MovingRow) -> Stored | None:
        in_storage = await self._find_in_storage(row)
        if in_storage:
            return in_storage[0]
        in_queue = await self._find_in_queue(row)
        # Prefer our own queue item; other copies become duplicates once this is stored.
        ours = [r for r in in_queue if r.item_id == row.queue_item_id]
        if ours:
            return await self._move(ours[0])
        for copy in in_queue:
            # Another copy: hold it so the pipeline does not delete it as a duplicate
            # while we move it (a copy the pipeline holds is skipped).
            async with self._ledger.hold(copy.item_id) as held:
                if held:
                    return await self._move(copy)
        return None

    async def _find_in_storage(self, row: journal.MovingRow) -> list[Stored]:
        if row.internet_message_id:
            return await self._source.find_in_storage(row.internet_message_id)
        return await self._source.find_in_storage_by_key(row.message_key)

    async def _find_in_queue(self, row: journal.MovingRow) -> list[MailRef]:
        if row.internet_message_id:
            return await self._source.find_in_queue(row.internet_message_id)
        return await self._source.find_in_queue_by_key(row.message_key)

    async def _move(self, ref: MailRef) -> Stored | None:
        [moved] = await self._source.move_to_storage([ref])
        if isinstance(moved, Exception):
            log.warning(
                "reconciler could not move a claimed message",
                extra={"fields": {"error": describe(moved)}},
            )
            return None
        return moved
