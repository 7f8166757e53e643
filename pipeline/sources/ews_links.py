"""Where a stored message lives: its storage item id and its OWA link (blocking helpers).

A move into a public folder (or another mailbox) returns no new item id, so the stored
copy is found again by its Internet Message-ID in the storage folder. The link is what the
server says (`item:WebClientReadFormQueryString`, a full OWA URL on Exchange 2013 and
later) or, when it says nothing, one built from the item id the way OWA builds it.

The server's link is read with the queue item (GetItem asks for it along with the fields
the rules need) and remembered until the move: the stored copy's link is the same URL with
the new item id in its ItemID parameter, so no second GetItem per move is needed. Only when
the queue item's link is not of that form (no link, or an older server's relative query
string) is the stored item asked for its own.
Both are best-effort: the move has happened whatever they find, and the reconciler fills
what is missing later. `stored_mime` reads a stored copy back (GetItem with MimeContent).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from exchangelib.errors import ErrorInvalidIdMalformed, ErrorItemNotFound
from exchangelib.services import MoveItem

from pipeline.errors import ItemGone, describe
from pipeline.logs import get_logger
from pipeline.sources import Stored
from pipeline.sources.ews_convert import FETCH_FIELDS, align, to_mail

log = get_logger(__name__)


class MoveItemOnePerInput(MoveItem):  # type: ignore[misc]
    """MoveItem yielding exactly one result per input item.

    A move into a public folder (or another mailbox) succeeds with an empty <m:Items/>, and
    exchangelib then yields nothing for that item, so its result list gets shorter and can
    no longer be matched to the inputs. Here an empty container yields None instead."""

    @classmethod
    def _get_elements_in_container(cls, container: Any) -> list[Any]:
        return list(container) or [None]


LINK_FIELD = "web_client_read_form_query_string"
#: What GetItem asks of a queue item: what the rules need, and its link (QueueLinks).
QUEUE_FIELDS = (*FETCH_FIELDS, LINK_FIELD)


def built_link(ews_url: str, item_id: str) -> str:
    """An OWA read-form link for `item_id` on the server behind `ews_url`."""
    parts = urlsplit(ews_url)
    return (
        f"{parts.scheme}://{parts.netloc}/owa/?ItemID={quote(item_id, safe='')}"
        "&exvsurl=1&viewmodel=ReadMessageItem"
    )


class QueueLinks:
    """The server's link of each queue item fetched and not yet moved; bounded (items
    that are disposed of, fail or are let go are forgotten oldest first)."""

    def __init__(self, max_items: int) -> None:
        self._max_items = max_items
        self._links: OrderedDict[str, str] = OrderedDict()

    def remember(self, item_id: str, item: Any) -> None:
        link = getattr(item, LINK_FIELD, None)
        if link:
            self._links[item_id] = str(link)
            while len(self._links) > self._max_items:
                self._links.popitem(last=False)

    def moved(self, item_id: str, new_id: str | None) -> str | None:
        """The link of the item's copy `new_id`, when the queue item's link has the form
        that says how (None: ask the server)."""
        link = self._links.pop(item_id, None)
        if link is None or new_id is None:
            return None
        parts = urlsplit(link)
        if not (parts.scheme and parts.netloc):
            return None
        params = parse_qsl(parts.query, keep_blank_values=True)
        if [value for name, value in params if name == "ItemID"] != [item_id]:
            return None
        old, new = f"ItemID={quote(item_id, safe='')}", f"ItemID={quote(new_id, safe='')}"
        return link.replace(old, new, 1) if link.count(old) == 1 else None

    def forget(self, item_ids: Sequence[str]) -> None:
        for item_id in item_ids:
            self._links.pop(item_id, None)


def link_of(item: Any, ews_url: str) -> str:
    link = getattr(item, LINK_FIELD, None)
    return str(link) if link else built_link(ews_url, item.id)


def stored_of(items: Sequence[Any], ews_url: str) -> list[Stored]:
    """FindItem results (fetched with LINK_FIELD) as `Stored`."""
    return [Stored(item_id=item.id, web_link=link_of(item, ews_url)) for item in items]


def message_ids(account: Any, folder: Any, item_ids: Sequence[str]) -> list[str | None]:
    """The Internet Message-ID of each queue item (None when it has none or is gone)."""
    ids = [(item_id, None) for item_id in item_ids]
    found = account.fetch(ids=ids, folder=folder, only_fields=["message_id"], chunk_size=len(ids))
    return [
        None if isinstance(item, Exception) or not item.message_id else str(item.message_id)
        for item in found
    ]


def find_stored(storage: Any, message_id: str) -> str | None:
    """The id of the storage item with this Internet Message-ID (the newest, if several)."""
    found = [
        item
        for item in storage.filter(message_id=message_id).only("id", "datetime_received")
        if not isinstance(item, Exception)
    ]
    if not found:
        return None
    found.sort(key=lambda item: item.datetime_received or 0)
    return str(found[-1].id)


def links(account: Any, folder: Any, item_ids: Sequence[str], ews_url: str) -> list[str]:
    """The OWA link of each storage item, as the server gives it or built from the id."""
    ids = [(item_id, None) for item_id in item_ids]
    found = account.fetch(ids=ids, folder=folder, only_fields=[LINK_FIELD], chunk_size=len(ids))
    out = []
    for item_id, item in zip(item_ids, found, strict=True):
        link = None if isinstance(item, Exception) else getattr(item, LINK_FIELD, None)
        out.append(str(link) if link else built_link(ews_url, item_id))
    return out


def complete(
    account: Any,
    storage: Any,
    new_ids: Sequence[str | None],
    wanted: Sequence[str | None],
    known_links: Sequence[str | None],
    ews_url: str,
) -> list[Stored]:
    """`Stored` for each moved item: `new_ids` are what MoveItem returned (None: no id),
    `wanted` the Message-IDs to find those by, `known_links` the links already derived
    (`QueueLinks.moved`). Never raises: what cannot be found now stays None for the
    reconciler."""
    ids = list(new_ids)
    by_id = {i: link for i, link in zip(new_ids, known_links, strict=True) if i and link}
    try:
        for i, (item_id, message_id) in enumerate(zip(new_ids, wanted, strict=True)):
            if item_id is None and message_id:
                ids[i] = find_stored(storage, message_id)
        ask = [item_id for item_id in ids if item_id is not None and item_id not in by_id]
        if ask:
            by_id |= dict(zip(ask, links(account, storage, ask, ews_url), strict=True))
    except Exception as exc:
        log.warning("storage link lookup failed (%s); the reconciler fills it", type(exc).__name__)
    return [
        Stored(item_id=None, web_link=None)
        if item_id is None
        else Stored(item_id=item_id, web_link=by_id.get(item_id) or built_link(ews_url, item_id))
        for item_id in ids
    ]


def find_by_message_id(folder: Any, message_id: str, extra: Sequence[str] = ()) -> list[Any]:
    """Items of `folder` with this Internet Message-ID (blocking). FindItem with a
    restriction on message:InternetMessageId; id-only fields keep it a single FindItem."""
    found = folder.filter(message_id=message_id).only(
        "id", "changekey", "datetime_received", *extra
    )
    return [item for item in found if not isinstance(item, Exception)]


def find_by_key(folder: Any, dedupe_key: str, extra: Sequence[str] = ()) -> list[Any]:
    """Items of `folder` WITHOUT a Message-ID whose journal key is `dedupe_key` (blocking).

    A content hash cannot go into a restriction: FindItem (paged) lists the items that have
    no message:InternetMessageId, exchangelib follows up with GetItem for FETCH_FIELDS, and
    each key is recomputed by `to_mail`, exactly as `fetch` does. Cost: one pass over the
    folder's items without a Message-ID (usually few)."""
    found = folder.filter(message_id__exists=False).only("id", "changekey", *FETCH_FIELDS, *extra)
    return [
        item
        for item in found
        if not isinstance(item, Exception) and to_mail(item).dedupe_key == dedupe_key
    ]


def stored_mime(account: Any, storage: Any, item_id: str) -> bytes | Exception:
    """The MIME of the storage item `item_id` (blocking GetItem with item:MimeContent), or
    the error for it: exchangelib's inline one, or `ItemGone` when the id is unknown,
    malformed or names an item of another folder (GetItem itself takes any id)."""
    found = account.fetch(
        ids=[(item_id, None)], folder=storage, only_fields=["mime_content", "parent_folder_id"]
    )
    [item] = align(list(found), 1, "GetItem")
    if isinstance(item, ErrorItemNotFound | ErrorInvalidIdMalformed):
        return ItemGone(describe(item))
    if isinstance(item, Exception):
        return item
    if item.parent_folder_id is None or item.parent_folder_id.id != storage.id:
        return ItemGone("EWS item is not in the storage folder")
    return bytes(item.mime_content or b"")
