"""Pure translations between Microsoft Graph JSON and the pipeline's model and errors.

Nothing here does I/O. Graph's `message` has no sensitivity: it is the MAPI property
PidTagSensitivity (`Integer 0x0036`, values 0 Normal, 1 Personal, 2 Private,
3 Confidential) read through `singleValueExtendedProperties`; absent means Normal. Graph
spells the id back in its own way ("Integer 0x36"), so ids are compared by tag.

Error mapping (a whole call vs. one item, or one part of a $batch):

    HTTP status / error code                      pipeline.errors
    429, 503 with Retry-After                     Throttled(retry_after)
    503 without Retry-After, other 5xx, 401/403   SourceUnavailable
    404 (ErrorItemNotFound), 410 on an item       ItemGone
    400 ErrorInvalidIdMalformed                   Permanent
    other 4xx                                     Retryable (bounded by the runner)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from pipeline.errors import ItemGone, Permanent, Retryable, SourceUnavailable, Throttled
from pipeline.model import Address, Mail, MailRef, Sensitivity, content_hash

#: What the rules read of a message, and nothing else (no body, no MIME).
FETCH_SELECT = (
    "id,internetMessageId,subject,sender,from,toRecipients,ccRecipients,"
    "sentDateTime,receivedDateTime,isDraft"
)
SENSITIVITY_EXPAND = "singleValueExtendedProperties($filter=id eq 'Integer 0x0036')"
SENSITIVITY_TAG = 0x0036
_SENSITIVITY = {
    0: Sensitivity.NORMAL,
    1: Sensitivity.PERSONAL,
    2: Sensitivity.PRIVATE,
    3: Sensitivity.CONFIDENTIAL,
}
_PROPERTY_ID = re.compile(r"^\s*\w+\s+0x([0-9a-f]+)\s*$", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: The longest back-off accepted from a Retry-After (as the EWS gate).
MAX_RETRY_AFTER_SECONDS = 300.0
#: When a 429 carries no Retry-After: Graph's advice is to back off exponentially; the
#: runner does that from this start.
DEFAULT_RETRY_AFTER_SECONDS = 2.0


def clean(value: Any) -> str:
    return _CONTROL.sub("", value).strip() if isinstance(value, str) else ""


def timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def address(recipient: Any) -> Address | None:
    """{"emailAddress": {"name", "address"}} -> Address; None when it carries neither.
    Exchange names a mailbox written without a display name by its address: that name is
    no name."""
    if not isinstance(recipient, dict) or not isinstance(recipient.get("emailAddress"), dict):
        return None
    email = clean(recipient["emailAddress"].get("address"))
    name = clean(recipient["emailAddress"].get("name"))
    if name == email:
        name = ""
    if not email and not name:
        return None
    return Address(email=email, name=name)


def addresses(recipients: Any) -> tuple[Address, ...]:
    found = (address(r) for r in (recipients if isinstance(recipients, list) else ()))
    return tuple(a for a in found if a is not None)


def sensitivity(message: dict[str, Any]) -> Sensitivity:
    """PidTagSensitivity from the expanded extended properties; absent -> Normal, an
    unknown value -> Confidential (never store what we cannot classify)."""
    for prop in message.get("singleValueExtendedProperties") or ():
        match = _PROPERTY_ID.match(str(prop.get("id", "")))
        if match is None or int(match.group(1), 16) != SENSITIVITY_TAG:
            continue
        try:
            return _SENSITIVITY[int(str(prop.get("value")))]
        except (KeyError, ValueError):
            return Sensitivity.CONFIDENTIAL
    return Sensitivity.NORMAL


def to_mail(message: dict[str, Any]) -> Mail:
    """A message fetched with FETCH_SELECT and SENSITIVITY_EXPAND -> Mail. The sender is
    Graph's `sender` (the account that sent it, as EWS Sender), falling back to `from`."""
    subject = clean(message.get("subject"))
    sender = address(message.get("sender")) or address(message.get("from"))
    to = addresses(message.get("toRecipients"))
    cc = addresses(message.get("ccRecipients"))
    sent_at = timestamp(message.get("sentDateTime"))
    return Mail(
        message_id=clean(message.get("internetMessageId")) or None,
        content_hash=content_hash(subject, sender, to, cc, sent_at),
        subject=subject,
        sender=sender,
        to=to,
        cc=cc,
        sensitivity=sensitivity(message),
        is_draft=bool(message.get("isDraft")),
        sent_at=sent_at,
        received_at=timestamp(message.get("receivedDateTime")),
    )


def to_ref(message: dict[str, Any]) -> MailRef:
    return MailRef(
        item_id=str(message["id"]), received_at=timestamp(message.get("receivedDateTime"))
    )


def retry_after(headers: Any) -> float | None:
    """Retry-After (seconds, fractions allowed, or an HTTP date) -> seconds; None if absent."""
    value = str(headers.get("Retry-After", "") if headers else "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - datetime.now(UTC).timestamp()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def error_code(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def status_error(status: int, headers: Any, body: Any, what: str) -> Exception:
    """The pipeline error for a failed Graph answer (see the module docstring)."""
    code = error_code(body)
    text = f"Graph {what}: {status} {code}".strip()
    if status in (429, 503):
        seconds = retry_after(headers)
        if seconds is not None or status == 429:
            return Throttled(text, DEFAULT_RETRY_AFTER_SECONDS if seconds is None else seconds)
        return SourceUnavailable(text)
    if status in (401, 403) or status >= 500:
        return SourceUnavailable(text)
    if status in (404, 410):
        return ItemGone(text)
    if code == "ErrorInvalidIdMalformed":
        return Permanent(text)
    return Retryable(text)


def odata_literal(value: str) -> str:
    """A string as an OData literal inside a $filter (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def path_segment(value: str) -> str:
    return quote(value, safe="@")
