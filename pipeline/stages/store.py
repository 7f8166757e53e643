"""store: moved messages -> their storage links recorded (one transaction per batch).

Sets stored_message.storage_item_id / web_link / state='stored' and writes the 'logged'
disposal_log row, through the ledger (the reconciler records its finds the same way).
Idempotent: retrying after a database outage changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.crashpoints import crash_point
from pipeline.ledger import Ledger
from pipeline.stages import Decided, Moved
from pipeline.store.journal import StorageLink


async def record_storage(items: Sequence[Moved], *, ledger: Ledger) -> list[Decided | Exception]:
    links = [
        StorageLink(
            stored_message_id=_stored_message_id(item),
            queue_item_id=item.ref.item_id,
            storage_item_id=item.stored.item_id,
            web_link=item.stored.web_link,
            rule=item.decided.decision.rule,
            message_id_hash=item.decided.message_id_hash,
        )
        for item in items
    ]
    await ledger.record_stored(links)
    crash_point("after_store")  # committed 'stored'
    return [item.decided for item in items]


def _stored_message_id(item: Moved) -> int:
    stored_id = item.decided.recorded.stored_message_id
    if stored_id is None:  # only claimed messages reach this stage
        raise AssertionError("a moved message has no stored_message row")
    return stored_id
