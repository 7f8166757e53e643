"""fetch: queue item ids -> the messages (one batched GetItem).

Side effects: none. An item that no longer exists comes back as `ItemGone`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.model import MailRef
from pipeline.sources import Fetched, MailSource


async def fetch(source: MailSource, refs: Sequence[MailRef]) -> list[Fetched | Exception]:
    return await source.fetch(refs)
