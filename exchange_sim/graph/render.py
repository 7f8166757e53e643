"""Store records as Graph JSON: `message` and `mailFolder`, and Graph's ids.

Graph ids are the EWS ids in URL-safe base64 ('/' -> '-', '+' -> '_'), as Exchange Online
does; a message's webLink carries the EWS (standard base64) form, URL-encoded. The message
body is read from the MIME only when asked for (body, bodyPreview, hasAttachments).
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from exchange_sim.mime import Address
from exchange_sim.model import Folder, Item

ODATA = "https://graph.microsoft.com/v1.0/$metadata"
MESSAGE_TYPE = "#microsoft.graph.message"
WEBLINK = "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem"
#: MAPI PidTagSensitivity (PtypInteger32, tag 0x0036); Graph spells its id "Integer 0x36".
SENSITIVITY_TAG = 0x0036
SENSITIVITY_ID = "Integer 0x36"
SENSITIVITY_VALUES = {"Normal": 0, "Personal": 1, "Private": 2, "Confidential": 3}

#: What Graph returns for a message without $select.
DEFAULT_MESSAGE_FIELDS = (
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
)
_BODY_FIELDS = {"body", "bodyPreview", "hasAttachments", "uniqueBody"}


def graph_id(ews_id: str) -> str:
    return ews_id.replace("/", "-").replace("+", "_")


def ews_id(graph_id_: str) -> str:
    return graph_id_.replace("-", "/").replace("_", "+")


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recipient(address: Address | None) -> dict[str, Any] | None:
    if address is None:
        return None
    return {"emailAddress": {"name": address.name or address.email, "address": address.email}}


def web_link(item: Item) -> str:
    return WEBLINK.format(quote(item.id, safe=""))


def sensitivity_value(item: Item) -> int | None:
    """PidTagSensitivity as transport sets it from the Sensitivity header; None (the property
    is absent) when the message has no such header, which clients must read as Normal."""
    if item.props.sensitivity == "Normal" and not _has_header(item.raw, b"sensitivity:"):
        return None
    return SENSITIVITY_VALUES.get(item.props.sensitivity, 0)


def _has_header(raw: bytes, name: bytes) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return any(line.lower().startswith(name) for line in head.splitlines())


def _body(item: Item) -> tuple[str, str, bool]:
    """(contentType, content, hasAttachments) from the MIME; never raises."""
    try:
        msg = email.message_from_bytes(item.raw, policy=email.policy.default)
        attachments = any(True for _ in msg.iter_attachments()) if msg.is_multipart() else False
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is None:
            return "text", "", attachments
        content = part.get_content()
        kind = "html" if part.get_content_subtype() == "html" else "text"
        return kind, content if isinstance(content, str) else "", attachments
    except Exception:
        return "text", "", False


def message_json(
    item: Item, select: list[str] | None, expand_tags: set[int] | None
) -> dict[str, Any]:
    """A message as Graph answers it: `select` None means the default fields; `expand_tags`
    the extended-property tags asked for with $expand (None: no $expand)."""
    fields = select if select else DEFAULT_MESSAGE_FIELDS
    body = _body(item) if _BODY_FIELDS.intersection(fields) else ("text", "", False)
    values = _message_values(item, body)
    out: dict[str, Any] = {"@odata.etag": f'W/"{item.changekey}"', "id": graph_id(item.id)}
    for name in fields:
        if name in values:
            out[name] = values[name]
    if "internetMessageHeaders" in fields:  # only ever on request, as Graph does
        out["internetMessageHeaders"] = _headers(item.raw)
    if expand_tags is not None:
        out["singleValueExtendedProperties"] = _extended(item, expand_tags)
    return out


def _headers(raw: bytes) -> list[dict[str, str]]:
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        return [{"name": k, "value": " ".join(str(v).split())} for k, v in parsed.items()]
    except Exception:
        return []


def _extended(item: Item, tags: set[int]) -> list[dict[str, str]]:
    value = sensitivity_value(item)
    if SENSITIVITY_TAG in tags and value is not None:
        return [{"id": SENSITIVITY_ID, "value": str(value)}]
    return []


def _message_values(item: Item, body: tuple[str, str, bool]) -> dict[str, Any]:
    props = item.props
    content_type, content, attachments = body
    preview = " ".join(content.split())[:255] if content_type == "text" else ""
    return {
        "createdDateTime": timestamp(item.created),
        "lastModifiedDateTime": timestamp(item.created),
        "changeKey": item.changekey,
        "categories": [],
        "receivedDateTime": timestamp(item.received),
        "sentDateTime": timestamp(props.date_sent or item.received),
        "hasAttachments": attachments,
        "internetMessageId": props.message_id,
        "subject": props.subject,
        "bodyPreview": preview,
        "importance": "normal",
        "parentFolderId": graph_id(item.folder.id),
        "isDeliveryReceiptRequested": None,
        "isReadReceiptRequested": False,
        "isRead": item.is_read,
        "isDraft": item.is_draft,
        "webLink": web_link(item),
        "inferenceClassification": "focused",
        "body": {"contentType": content_type, "content": content},
        "uniqueBody": {"contentType": content_type, "content": content},
        "sender": recipient(props.sender),
        "from": recipient(props.author),
        "toRecipients": [recipient(a) for a in props.to],
        "ccRecipients": [recipient(a) for a in props.cc],
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
    }


def folder_json(folder: Folder) -> dict[str, Any]:
    parent = folder.parent
    return {
        "id": graph_id(folder.id),
        "displayName": folder.name,
        "parentFolderId": graph_id(parent.id) if parent is not None else None,
        "childFolderCount": len(folder.children),
        "unreadItemCount": folder.unread_count,
        "totalItemCount": len(folder.items),
        "isHidden": False,
    }
