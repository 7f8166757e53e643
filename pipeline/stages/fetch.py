"""fetch: queue item ids -> the messages (one batched GetItem).

Side effects: none. An item that no longer exists comes back as `ItemGone`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.crashpoints import crash_point
from pipeline.model import MailRef
from pipeline.sources import Fetched, MailSource


async def fetch(refs: Sequence[MailRef], *, source: MailSource) -> list[Fetched | Exception]:
    fetched = await source.fetch(refs)
    crash_point("after_fetch")
    return fetched
