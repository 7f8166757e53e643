"""The one accounting path: how every queue item's story is written down and ended.

    intake ── admit() ──▶ stages ──▶ finish()   logged and linked, or disposed of
                                 ├─▶ fail()     failed after bounded retries: left in the queue
                                 └─▶ let_go()   gone (someone else handled it), or never started
    reconciler ── hold() ──▶ record_stored() ──▶ finish()

Three of the product's invariants live here and nowhere else:

- **disposal_log rows** are written only through `Book.record`, inside a `transaction()`
  the caller runs its own journal SQL in (the claim, the storage link), so a decision is
  committed together with what it depends on and before anything leaves the queue;
- **`emaillog_messages_total`** counts exactly the rows this process inserted, once the
  transaction that inserted them has committed: the metric equals the disposal log;
- **in-flight slots** (at most EMAILLOG_MAX_IN_FLIGHT_MESSAGES items between intake and the
  end) are taken by `admit`/`hold` and given back by `finish`, `fail`, `let_go` or `hold`.

`finish` also writes the one `disposed` log line per message (outcome, rule, a hash of the
Message-ID, timings: never a subject or an address).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from pipeline.claims import Recorded
from pipeline.errors import DatabaseUnavailable, EmailLogError, describe
from pipeline.inflight import InFlight
from pipeline.logs import get_logger
from pipeline.metrics import Metrics
from pipeline.model import Mail, Outcome, message_id_hash
from pipeline.store import journal
from pipeline.store.journal import DisposalRow, StorageLink

log = get_logger(__name__)


class Book:
    """One open transaction of the ledger. The caller's own SQL runs on `conn`; disposal
    rows go through `record`; what they add up to is counted when the transaction commits."""

    def __init__(self, conn: asyncpg.Connection, mailbox: str) -> None:
        self.conn = conn
        self.mailbox = mailbox
        self.recorded: list[Outcome] = []
        self.entries_written = 0

    async def record(self, rows: Sequence[DisposalRow]) -> list[bool]:
        """Write disposal_log rows; per row, True where this transaction inserted it."""
        inserted = await journal.insert_disposals(self.conn, mailbox=self.mailbox, rows=rows)
        self.recorded.extend(row.outcome for row, new in zip(rows, inserted, strict=True) if new)
        return inserted

    async def record_stored(self, links: Sequence[StorageLink]) -> list[bool]:
        """Logged messages are in storage: record their links and their 'logged' rows. Per
        link, True where this transaction wrote the row (the pipeline and the reconciler may
        both finish one message: the first wins)."""
        await journal.mark_stored(self.conn, links=links)
        return await self.record(
            [
                DisposalRow(
                    link.queue_item_id,
                    Outcome.LOGGED,
                    link.rule,
                    link.message_id_hash,
                    link.stored_message_id,
                )
                for link in links
            ]
        )

    def count_entries(self, written: int) -> None:
        """Interaction log entries this transaction inserted (counted once it commits)."""
        self.entries_written += written


class Ledger:
    """The accounting path of one service: its in-flight slots, its transactions that write
    disposal rows, and the ends of every item (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        mailbox: str,
        metrics: Metrics,
        max_in_flight_messages: int,
        retry_max_wait_seconds: float,
    ) -> None:
        self.mailbox = mailbox
        self._pool = pool
        self._metrics = metrics
        self._in_flight = InFlight(max_in_flight_messages, on_change=metrics.in_flight.set)
        self._retry_max_wait_seconds = retry_max_wait_seconds
        #: Items that failed after bounded retries: left in the queue, not retried this run.
        self.failed_ids: set[str] = set()
        self.disposed = 0
        self.failed = 0
        metrics.in_flight_limit.set(max_in_flight_messages)

    # --- in flight ---

    def __len__(self) -> int:
        """Items in flight now."""
        return len(self._in_flight)

    async def admit(self, item_id: str) -> bool:
        """Take a slot for a queue item (waits while the cap is reached); False if it is
        already in flight (sources may repeat an arrival)."""
        return await self._in_flight.admit(item_id)

    @asynccontextmanager
    async def hold(self, item_id: str | None) -> AsyncIterator[bool]:
        """Hold a queue item while working on it outside the flow (the reconciler): yields
        False when the flow has it already. `None` (no queue item known) holds nothing."""
        admitted = item_id is not None and await self._in_flight.admit(item_id)
        try:
            yield item_id is None or admitted
        finally:
            if admitted and item_id is not None:
                self._in_flight.release(item_id)

    async def wait_idle(self) -> None:
        await self._in_flight.wait_idle()

    # --- writing it down ---

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Book]:
        """A database transaction; its disposal rows and entries are counted once it commits."""
        with journal.database_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                book = Book(conn, self.mailbox)
                yield book
        for outcome in book.recorded:
            self._metrics.messages.labels(outcome.value).inc()
        if book.entries_written:
            self._metrics.interactions_logged.inc(book.entries_written)

    async def record_stored(self, links: Sequence[StorageLink]) -> list[bool]:
        """Logged messages are in storage: `Book.record_stored` in a transaction of its own."""
        async with self.transaction() as book:
            return await book.record_stored(links)

    # --- the end ---

    def finish(
        self,
        item_id: str | None,
        recorded: Recorded,
        hashed_message_id: str,
        received_at: datetime | None = None,
    ) -> None:
        """An item is logged and linked, or disposed of: free its slot, log it, time it."""
        pipeline_seconds = self._release(item_id)
        now = time.time()
        fields: dict[str, object] = {
            "outcome": recorded.decision.outcome.value,
            "rule": recorded.decision.rule,
            "message_id_hash": hashed_message_id,
            "entries": recorded.entries_written,
            "claim": recorded.claim.value,
            "pipeline_ms": round(pipeline_seconds * 1000, 1),
        }
        if received_at is not None:
            end_to_end = max(0.0, now - received_at.timestamp())
            self._metrics.end_to_end.observe(end_to_end)
            fields["end_to_end_ms"] = round(end_to_end * 1000, 1)
        self._metrics.last_disposed.set(now)
        self.disposed += 1
        log.info("disposed", extra={"fields": fields})

    async def fail(self, item_id: str, mail: Mail | None, exc: Exception) -> None:
        """Still failing after bounded retries: record 'failed', leave it in the queue, and
        do not take it again this run (the next start tries it again)."""
        reason = describe(exc)
        hashed = message_id_hash(mail) if mail is not None else ""
        try:
            await self._record_failure(DisposalRow(item_id, Outcome.FAILED, reason, hashed))
        finally:
            self.failed_ids.add(item_id)
            pipeline_seconds = self._release(item_id)
        self.failed += 1
        log.warning(
            "failed; left in the queue",
            extra={
                "fields": {
                    "outcome": Outcome.FAILED.value,
                    "error": reason,
                    "message_id_hash": hashed,
                    "pipeline_ms": round(pipeline_seconds * 1000, 1),
                }
            },
            # A traceback only for the unexpected: our own errors say what they are.
            exc_info=None if isinstance(exc, EmailLogError) else exc,
        )

    def let_go(self, item_id: str, why: str) -> None:
        """Free an item's slot without an outcome: it vanished (someone else handled it, or a
        repeated arrival of one already disposed of), or it never entered the flow."""
        self._release(item_id)
        log.debug("let go of a queue item", extra={"fields": {"why": why}})

    def _release(self, item_id: str | None) -> float:
        released = self._in_flight.release(item_id) if item_id is not None else None
        return released or 0.0

    async def _record_failure(self, row: DisposalRow) -> None:
        # A failure must be recorded, and the database may be the thing that is down.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DatabaseUnavailable),
            wait=wait_random_exponential(multiplier=0.2, max=self._retry_max_wait_seconds),
        ):
            with attempt:
                async with self.transaction() as book:
                    await book.record([row])
