"""FindItem, GetItem, SyncFolderItems, CreateItem, CopyItem, MoveItem, DeleteItem."""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from exchange_sim import soapxml as sx
from exchange_sim.mime import parse_headers
from exchange_sim.model import Folder, Item, StoreError
from exchange_sim.ops.common import (
    Ctx,
    M,
    RequestError,
    T,
    folder_id_elements,
    int_value,
    item_id_elements,
    local,
    paged_root_folder,
    parse_shape,
    resolve_folder,
    single_folder,
)
from exchange_sim.render import item_fields, item_id_xml, item_xml
from exchange_sim.restrict import item_restriction, sort_items

# PR_MESSAGE_FLAGS and its "unsent" bit: CreateItem makes a draft unless the request sets the
# flags without MSGFLAG_UNSENT (how clients import already-sent mail).
PR_MESSAGE_FLAGS = 0x0E07
MSGFLAG_READ = 0x1
MSGFLAG_UNSENT = 0x8


def find_item(ctx: Ctx, req: etree._Element) -> str:
    fields = item_fields(parse_shape(req.find(M + "ItemShape")))
    view = req.find(M + "IndexedPageItemView")
    max_entries = int_value(
        view.get("MaxEntriesReturned") if view is not None else None, 1000, 1, 1000
    )
    offset = int_value(view.get("Offset") if view is not None else None, 0, 0, 2**31 - 1)
    predicate = item_restriction(req.find(M + "Restriction"))
    sort_order = req.find(M + "SortOrder")
    messages = []
    for elem in folder_id_elements(req.find(M + "ParentFolderIds")):
        try:
            folder = resolve_folder(ctx, elem)
            found = list(folder.items.values())
            if predicate is not None:
                found = [i for i in found if predicate(i)]
            found = sort_items(found, sort_order)
        except StoreError as e:
            messages.append(sx.error("FindItem", e.code, e.text))
            continue
        content = paged_root_folder(
            found, offset, max_entries, "Items", lambda i: item_xml(i, fields)
        )
        messages.append(sx.success("FindItem", content))
    return sx.operation_response("FindItem", "".join(messages))


def _lookup(ctx: Ctx, elem: etree._Element) -> Item:
    if local(elem) != "ItemId":
        raise StoreError("ErrorInvalidIdMalformed", f"Unsupported id element {local(elem)!r}.")
    return ctx.store.item(elem.get("Id", ""), elem.get("ChangeKey"))


def get_item(ctx: Ctx, req: etree._Element) -> str:
    fields = item_fields(parse_shape(req.find(M + "ItemShape")))
    messages = []
    for elem in item_id_elements(req.find(M + "ItemIds")):
        try:
            item = _lookup(ctx, elem)
            injected = ctx.faults.take_item_failure("GetItem", item.id)
            if injected:
                raise StoreError(injected, "Injected failure for GetItem.")
        except StoreError as e:
            messages.append(sx.error("GetItem", e.code, e.text))
            continue
        messages.append(sx.success("GetItem", f"<m:Items>{item_xml(item, fields)}</m:Items>"))
    return sx.operation_response("GetItem", "".join(messages))


def _encode_sync_state(folder: Folder, seq: int) -> str:
    return base64.b64encode(f"SIMSYNC|{folder.id}|{seq}".encode()).decode("ascii")


def _decode_sync_state(folder: Folder, value: str) -> int:
    try:
        magic, folder_id, seq = base64.b64decode(value, validate=True).decode().split("|")
        if magic != "SIMSYNC" or folder_id != folder.id:
            raise ValueError(value)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise StoreError(
            "ErrorInvalidSyncStateData",
            "Synchronization state data is corrupt or otherwise invalid.",
        ) from None


