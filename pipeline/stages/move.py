"""move: logged (claimed) messages -> the storage folder (one batched MoveItem).

Runs only after the claim and entries are committed. Not idempotent on the server (the item
leaves the queue), which is why recording the link is a separate stage (`store`): a
database retry must never move twice. An item already gone comes back as `ItemGone`; its
row stays 'moving' for the reconciler.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.crashpoints import crash_point
from pipeline.sources import MailSource
from pipeline.stages import Decided, Moved


async def move_to_storage(
    items: Sequence[Decided], *, source: MailSource
) -> list[Moved | Exception]:
    results = await source.move_to_storage([item.ref for item in items])
    crash_point("after_move")  # in storage; the link is not recorded yet
    return [
        result if isinstance(result, Exception) else Moved(item, result)
        for item, result in zip(items, results, strict=True)
    ]
