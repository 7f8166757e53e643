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


async def dispose(
    items: Sequence[Decided], *, source: MailSource, configured: Disposal
) -> list[Decided | Exception]:
    results: list[Decided | Exception] = list(items)
    groups: dict[Disposal, list[int]] = {}
    for i, item in enumerate(items):
        sensitive = item.decision.outcome is Outcome.SENSITIVE
        groups.setdefault(Disposal.HARD_DELETE if sensitive else configured, []).append(i)
    for how, indexes in groups.items():
        out = await source.dispose([items[i].ref for i in indexes], how)
        for i, result in zip(indexes, out, strict=True):
            if isinstance(result, Exception) and not isinstance(result, ItemGone):
                results[i] = result
    crash_point("after_dispose")
    return results
