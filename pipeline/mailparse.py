"""Raw RFC 5322 bytes -> `Mail`, for `explain`, tests and any source that only has MIME.

Total: `parse_mime` returns a `Mail` for every input (empty, binary, hostile) and never
raises. Only the headers are read; the body never matters to the rules.

Why not simply `msg["To"].addresses`: the standard library's `policy.default` header
parser is quadratic or worse on some inputs (a 32 KB header of quotes or backslashes takes
seconds, 1 MB of words minutes; nested comments overflow the stack). So a header goes through
`policy.default` only while it is small; a larger one goes through the flat, fast
`email.utils.getaddresses`, and if even that fails, a plain regular expression picks out
anything shaped like an address. A subject is cut before decoding: only its first 100
characters are ever used.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import AddressHeader
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from pipeline.model import Address, Mail, Sensitivity, address_key, content_hash, is_address

#: Address headers up to this size are parsed by policy.default (exact, decodes names).
MAX_STRICT_ADDRESS_HEADER_CHARS = 4_000
#: The raw subject is cut (at a space, so encoded words stay whole) to this many characters.
MAX_RAW_SUBJECT_CHARS = 4_000
#: Decoded text values are kept to this length (only 100 subject characters are ever used).
MAX_TEXT_CHARS = 1_000

# RFC 2156 (X.400 <-> RFC 822) section 5.3.4 values of the Sensitivity header.
_SENSITIVITY = {
    "personal": Sensitivity.PERSONAL,
    "private": Sensitivity.PRIVATE,
    "company-confidential": Sensitivity.CONFIDENTIAL,
}

_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
# Last resort when even getaddresses fails: anything without separators around an '@'.
_ADDRESS_LIKE = re.compile(r"[^\s<>(),;:\"\[\]\\]+@[^\s<>(),;:\"\[\]\\]+")


def parse_mime(raw: bytes, *, received_at: datetime | None = None) -> Mail:
    """Parse `raw` into a `Mail`. `received_at` (when the queue got it) wins over headers."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    except Exception:  # the parser is lenient, but "never raises" must not depend on that
        raw_hash = hashlib.sha256(raw).hexdigest()
        return Mail(message_id=None, content_hash=raw_hash, received_at=received_at)
    # Exchange's Sender property (what NAV reads, and BC's Graph `sender`, not `from`): the
    # Sender: header when present ("on behalf of" mail), else From:. The EWS source agrees.
    sender = _first(_addresses(msg, "Sender")) or _first(_addresses(msg, "From"))
    subject = _subject(_raw(msg, "Subject"))
    to = _addresses(msg, "To")
    cc = _addresses(msg, "Cc")
    sent_at = _date(_raw(msg, "Date"))
    return Mail(
        message_id=_message_id(_raw(msg, "Message-ID")),
        content_hash=content_hash(subject, sender, to, cc, sent_at),
        subject=subject,
        sender=sender,
        to=to,
        cc=cc,
        sensitivity=_SENSITIVITY.get(_text(_raw(msg, "Sensitivity")).lower(), Sensitivity.NORMAL),
        is_draft=_text(_raw(msg, "X-Unsent")) == "1",
        sent_at=sent_at,
        received_at=received_at or _received_date(_raw(msg, "Received")),
    )


def _raw(msg: Message, name: str) -> str | None:
    """The first raw value of header `name`, unfolded, with 8-bit bytes read as UTF-8."""
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return _utf8(_LINE_BREAKS.sub("", str(value)))
    return None


def _utf8(text: str) -> str:
    """Undo the parser's surrogateescape: raw 8-bit header bytes are most often UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:  # a surrogate the parser did not make: replace it
        return text.encode("utf-8", "replace").decode("utf-8")


def _text(value: str | None) -> str:
    """Printable single-line text: no NUL (PostgreSQL rejects it), no controls, one space."""
    if not value:
        return ""
    return _SPACES.sub(" ", _CONTROL.sub("", value)).strip()[:MAX_TEXT_CHARS]


def _subject(raw: str | None) -> str:
    if not raw:
        return ""
    if len(raw) > MAX_RAW_SUBJECT_CHARS:
        cut = raw.rfind(" ", 0, MAX_RAW_SUBJECT_CHARS)
        raw = raw[: cut if cut > 0 else MAX_RAW_SUBJECT_CHARS]
    try:
        return _text(str(policy.default.header_factory("subject", raw)))
    except Exception:  # a broken encoded word the parser could not survive: keep the raw text
        return _text(raw)


def _message_id(raw: str | None) -> str | None:
    # Kept as written, angle brackets included: that is what Exchange's InternetMessageId holds.
    value = _CONTROL.sub("", raw or "").strip()
    return value or None


def _addresses(msg: Message, name: str) -> tuple[Address, ...]:
    raw = _raw(msg, name)
    if not raw or not raw.strip():
        return ()
    if len(raw) <= MAX_STRICT_ADDRESS_HEADER_CHARS:
        try:
            header = policy.default.header_factory(name.lower(), raw)
            if isinstance(header, AddressHeader):
                return tuple(_address(a.display_name, a.addr_spec) for a in header.addresses)
        except Exception:
            pass  # fall through to the tolerant parsers
    try:
        pairs = getaddresses([raw])
    except Exception:  # RecursionError on deeply nested comments, among others
        return tuple(Address(email=_text(m)) for m in _ADDRESS_LIKE.findall(raw))
    return tuple(_address(display, addr) for display, addr in pairs if addr)


def _address(display_name: str, addr_spec: str) -> Address:
    """One mailbox. `To: Carol Smith` (a display name, no address) parses as the local part
    `"Carol Smith"` with no domain: that is a name, not an address, and is kept as such
    (`email` empty), so it is no recipient at all (GUIDE section 2, rule 2)."""
    email = _text(addr_spec)
    if is_address(address_key(email)):
        return Address(email=email, name=_text(display_name))
    name = _text(display_name) or _text(email.strip('"<>'))
    return Address(email="", name=name)


def _first(addresses: tuple[Address, ...]) -> Address | None:
    return addresses[0] if addresses else None


def _date(raw: str | None) -> datetime | None:
    """An RFC 5322 date as aware UTC; None if absent or unparseable. No zone means UTC."""
    if not raw or len(raw) > 200:
        return None
    try:
        parsed = parsedate_to_datetime(raw.strip())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except Exception:  # ValueError, TypeError, OverflowError: all mean "no usable date"
        return None


def _received_date(raw: str | None) -> datetime | None:
    """The date of the topmost Received header: the text after its last ';'."""
    if not raw or ";" not in raw:
        return None
    return _date(raw.rsplit(";", 1)[1])
