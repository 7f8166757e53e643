"""store: moved messages -> their storage links recorded (one transaction per batch).

Sets stored_message.storage_item_id / web_link / state='stored' and writes the 'logged'
disposal_log row. Idempotent: retrying after a database outage changes nothing twice.
Returns, per message, whether this call wrote its disposal_log row.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from pipeline.crashpoints import crash_point
from pipeline.stages import Moved
from pipeline.store import journal


async def record_storage(
    pool: asyncpg.Pool, *, mailbox: str, items: Sequence[Moved]
) -> list[bool | Exception]:
    links = [
        journal.StorageLink(
            stored_message_id=_stored_message_id(item),
            queue_item_id=item.ref.item_id,
            storage_item_id=item.stored.item_id,
            web_link=item.stored.web_link,
            rule=item.decided.decision.rule,
            message_id_hash=journal.message_id_hash(item.mail),
        )
        for item in items
    ]
    with journal.database_errors():
        async with pool.acquire() as conn, conn.transaction():
            recorded: list[bool | Exception] = list(
                await journal.mark_stored(conn, mailbox=mailbox, links=links)
            )
    crash_point("after_store")  # committed 'stored'
    return recorded


def _stored_message_id(item: Moved) -> int:
    stored_id = item.decided.recorded.stored_message_id
    if stored_id is None:  # only claimed messages reach this stage
        raise AssertionError("a moved message has no stored_message row")
    return stored_id