def sync_folder_items(ctx: Ctx, req: etree._Element) -> str:
    fields = item_fields(parse_shape(req.find(M + "ItemShape")))
    max_changes = int_value(req.findtext(M + "MaxChangesReturned"), 100, 1, 512)
    sync_state = req.findtext(M + "SyncState")
    try:
        folder = single_folder(ctx, req.find(M + "SyncFolderId"))
        if folder.is_public:
            # Exchange has no SyncFolderItems for public folders.
            raise StoreError(
                "ErrorInvalidOperation", "SyncFolderItems is not supported for public folders."
            )
        since = _decode_sync_state(folder, sync_state) if sync_state else 0
    except StoreError as e:
        return sx.operation_response("SyncFolderItems", sx.error("SyncFolderItems", e.code, e.text))
    ignore = {e.get("Id") for e in req.findall(f"{M}Ignore/{T}ItemId")}
    changes, seq, last = ctx.store.sync_changes(folder, since, max_changes)
    parts = []
    for kind, item_id, item in changes:
        if item_id in ignore:
            continue
        if item is None:
            parts.append(f'<t:Delete><t:ItemId Id="{item_id}"/></t:Delete>')
        else:
            parts.append(f"<t:{kind}>{item_xml(item, fields)}</t:{kind}>")
    content = (
        f"<m:SyncState>{_encode_sync_state(folder, seq)}</m:SyncState>"
        f"<m:IncludesLastItemInRange>{'true' if last else 'false'}</m:IncludesLastItemInRange>"
        f"<m:Changes>{''.join(parts)}</m:Changes>"
    )
    return sx.operation_response("SyncFolderItems", sx.success("SyncFolderItems", content))


def _message_flags(message: etree._Element) -> int | None:
    for prop in message.findall(T + "ExtendedProperty"):
        uri = prop.find(T + "ExtendedFieldURI")
        if uri is None:
            continue
        tag = uri.get("PropertyTag")
        if tag is None:
            continue
        try:
            number = int(tag, 16) if tag.lower().startswith("0x") else int(tag)
            if number == PR_MESSAGE_FLAGS:
                return int(prop.findtext(T + "Value") or "0")
        except ValueError:
            continue
    return None


def _addresses_header(message: etree._Element, tag: str) -> str:
    parts = []
    for mailbox in message.findall(f"{T}{tag}/{T}Mailbox"):
        address = mailbox.findtext(T + "EmailAddress") or ""
        name = mailbox.findtext(T + "Name")
        parts.append(f'"{name}" <{address}>' if name else address)
    return ", ".join(parts)


def _raw_from_properties(message: etree._Element) -> bytes:
    """A minimal RFC 5322 message for a CreateItem without MimeContent."""
    headers = []
    for header, value in (
        ("From", _addresses_header(message, "From")),
        ("To", _addresses_header(message, "ToRecipients")),
        ("Cc", _addresses_header(message, "CcRecipients")),
        ("Subject", message.findtext(T + "Subject") or ""),
        ("Message-ID", message.findtext(T + "InternetMessageId") or ""),
    ):
        if value:
            headers.append(f"{header}: {value}")
    sensitivity = message.findtext(T + "Sensitivity")
    if sensitivity and sensitivity != "Normal":
        header_value = "Company-Confidential" if sensitivity == "Confidential" else sensitivity
        headers.append(f"Sensitivity: {header_value}")
    body = message.findtext(T + "Body") or ""
    text = "\r\n".join([*headers, "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"])
    return (text + "\r\n\r\n" + body).encode("utf-8", "replace")


def create_item(ctx: Ctx, req: etree._Element) -> str:
    disposition = req.get("MessageDisposition", "SaveOnly")
    items = req.find(M + "Items")
    specs = list(items) if items is not None else []
    try:
        folder = _saved_item_folder(ctx, req, disposition)
    except StoreError as e:
        code = "ErrorSavedItemFolderNotFound" if e.code == "ErrorFolderNotFound" else e.code
        body = "".join(sx.error("CreateItem", code, e.text) for _ in specs)
        return sx.operation_response("CreateItem", body)
    messages = [_create_message(ctx, spec, disposition, folder) for spec in specs]
    return sx.operation_response("CreateItem", "".join(messages))


def _saved_item_folder(ctx: Ctx, req: etree._Element, disposition: str) -> Folder | None:
    """Where CreateItem keeps the item: SavedItemFolderId, else Sent Items for a sent copy,
    Drafts for SaveOnly; None for SendOnly (nothing is kept)."""
    saved_ref = req.find(M + "SavedItemFolderId")
    if saved_ref is not None:
        return single_folder(ctx, saved_ref)
    if disposition == "SendAndSaveCopy":
        return ctx.default_mailbox().distinguished["sentitems"]
    if disposition == "SaveOnly":
        return ctx.default_mailbox().distinguished["drafts"]
    return None


