"""dispose: non-logged messages -> out of the queue (one batched DeleteItem/MoveItem).

Runs only after the decision is committed in disposal_log. Sensitive messages are always
hard-deleted, whatever EMAILLOG_DISPOSAL says (nothing about their content may be kept).
An item already gone counts as disposed of.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.crashpoints import crash_point
from pipeline.errors import ItemGone
from pipeline.model import Outcome
from pipeline.sources import Disposal, MailSource
from pipeline.stages import Decided


def disposal_from_setting(value: str) -> Disposal:
    """EMAILLOG_DISPOSAL (delete, trash, move:<folder>) -> how (the source knows the folder)."""
    if value.startswith("move:"):
        return Disposal.MOVE
    return Disposal(value)


async def dispose(
    source: MailSource, items: Sequence[Decided], configured: Disposal
) -> list[Exception | None]:
    results: list[Exception | None] = [None] * len(items)
    groups: dict[Disposal, list[int]] = {}
    for i, item in enumerate(items):
        sensitive = item.decision.outcome is Outcome.SENSITIVE
        groups.setdefault(Disposal.HARD_DELETE if sensitive else configured, []).append(i)
    for how, indexes in groups.items():
        out = await source.dispose([items[i].ref for i in indexes], how)
        for i, result in zip(indexes, out, strict=True):
            results[i] = None if isinstance(result, ItemGone) else result
    crash_point("after_dispose")
    return results
