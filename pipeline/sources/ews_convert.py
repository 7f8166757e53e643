"""Pure translations between exchangelib objects and the pipeline's model and errors.

Nothing here does I/O, so it is unit-tested without a server. exchangelib has no type
hints: its objects enter as `Any` here and leave as `pipeline.model` values.

Error mapping (whole call vs. per item):

    exchangelib / requests                          pipeline.errors
    ErrorServerBusy (BackOffMilliseconds)           Throttled(retry_after=back_off, or the
                                                    value the back-off gate saw)
    ErrorServerBusy "Reraised from ErrorTimeout..." SourceUnavailable (a connection error
                                                    exchangelib dressed up as busy)
    ErrorTimeoutExpired, transport errors, 401,     SourceUnavailable
    requests ConnectionError/ChunkedEncodingError,
    HTTP 503 (ErrorInternalServerTransientError),
    ErrorExceededConnectionCount, ErrorMailbox-
    MoveInProgress, ErrorMailboxStoreUnavailable
    ErrorFolderNotFound                             FolderNotFound
    ErrorItemNotFound (per item)                    ItemGone
    any other EWS ResponseCode                      Retryable (bounded by the runner)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from exchangelib.errors import (
    CASError,
    ErrorBatchProcessingStopped,
    ErrorExceededConnectionCount,
    ErrorExpiredSubscription,
    ErrorFolderNotFound,
    ErrorInternalServerTransientError,
    ErrorInvalidIdMalformed,
    ErrorInvalidSubscription,
    ErrorItemNotFound,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorMissedNotificationEvents,
    ErrorReadEventsFailed,
    ErrorServerBusy,
    ErrorSubscriptionNotFound,
    EWSError,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)

from pipeline.errors import (
    EmailLogError,
    FolderNotFound,
    ItemGone,
    Permanent,
    Retryable,
    SourceUnavailable,
    Throttled,
    describe,
)
from pipeline.model import Address, Mail, MailRef, Sensitivity, content_hash

#: GetItem properties the rules need. No MimeContent: it would cost the whole message in
#: memory per item, and the rules decide on properties only.
FETCH_FIELDS = (
    "subject",
    "sensitivity",
    "message_id",  # InternetMessageId
    "sender",
    "author",  # From
    "to_recipients",
    "cc_recipients",
    "datetime_sent",
    "datetime_received",
    "is_draft",
    "size",
)

#: Expected while streaming: the subscription is gone or its events are, so resubscribe and
#: catch up (Microsoft's "handling notification-related errors").
SUBSCRIPTION_LOST = (
    ErrorInvalidSubscription,
    ErrorSubscriptionNotFound,
    ErrorExpiredSubscription,
    ErrorMissedNotificationEvents,
    ErrorReadEventsFailed,
)
#: Outages, not any message's fault: the mailbox is moving or its database is down, or the
#: account has too many connections open. Retried without limit (SourceUnavailable).
OUTAGES = (
    ErrorExceededConnectionCount,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorInternalServerTransientError,
    # The rest of a batch after an earlier failure: not this request's fault either.
    ErrorBatchProcessingStopped,
)

#: exchangelib's own default when the server sends ErrorServerBusy without a back-off.
DEFAULT_BACK_OFF_SECONDS = 10.0

_SENSITIVITY = {
    "Normal": Sensitivity.NORMAL,
    "Personal": Sensitivity.PERSONAL,
    "Private": Sensitivity.PRIVATE,
    "Confidential": Sensitivity.CONFIDENTIAL,
}

T = TypeVar("T")

# NUL and other controls: PostgreSQL rejects NUL in text, and none belongs in these values.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(value: Any) -> str:
    """A text property as printable text ("" when absent)."""
    return _CONTROL.sub("", value).strip() if isinstance(value, str) else ""


def utc(value: Any) -> datetime | None:
    """An exchangelib EWSDateTime (a datetime subclass with an EWSTimeZone) as a plain
    aware datetime in UTC, so nothing downstream meets exchangelib's tzinfo class."""
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def address(mailbox: Any) -> Address | None:
    """exchangelib Mailbox -> Address; None when it carries neither address nor name."""
    if mailbox is None:
        return None
    email = clean(getattr(mailbox, "email_address", None))
    name = clean(getattr(mailbox, "name", None))
    if not email and not name:
        return None
    return Address(email=email, name=name)


def addresses(mailboxes: Iterable[Any] | None) -> tuple[Address, ...]:
    found = (address(m) for m in (mailboxes or ()))
    return tuple(a for a in found if a is not None)


