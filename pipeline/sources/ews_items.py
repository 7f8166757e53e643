"""GetItem and SyncFolderItems of queue items, read straight from the response XML.

exchangelib turns every returned item into a full model object through its generic field
machinery (`BaseItem.from_xml`): for the dozen properties the rules need, that was the
largest single cost of the service (bench/README.md, "Where the CPU goes"). Here the request
is exchangelib's own (its GetItem service, the same ItemShape and ids, its HTTP, SOAP fault
and per-item error handling), and only the step from an item's XML element to the values
`ews_convert.to_mail` reads is done directly: `QueueItem` has the attribute names and the
values exchangelib's Message would have for QUEUE_FIELDS (tests/source/test_ews_items.py
holds the two side by side over the corpus). SyncFolderItems (the catch-up) is read the
same way: only the id, change key and arrival time of each created item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchangelib.properties import FieldPath
from exchangelib.services import GetItem, SyncFolderItems
from exchangelib.util import TNS

ID_ONLY = "IdOnly"
_T = "{" + TNS + "}"


@dataclass(frozen=True, slots=True)
class Mailbox:
    name: str | None
    email_address: str | None


@dataclass(frozen=True, slots=True)
class QueueItem:
    """What exchangelib's Message would hold for QUEUE_FIELDS (same attribute names)."""

    id: str | None
    changekey: str | None
    subject: str | None
    sensitivity: str | None
    message_id: str | None
    sender: Mailbox | None
    author: Mailbox | None
    to_recipients: tuple[Mailbox, ...] | None
    cc_recipients: tuple[Mailbox, ...] | None
    datetime_sent: datetime | None
    datetime_received: datetime | None
    is_draft: bool | None
    size: int | None
    web_client_read_form_query_string: str | None


class QueueGetItem(GetItem):  # type: ignore[misc]
    """exchangelib's GetItem, answering `QueueItem`s (or the per-item exceptions)."""

    def _elem_to_obj(self, elem: Any) -> QueueItem:
        return queue_item(elem)


@dataclass(frozen=True, slots=True)
class Arrived:
    """A created item in a SyncFolderItems answer (what `ref_from_item` reads)."""

    id: str | None
    changekey: str | None
    datetime_received: datetime | None


class QueueSync(SyncFolderItems):  # type: ignore[misc]
    """exchangelib's SyncFolderItems, answering ("create", `Arrived`) for created items."""

    def _elem_to_obj(self, elem: Any) -> tuple[str, Any]:
        change_type = self.change_types_map[elem.tag]
        if change_type != self.CREATE:
            return change_type, None  # updates, deletions, read flags: not arrivals
        item = elem[0]
        item_id = item.find(_T + "ItemId")
        return change_type, Arrived(
            id=None if item_id is None else item_id.get("Id"),
            changekey=None if item_id is None else item_id.get("ChangeKey"),
            datetime_received=ews_datetime(_text(item, "DateTimeReceived")),
        )


def additional_fields(folder: Any, fields: Sequence[str]) -> set[FieldPath]:
    """The ItemShape's AdditionalProperties for `fields`, as `Account.fetch` builds them."""
    for name in fields:
        folder.validate_item_field(field=name, version=folder.account.version)
    return {f for f in folder.normalize_fields(fields=list(fields)) if not f.field.is_attribute}


def fetch_queue_items(
    account: Any, ids: Sequence[tuple[str, None]], shape_fields: set[FieldPath]
) -> list[QueueItem | Exception]:
    """GetItem of `ids` in one request (blocking): one result per id, in order."""
    service = QueueGetItem(account=account, chunk_size=len(ids))
    return list(service.call(items=ids, additional_fields=shape_fields, shape=ID_ONLY))


def queue_item(elem: Any) -> QueueItem:
    item_id = elem.find(_T + "ItemId")
    return QueueItem(
        id=None if item_id is None else item_id.get("Id"),
        changekey=None if item_id is None else item_id.get("ChangeKey"),
        subject=_text(elem, "Subject"),
        sensitivity=_text(elem, "Sensitivity"),
        message_id=_text(elem, "InternetMessageId"),
        sender=_mailbox(elem.find(_T + "Sender")),
        author=_mailbox(elem.find(_T + "From")),
        to_recipients=_mailboxes(elem.find(_T + "ToRecipients")),
        cc_recipients=_mailboxes(elem.find(_T + "CcRecipients")),
        datetime_sent=ews_datetime(_text(elem, "DateTimeSent")),
        datetime_received=ews_datetime(_text(elem, "DateTimeReceived")),
        is_draft=_bool(_text(elem, "IsDraft")),
        size=_int(_text(elem, "Size")),
        web_client_read_form_query_string=_text(elem, "WebClientReadFormQueryString"),
    )


def _text(elem: Any, tag: str) -> str | None:
    child = elem.find(_T + tag)
    return None if child is None else (child.text or None)  # as exchangelib: "" is absent


def _box(box: Any) -> Mailbox:
    """One <t:Mailbox>."""
    return Mailbox(name=_text(box, "Name"), email_address=_text(box, "EmailAddress"))


def _mailbox(wrapper: Any) -> Mailbox | None:
    """<t:Sender><t:Mailbox>...</t:Mailbox></t:Sender> (From likewise)."""
    box = None if wrapper is None else wrapper.find(_T + "Mailbox")
    return None if box is None else _box(box)


def _mailboxes(wrapper: Any) -> tuple[Mailbox, ...] | None:
    """<t:ToRecipients> (Cc likewise): a <t:Mailbox> per recipient."""
    return None if wrapper is None else tuple(_box(b) for b in wrapper)


def ews_datetime(value: str | None) -> datetime | None:
    """EWS xs:dateTime; a value without an offset is taken as UTC (Exchange sends Z)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None  # as exchangelib: an unreadable date is no date
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _bool(value: str | None) -> bool | None:
    return (
        None
        if value is None
        else {"true": True, "on": True, "false": False, "off": False}.get(value.lower())
    )


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
