"""Parse the properties Exchange derives from a message's RFC 5322 header block.

Only the header block is parsed (bodies are never needed). Every step tolerates malformed
input: a header that cannot be decoded falls back to its raw text, an unparseable date to
None, an address list to whatever `getaddresses` salvages. Nothing here may raise.
"""

from __future__ import annotations

import email.header
import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

_SENSITIVITY = {
    "personal": "Personal",
    "private": "Private",
    "company-confidential": "Confidential",
}
_PARSER = HeaderParser(policy=compat32)


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class MimeProps:
    subject: str | None
    sender: Address | None  # Sender: header, else From:
    author: Address | None  # From:
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    message_id: str | None
    date_sent: datetime | None
    sensitivity: str  # Normal, Personal, Private, Confidential
    references: str | None
    in_reply_to: str | None


def _decode(value: object) -> str:
    """Decode RFC 2047 encoded words; fall back to the raw text."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        raw = str(value)
        try:
            return str(email.header.make_header(email.header.decode_header(value)))
        except Exception:
            return raw
    raw = str(value)
    try:
        decoded = str(email.header.make_header(email.header.decode_header(raw)))
    except Exception:
        return _unfold(raw)
    return _unfold(decoded)


def _unfold(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split()) if "\n" in text else text


def _get(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
    except Exception:
        return None
    if value is None:
        return None
    return _decode(value).strip()


def _addresses(msg: Message, name: str) -> tuple[Address, ...]:
    try:
        values = msg.get_all(name) or []
        raw = [_decode(v) for v in values]
        pairs = email.utils.getaddresses(raw)
    except Exception:
        return ()
    result = []
    for display, addr in pairs:
        display, addr = display.strip(), addr.strip()
        if not display and not addr:
            continue
        result.append(Address(name=display or addr, email=addr))
    return tuple(result)


def _single_address(msg: Message, name: str) -> Address | None:
    found = _addresses(msg, name)
    return found[0] if found else None


def _date(msg: Message) -> datetime | None:
    raw = _get(msg, "Date")
    if not raw:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except Exception:
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _sensitivity(msg: Message) -> str:
    raw = _get(msg, "Sensitivity")
    if not raw:
        return "Normal"
    return _SENSITIVITY.get(raw.strip().lower(), "Normal")


def parse_headers(raw: bytes) -> MimeProps:
    """Properties of a message as Exchange shows them; never raises."""
    try:
        # Header bytes as UTF-8 (RFC 6532, SMTPUTF8: Exchange shows such headers as text);
        # bytes that are not UTF-8 become U+FFFD. Parsing bytes with compat32 instead would
        # turn every non-ASCII header into U+FFFD, so an IDN or UTF-8 address never matched.
        msg = _PARSER.parsestr(raw.decode("utf-8", "replace"), headersonly=True)
    except Exception:
        msg = Message()
    author = _single_address(msg, "From")
    sender = _single_address(msg, "Sender") or author
    message_id = _get(msg, "Message-ID") or None
    subject = _get(msg, "Subject")
    return MimeProps(
        subject=subject,
        sender=sender,
        author=author,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        message_id=message_id,
        date_sent=_date(msg),
        sensitivity=_sensitivity(msg),
        references=_get(msg, "References") or None,
        in_reply_to=_get(msg, "In-Reply-To") or None,
    )
