"""The web's `MimeFetcher` over a `MailSource`: a stored message's bytes, on demand.

A `stored_message` row names its copy by the storage item id the move returned; a move
into a public folder returns none, so then the copy is found again by its Internet
Message-ID (as the reconciler finds it). Without either there is nothing to fetch.
"""

from __future__ import annotations

from pipeline.errors import ItemGone
from pipeline.sources import MailSource
from pipeline.web.deps import MimeFetcher


def mime_fetcher(source: MailSource) -> MimeFetcher:
    """`fetch(storage_item_id, internet_message_id)` -> the raw message from `source`'s
    storage folder; `ItemGone` when it holds no such message (any more)."""

    async def fetch(item_id: str | None, message_id: str | None) -> bytes:
        if item_id:
            return await source.fetch_stored_mime(item_id)
        if message_id:
            for stored in await source.find_in_storage(message_id):
                if stored.item_id:
                    return await source.fetch_stored_mime(stored.item_id)
        raise ItemGone("the storage folder holds no such message")

    return fetch