def _create_message(ctx: Ctx, spec: etree._Element, disposition: str, folder: Folder | None) -> str:
    """The response message for one item of a CreateItem."""
    if local(spec) != "Message":
        return sx.error(
            "CreateItem", "ErrorInvalidItemForOperation", "Only messages are supported."
        )
    mime = spec.findtext(T + "MimeContent")
    if mime is not None:
        try:
            raw = base64.b64decode(mime.strip(), validate=False)
        except (binascii.Error, ValueError):
            return sx.error("CreateItem", "ErrorMimeContentConversionFailed", "Bad MIME content.")
    else:
        raw = _raw_from_properties(spec)
    if len(raw) > ctx.config.max_request_bytes:
        return sx.error("CreateItem", "ErrorMessageSizeExceeded", "Message too large.")
    flags = _message_flags(spec)
    is_read_text = spec.findtext(T + "IsRead")
    is_read = is_read_text == "true" if is_read_text is not None else False
    if disposition == "SaveOnly":
        is_draft = flags is None or bool(flags & MSGFLAG_UNSENT)
        if flags is not None and flags & MSGFLAG_READ:
            is_read = True
    else:
        is_draft = False
        props = parse_headers(raw)
        recipients = {a.email.lower() for a in props.to + props.cc}
        for mailbox in list(ctx.store.mailboxes.values()):
            if mailbox.address.lower() in recipients:
                ctx.store.deliver(mailbox.distinguished["inbox"], raw)
    if folder is None:
        return sx.success("CreateItem", "<m:Items/>")
    item = ctx.store.create(folder, raw, is_draft=is_draft, is_read=is_read)
    return sx.success("CreateItem", f"<m:Items>{item_id_xml(item)}</m:Items>")


def _move_or_copy(ctx: Ctx, req: etree._Element, op: str) -> str:
    elems = item_id_elements(req.find(M + "ItemIds"))
    try:
        target = single_folder(ctx, req.find(M + "ToFolderId"))
    except StoreError as e:
        code = "ErrorToFolderNotFound" if e.code == "ErrorFolderNotFound" else e.code
        return sx.operation_response(op, "".join(sx.error(op, code, e.text) for _ in elems))
    messages = []
    for elem in elems:
        try:
            item = _lookup(ctx, elem)
            injected = ctx.faults.take_item_failure(op, item.id)
            if injected:
                raise StoreError(injected, f"Injected failure for {op}.")
        except StoreError as e:
            messages.append(sx.error(op, e.code, e.text))
            continue
        # A move/copy into another store (public folders, another mailbox) returns no id.
        same_store = item.folder.mailbox is target.mailbox and target.mailbox is not None
        result = ctx.store.move(item, target) if op == "MoveItem" else ctx.store.copy(item, target)
        content = f"<m:Items>{item_id_xml(result)}</m:Items>" if same_store else "<m:Items/>"
        messages.append(sx.success(op, content))
    return sx.operation_response(op, "".join(messages))


def move_item(ctx: Ctx, req: etree._Element) -> str:
    return _move_or_copy(ctx, req, "MoveItem")


def copy_item(ctx: Ctx, req: etree._Element) -> str:
    return _move_or_copy(ctx, req, "CopyItem")


def delete_item(ctx: Ctx, req: etree._Element) -> str:
    delete_type = req.get("DeleteType", "")
    if delete_type not in ("HardDelete", "SoftDelete", "MoveToDeletedItems"):
        raise RequestError("ErrorSchemaValidation", f"Invalid DeleteType {delete_type!r}.")
    messages = []
    for elem in item_id_elements(req.find(M + "ItemIds")):
        try:
            item = _lookup(ctx, elem)
            injected = ctx.faults.take_item_failure("DeleteItem", item.id)
            if injected:
                raise StoreError(injected, "Injected failure for DeleteItem.")
        except StoreError as e:
            messages.append(sx.error("DeleteItem", e.code, e.text))
            continue
        ctx.store.delete(item, delete_type)
        messages.append(sx.success("DeleteItem"))
    return sx.operation_response("DeleteItem", "".join(messages))
