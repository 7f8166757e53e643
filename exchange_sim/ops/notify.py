"""Subscribe (streaming, pull), GetEvents, Unsubscribe, and the event XML they share."""

from __future__ import annotations

from lxml import etree

from exchange_sim import soapxml as sx
from exchange_sim.model import Event, Folder, Mailbox, StoreError
from exchange_sim.ops.common import Ctx, M, T, int_value, local, resolve_folder
from exchange_sim.subscriptions import (
    EVENT_TYPES,
    Subscription,
    decode_watermark,
    encode_watermark,
)

MAX_EVENTS_PER_NOTIFICATION = 50


def event_xml(event: Event, watermark: str | None) -> str:
    """One event element; streaming events carry no Watermark."""
    parts = [f"<t:Watermark>{watermark}</t:Watermark>" if watermark else ""]
    parts.append(f"<t:TimeStamp>{sx.xml_datetime(event.timestamp)}</t:TimeStamp>")
    parts.append(f'<t:ItemId Id="{event.item_id}" ChangeKey="{event.item_changekey}"/>')
    parts.append(f'<t:ParentFolderId Id="{event.parent_id}" ChangeKey="{event.parent_changekey}"/>')
    if event.old_item_id is not None:
        parts.append(
            f'<t:OldItemId Id="{event.old_item_id}" ChangeKey="{event.old_item_changekey}"/>'
        )
        parts.append(
            f'<t:OldParentFolderId Id="{event.old_parent_id}" '
            f'ChangeKey="{event.old_parent_changekey}"/>'
        )
    return f"<t:{event.kind}>{''.join(parts)}</t:{event.kind}>"


def subscribe(ctx: Ctx, req: etree._Element) -> str:
    if len(req) != 1:
        return _subscribe_error(
            "ErrorInvalidSubscriptionRequest", "One subscription request expected."
        )
    spec = req[0]
    kind = {"StreamingSubscriptionRequest": "streaming", "PullSubscriptionRequest": "pull"}.get(
        local(spec)
    )
    if kind is None:
        return _subscribe_error(
            "ErrorInvalidSubscriptionRequest",
            "Only pull and streaming subscriptions are supported.",
        )
    event_types = frozenset(e.text or "" for e in spec.findall(f"{T}EventTypes/{T}EventType"))
    if not event_types or not event_types <= EVENT_TYPES:
        return _subscribe_error("ErrorInvalidSubscriptionRequest", "Invalid event types.")
    try:
        folder_ids: frozenset[str] | None
        mailbox: Mailbox | None
        if spec.get("SubscribeToAllFolders", "false").lower() == "true":
            mailbox = ctx.default_mailbox()
            folder_ids = None
        else:
            folders: list[Folder] = [
                resolve_folder(ctx, e) for e in spec.findall(f"{T}FolderIds/*")
            ]
            if not folders:
                raise StoreError("ErrorInvalidSubscriptionRequest", "No folders to subscribe to.")
            if any(f.is_public for f in folders) and len(folders) > 1:
                raise StoreError(
                    "ErrorInvalidSubscriptionRequest",
                    "A subscription can include only one public folder.",
                )
            mailbox = folders[0].mailbox
            folder_ids = frozenset(f.id for f in folders)
        timeout = 30
        if kind == "pull":
            timeout = int_value(spec.findtext(T + "Timeout"), 30, 1, 1440)
            watermark = spec.findtext(M + "Watermark")
            if watermark is not None and decode_watermark(watermark) is None:
                raise StoreError("ErrorInvalidWatermark", "The watermark is invalid.")
        _check_subscription_limit(ctx, mailbox)
    except StoreError as e:
        return _subscribe_error(e.code, e.text)
    sub = ctx.subscriptions.subscribe(kind, mailbox, folder_ids, event_types, timeout)
    content = f"<m:SubscriptionId>{sub.id}</m:SubscriptionId>"
    if kind == "pull":
        content += f"<m:Watermark>{sub.watermark}</m:Watermark>"
    return sx.operation_response("Subscribe", sx.success("Subscribe", content))


