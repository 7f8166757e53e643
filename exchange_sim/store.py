"""In-memory mailbox store: mailboxes, the public-folder tree, folders, items and events.

The records are in model.py; every mutation goes through `Store` methods, which keep
ids/change keys, per-folder change journals (for SyncFolderItems) and event emission (for
subscriptions) consistent. Item ids are global; a move or copy creates a new item with a new
id, as Exchange does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from exchange_sim import ids
from exchange_sim.mime import MimeProps, parse_headers
from exchange_sim.model import Event, Folder, Item, Mailbox, StoreError, utcnow

# Distinguished folders every mailbox has: (distinguished id, display name, parent).
MAILBOX_FOLDERS = (
    ("msgfolderroot", "Top of Information Store", "root"),
    ("inbox", "Inbox", "msgfolderroot"),
    ("deleteditems", "Deleted Items", "msgfolderroot"),
    ("drafts", "Drafts", "msgfolderroot"),
    ("sentitems", "Sent Items", "msgfolderroot"),
)


class Store:
    def __init__(self) -> None:
        self.mailboxes: dict[str, Mailbox] = {}
        self.folders: dict[str, Folder] = {}
        self.items: dict[str, Item] = {}
        self.listeners: list[Callable[[Event], None]] = []
        self._seq = 0
        self._last_received = utcnow()
        self.public_root = self._new_folder("IPM_SUBTREE", None, None, "publicfoldersroot")

    # -- structure ---------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_folder(
        self, name: str, parent: Folder | None, mailbox: Mailbox | None, distinguished: str | None
    ) -> Folder:
        folder = Folder(
            id=ids.new_id(ids.FOLDER),
            changekey=ids.new_changekey(ids.FOLDER),
            name=name,
            parent=parent,
            mailbox=mailbox,
            distinguished=distinguished,
            folder_class=None if distinguished in ("root", "publicfoldersroot") else "IPF.Note",
        )
        if parent is not None:
            parent.children.append(folder)
        self.folders[folder.id] = folder
        return folder

    def add_mailbox(self, address: str) -> Mailbox:
        key = address.lower()
        if key in self.mailboxes:
            return self.mailboxes[key]
        mailbox = Mailbox(address=address)
        mailbox.root = self._new_folder("root", None, mailbox, "root")
        mailbox.distinguished["root"] = mailbox.root
        for did, name, parent in MAILBOX_FOLDERS:
            mailbox.distinguished[did] = self._new_folder(
                name, mailbox.distinguished[parent], mailbox, did
            )
        self.mailboxes[key] = mailbox
        return mailbox

    def mailbox(self, address: str) -> Mailbox:
        try:
            return self.mailboxes[address.lower()]
        except KeyError:
            raise StoreError(
                "ErrorNonExistentMailbox", f"No mailbox with such guid or address: {address}"
            ) from None

    def create_folder(self, parent: Folder, name: str) -> Folder:
        if not name.strip():
            raise StoreError("ErrorInvalidFolderId", "A folder needs a display name.")
        if parent.child(name) is not None:
            raise StoreError(
                "ErrorFolderExists", "A folder with the specified name already exists."
            )
        return self._new_folder(name, parent, parent.mailbox, None)

    def ensure_path(self, path: str, mailbox: Mailbox | None) -> Folder:
        """Create (if needed) and return a folder path. Mailbox paths are relative to
        "Top of Information Store" unless they start with "root/"; `mailbox=None` means the
        public-folder tree."""
        node, parts = self._path_start(path, mailbox)
        for part in parts:
            node = node.child(part) or self.create_folder(node, part)
        return node

    def find_path(self, path: str, mailbox: Mailbox | None) -> Folder:
        """An existing folder path (same syntax as `ensure_path`), else ErrorFolderNotFound."""
        node, parts = self._path_start(path, mailbox)
        for part in parts:
            child = node.child(part)
            if child is None:
                raise StoreError("ErrorFolderNotFound", f"No folder {path!r}")
            node = child
        return node

    def _path_start(self, path: str, mailbox: Mailbox | None) -> tuple[Folder, list[str]]:
        """The folder a path starts from, and the names below it."""
        parts = [p for p in path.strip("/").split("/") if p]
        if mailbox is None:
            return self.public_root, parts
        if parts and parts[0].lower() == "root":
            return mailbox.root, parts[1:]
        top = mailbox.distinguished["msgfolderroot"]
        if parts and parts[0].lower() == top.name.lower():
            parts = parts[1:]
        return top, parts

    def folder(self, folder_id: str) -> Folder:
        if not ids.is_well_formed(folder_id, ids.FOLDER):
            raise StoreError("ErrorInvalidIdMalformed", "Id is malformed.")
        try:
            return self.folders[folder_id]
        except KeyError:
            raise StoreError(
                "ErrorFolderNotFound", "The specified folder could not be found in the store."
            ) from None

    def item(self, item_id: str, changekey: str | None = None) -> Item:
        # Like Exchange, a stale (well-formed) change key is not an error for the operations
        # the simulator implements; a malformed one is.
        if not ids.is_well_formed(item_id, ids.ITEM):
            raise StoreError("ErrorInvalidIdMalformed", "Id is malformed.")
        if changekey is not None and not ids.is_well_formed_changekey(changekey):
            raise StoreError("ErrorInvalidChangeKey", "ChangeKey is invalid.")
        try:
            return self.items[item_id]
        except KeyError:
            raise StoreError(
                "ErrorItemNotFound", "The specified object was not found in the store."
            ) from None

    # -- items -------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def _place(
        self,
        folder: Folder,
        raw: bytes,
        props: MimeProps,
        *,
        received: datetime,
        is_draft: bool,
        is_read: bool,
        created: datetime | None = None,
    ) -> Item:
        seq = self._next_seq()
        now = utcnow()
        item = Item(
            id=ids.new_id(ids.ITEM),
            changekey=ids.new_changekey(ids.ITEM),
            folder=folder,
            raw=raw,
            props=props,
            received=received,
            created=created or now,
            is_draft=is_draft,
            is_read=is_read,
            entered_seq=seq,
        )
        folder.items[item.id] = item
        folder.journal.append((seq, "create", item.id, seq))
        self.items[item.id] = item
        return item

    def _remove(self, item: Item) -> None:
        folder = item.folder
        del folder.items[item.id]
        del self.items[item.id]
        folder.journal.append((self._next_seq(), "delete", item.id, item.entered_seq))

    def _event(self, kind: str, item: Item, old: Item | None = None) -> Event:
        return Event(
            kind=kind,
            timestamp=utcnow(),
            mailbox=item.folder.mailbox,
            item_id=item.id,
            item_changekey=item.changekey,
            parent_id=item.folder.id,
            parent_changekey=item.folder.changekey,
            old_item_id=old.id if old else None,
            old_item_changekey=old.changekey if old else None,
            old_parent_id=old.folder.id if old else None,
            old_parent_changekey=old.folder.changekey if old else None,
        )

    def _received_now(self) -> datetime:
        """Strictly increasing receive times, so sorting on DateTimeReceived is a total
        order (the wire shows whole seconds; the store keeps microseconds)."""
        now = utcnow()
        if now <= self._last_received:
            now = self._last_received + timedelta(microseconds=1)
        self._last_received = now
        return now

    def deliver(self, folder: Folder, raw: bytes) -> Item:
        """Transport delivery: not a draft, unread; CreatedEvent + NewMailEvent. Like Exchange
        transport, a message without a Message-ID header gets one."""
        props = parse_headers(raw)
        if props.message_id is None:
            message_id = f"<{uuid.uuid4().hex}@exchange-sim.local>"
            raw = b"Message-ID: " + message_id.encode("ascii") + b"\r\n" + raw
            props = parse_headers(raw)
        item = self._place(
            folder, raw, props, received=self._received_now(), is_draft=False, is_read=False
        )
        self._emit(self._event("CreatedEvent", item))
        self._emit(self._event("NewMailEvent", item))
        return item

    def create(self, folder: Folder, raw: bytes, *, is_draft: bool, is_read: bool) -> Item:
        """CreateItem with MIME content (SaveOnly): CreatedEvent only."""
        item = self._place(
            folder,
            raw,
            parse_headers(raw),
            received=self._received_now(),
            is_draft=is_draft,
            is_read=is_read,
        )
        self._emit(self._event("CreatedEvent", item))
        return item

    def move(self, item: Item, target: Folder) -> Item:
        """A move gives the item a new id in the target folder; one MovedEvent."""
        self._remove(item)
        moved = self._clone(item, target)
        self._emit(self._event("MovedEvent", moved, old=item))
        return moved

    def copy(self, item: Item, target: Folder) -> Item:
        copied = self._clone(item, target)
        self._emit(self._event("CopiedEvent", copied, old=item))
        return copied

    def _clone(self, item: Item, target: Folder) -> Item:
        """The same message under a new id in `target` (a move or a copy)."""
        clone = self._place(
            target,
            item.raw,
            item.props,
            received=item.received,
            is_draft=item.is_draft,
            is_read=item.is_read,
            created=item.created,
        )
        clone.fragments = item.fragments
        return clone

    def delete(self, item: Item, delete_type: str) -> None:
        """HardDelete and SoftDelete remove the item from view (soft-deleted items go to the
        hidden recoverable-items store, not modelled); MoveToDeletedItems moves it to
        deleteditems (public-folder items have no Deleted Items and are removed)."""
        mailbox = item.folder.mailbox
        if delete_type == "MoveToDeletedItems" and mailbox is not None:
            trash = mailbox.distinguished["deleteditems"]
            if item.folder is not trash:
                self.move(item, trash)
                return
        self._remove(item)
        self._emit(
            Event(
                kind="DeletedEvent",
                timestamp=utcnow(),
                mailbox=mailbox,
                item_id=item.id,
                item_changekey=item.changekey,
                parent_id=item.folder.id,
                parent_changekey=item.folder.changekey,
            )
        )

    # -- sync --------------------------------------------------------------------------------

    def sync_changes(
        self, folder: Folder, since_seq: int, max_changes: int
    ) -> tuple[list[tuple[str, str, Item | None]], int, bool]:
        """Changes in `folder` after `since_seq`: ([(kind, item id, item|None)], new seq,
        includes last). An item created and removed within the window is not reported."""
        journal = folder.journal
        lo, hi = 0, len(journal)
        while lo < hi:  # first entry with seq > since_seq
            mid = (lo + hi) // 2
            if journal[mid][0] <= since_seq:
                lo = mid + 1
            else:
                hi = mid
        changes: list[tuple[str, str, Item | None]] = []
        last_seq = since_seq
        index = lo
        while index < len(journal) and len(changes) < max_changes:
            seq, kind, item_id, entered = journal[index]
            index += 1
            last_seq = seq
            if kind == "create":
                item = folder.items.get(item_id)
                if item is not None:
                    changes.append(("Create", item_id, item))
            elif entered <= since_seq:
                changes.append(("Delete", item_id, None))
        return changes, last_seq, index >= len(journal)

    @property
    def seq(self) -> int:
        return self._seq
