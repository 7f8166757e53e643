"""dedupe: classified messages -> committed decisions (one transaction per batch).

Applies rule 3 against the journal, claims logged messages (stored_message row in state
'moving' + entries) and records every other decision in disposal_log, all before anything
leaves the queue. See `store.journal` for the exactly-once reasoning. Idempotent: a retry
after a rollback, or a replay after a crash, resumes or finds what was committed.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from pipeline.crashpoints import crash_point
from pipeline.directory import Template
from pipeline.stages import Classified, Decided
from pipeline.store import journal


async def dedupe_and_claim(
    pool: asyncpg.Pool, *, mailbox: str, items: Sequence[Classified], template: Template
) -> list[Decided | Exception]:
    candidates = [journal.Candidate(i.ref.item_id, i.mail, i.decision) for i in items]
    with journal.database_errors():
        async with pool.acquire() as conn, conn.transaction():
            recorded = await journal.record_decisions(
                conn, mailbox=mailbox, candidates=candidates, template=template
            )
    crash_point("after_claim")  # committed; nothing has left the queue yet
    return [Decided(i.ref, i.mail, r) for i, r in zip(items, recorded, strict=True)]