def _check_subscription_limit(ctx: Ctx, mailbox: Mailbox | None) -> None:
    """EWSMaxSubscriptions (20 on Exchange Online): subscriptions nobody unsubscribed (a
    crashed client's) count until they expire."""
    limit = ctx.faults.subscription_limit
    if limit is None:
        return
    held = sum(1 for sub in ctx.subscriptions.active.values() if sub.mailbox is mailbox)
    if held >= limit:
        raise StoreError(
            "ErrorExceededSubscriptionCount",
            "You have exceeded the available subscriptions for your account. Remove "
            "unnecessary subscriptions and try your request again.",
        )


def _subscribe_error(code: str, text: str) -> str:
    return sx.operation_response("Subscribe", sx.error("Subscribe", code, text))


def unsubscribe(ctx: Ctx, req: etree._Element) -> str:
    sub_id = req.findtext(M + "SubscriptionId") or ""
    try:
        ctx.subscriptions.unsubscribe(sub_id)
    except StoreError as e:
        return sx.operation_response("Unsubscribe", sx.error("Unsubscribe", e.code, e.text))
    return sx.operation_response("Unsubscribe", sx.success("Unsubscribe"))


def get_events(ctx: Ctx, req: etree._Element) -> str:
    sub_id = req.findtext(M + "SubscriptionId") or ""
    watermark_text = req.findtext(M + "Watermark") or ""
    try:
        sub = ctx.subscriptions.get(sub_id, kind="pull")
        since = decode_watermark(watermark_text)
        if since is None or since >= sub.next_seq:
            raise StoreError("ErrorInvalidWatermark", "The watermark is invalid.")
    except StoreError as e:
        return sx.operation_response("GetEvents", sx.error("GetEvents", e.code, e.text))
    return sx.operation_response(
        "GetEvents", sx.success("GetEvents", _pull_notification(sub, since))
    )


def _pull_notification(sub: Subscription, since: int) -> str:
    """Events after the client's watermark. The server also remembers what it has handed
    out (exchangelib repeats the original watermark while MoreEvents is true)."""
    while sub.events and sub.events[0][0] <= since:
        sub.events.popleft()  # acknowledged by the client's watermark
    start = max(since, sub.pull_cursor)
    pending = [entry for entry in sub.events if entry[0] > start]
    batch = pending[:MAX_EVENTS_PER_NOTIFICATION]
    more = len(pending) > len(batch)
    if batch:
        sub.pull_cursor = batch[-1][0]
        events = "".join(event_xml(ev, encode_watermark(seq)) for seq, ev in batch)
    else:
        current = encode_watermark(start)
        events = f"<t:StatusEvent><t:Watermark>{current}</t:Watermark></t:StatusEvent>"
    return (
        f"<m:Notification><t:SubscriptionId>{sub.id}</t:SubscriptionId>"
        f"<t:PreviousWatermark>{encode_watermark(start)}</t:PreviousWatermark>"
        f"<t:MoreEvents>{'true' if more else 'false'}</t:MoreEvents>{events}</m:Notification>"
    )


def convert_id(ctx: Ctx, req: etree._Element) -> str:
    """Only for exchangelib's version/auth probes: every id comes back as it was (EwsId)
    or as malformed."""
    destination = req.get("DestinationFormat", "EwsId")
    messages = []
    source_ids = req.find(M + "SourceIds")
    for elem in list(source_ids) if source_ids is not None else []:
        value = elem.get("Id", "")
        mailbox = elem.get("Mailbox", "")
        known = value in ctx.store.items or value in ctx.store.folders
        if not known:
            messages.append(sx.error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed."))
            continue
        content = (
            f'<m:AlternateId xsi:type="t:AlternateIdType" Format="{destination}" '
            f'Id="{sx.attr(value)}" Mailbox="{sx.attr(mailbox)}" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>'
        )
        messages.append(sx.success("ConvertId", content))
    return sx.operation_response("ConvertId", "".join(messages))
