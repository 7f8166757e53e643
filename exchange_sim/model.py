"""The store's records: mailboxes, folders, items and events, and the error EWS reports.

Plain data with no behaviour beyond navigation (a folder's path, children, unread count);
every change to them goes through `exchange_sim.store.Store`, which keeps them consistent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from exchange_sim.mime import MimeProps


class StoreError(Exception):
    """An EWS error for one request element: `code` is the EWS ResponseCode."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


@dataclass(slots=True, eq=False)
class Folder:
    id: str
    changekey: str
    name: str
    parent: Folder | None
    mailbox: Mailbox | None  # None in the public-folder tree
    distinguished: str | None = None
    folder_class: str | None = "IPF.Note"
    children: list[Folder] = field(default_factory=list)
    items: dict[str, Item] = field(default_factory=dict)
    # (seq, "create"|"delete", item id, seq at which the item entered this folder)
    journal: list[tuple[int, str, str, int]] = field(default_factory=list)

    @property
    def is_public(self) -> bool:
        return self.mailbox is None

    @property
    def unread_count(self) -> int:
        return sum(1 for item in self.items.values() if not item.is_read)

    def path(self) -> str:
        parts = []
        node: Folder | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def child(self, name: str) -> Folder | None:
        lowered = name.lower()
        for child in self.children:
            if child.name.lower() == lowered:
                return child
        return None

    def descendants(self) -> Iterator[Folder]:
        for child in self.children:
            yield child
            yield from child.descendants()


@dataclass(slots=True, eq=False)
class Item:
    id: str
    changekey: str
    folder: Folder
    raw: bytes
    props: MimeProps
    received: datetime
    created: datetime
    is_draft: bool
    is_read: bool
    entered_seq: int
    # Rendered XML fragments of fields that never change for this item (see render.py).
    fragments: dict[str, str] | None = None


@dataclass(slots=True, eq=False)
class Mailbox:
    address: str
    root: Folder = field(init=False)
    distinguished: dict[str, Folder] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # CreatedEvent, NewMailEvent, MovedEvent, CopiedEvent, DeletedEvent
    timestamp: datetime
    mailbox: Mailbox | None
    item_id: str
    item_changekey: str
    parent_id: str
    parent_changekey: str
    old_item_id: str | None = None
    old_item_changekey: str | None = None
    old_parent_id: str | None = None
    old_parent_changekey: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)