def sensitivity(value: Any) -> Sensitivity:
    """EWS Sensitivity; an absent property means Normal (the EWS default)."""
    if value is None:
        return Sensitivity.NORMAL
    try:
        return _SENSITIVITY[str(value)]
    except KeyError:
        # An unknown value is treated as the strictest: never store what we cannot classify.
        return Sensitivity.CONFIDENTIAL


def to_mail(message: Any) -> Mail:
    """exchangelib Message (fetched with FETCH_FIELDS) -> Mail.

    Sender is EWS `Sender`, falling back to `From` (`author`) when the server leaves Sender
    empty (it does for some drafts and for items created without transport).
    """
    subject = clean(message.subject)
    sender = address(message.sender) or address(message.author)
    to = addresses(message.to_recipients)
    cc = addresses(message.cc_recipients)
    sent_at = utc(message.datetime_sent)
    # Kept as written, angle brackets included, as mailparse keeps the MIME header.
    message_id = clean(message.message_id) or None
    return Mail(
        message_id=message_id,
        content_hash=content_hash(subject, sender, to, cc, sent_at),
        subject=subject,
        sender=sender,
        to=to,
        cc=cc,
        sensitivity=sensitivity(message.sensitivity),
        is_draft=bool(message.is_draft),
        sent_at=sent_at,
        received_at=utc(message.datetime_received),
    )


def ref_from_item(item: Any) -> MailRef:
    """A FindItem/SyncFolderItems result (id, changekey, datetime_received) -> MailRef."""
    return MailRef(
        item_id=item.id, changekey=item.changekey, received_at=utc(item.datetime_received)
    )


def back_off_seconds(exc: ErrorServerBusy) -> float:
    back_off = getattr(exc, "back_off", None)
    return float(back_off) if back_off else DEFAULT_BACK_OFF_SECONDS


def is_connection_error(exc: BaseException) -> bool:
    """True for a broken or unreachable connection, however exchangelib wrapped it.

    Under FailFast, exchangelib turns requests' connection errors into ErrorTimeoutExpired
    and, when its pool has more than one session, re-raises that as
    ErrorServerBusy("Reraised from ErrorTimeoutExpired(...)"). A stream that dies mid-body
    raises requests' ChunkedEncodingError/ConnectionError unwrapped."""
    if isinstance(exc, ErrorServerBusy):
        return "Reraised from ErrorTimeout" in str(exc)
    if isinstance(exc, ResponseMessageError):
        return type(exc).__name__ == "ErrorTimeoutExpired"
    # Every other TransportError is transport-level (malformed response, redirect, TLS).
    return isinstance(
        exc, (requests.RequestException, OSError, UnauthorizedError, CASError, TransportError)
    )


def call_error(exc: BaseException, gate_seconds: float = 0.0) -> BaseException:
    """Translate an exception that failed a whole call (see the module docstring).
    `gate_seconds`: the back-off the server asked for, while the shared gate holds."""
    if isinstance(exc, EmailLogError):
        return exc
    if isinstance(exc, ErrorServerBusy) and not is_connection_error(exc):
        # The gate's hold is what the server asked for; exchangelib substitutes its own
        # 10 s for a busy reply inside HTTP 200 (ews_gate.py).
        if gate_seconds <= 0 and "Reraised from ErrorInternalServerTransient" in str(exc):
            # HTTP 503 without Retry-After: an outage, backed off exponentially.
            return SourceUnavailable(f"EWS unavailable: {describe(exc)}")
        seconds = gate_seconds if gate_seconds > 0 else back_off_seconds(exc)
        return Throttled(f"EWS server busy, back off {seconds:g}s", retry_after=seconds)
    if isinstance(exc, ErrorFolderNotFound):
        return FolderNotFound(f"EWS folder not found: {exc}")
    if isinstance(exc, OUTAGES):
        return SourceUnavailable(f"EWS outage: {describe(exc)}")
    if is_connection_error(exc):
        return SourceUnavailable(f"EWS unavailable: {describe(exc)}")
    if isinstance(exc, EWSError):
        return Retryable(f"EWS error {describe(exc)}")
    return exc


def item_error(exc: Exception, gate_seconds: float = 0.0) -> Exception:
    """Translate a per-item exception returned inline by exchangelib."""
    if isinstance(exc, ErrorItemNotFound):
        return ItemGone(describe(exc))
    if isinstance(exc, ErrorInvalidIdMalformed):
        return Permanent(describe(exc))
    translated = call_error(exc, gate_seconds)
    return translated if isinstance(translated, Exception) else exc


def align(results: Sequence[T | Exception], count: int, what: str) -> list[T | Exception]:
    """Guard the one-result-per-input contract: on a count mismatch no result can be
    attributed to an input, so every input gets a Retryable."""
    if len(results) == count:
        return list(results)
    error = Retryable(f"{what}: {len(results)} results for {count} items")
    return [error] * count
