"""The domain model: frozen values shared by the rules, the stages and the store.

Nothing here does I/O. A `Mail` is what the rules see of a message; a `MailRef` is how a
source names the item in the queue folder; a `Decision` is what the rules say about it.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

#: NAV's "Search E-Mail" is Text[80]: a longer address can never match anything.
MAX_ADDRESS_CHARS = 80
#: NAV's Description and Subject fields are Text[100].
MAX_DESCRIPTION_CHARS = 100
#: A Message-ID longer than this (UTF-8 bytes) is deduplicated by its hash: PostgreSQL cannot
#: index a btree key over ~2700 bytes, and nobody legitimately writes such an id.
MAX_MESSAGE_KEY_BYTES = 1000
#: Hex digits of sha256 kept in disposal_log and logs: enough to trace, too few to be an id.
MESSAGE_ID_HASH_CHARS = 16


def address_key(email: str) -> str:
    """The comparison key of a bare address: trimmed and lowercased (NAV's Search E-Mail).

    The one place that defines address equality: mail parties and directory rows both use it.
    """
    return email.strip().lower()


def is_address(key: str) -> bool:
    """True when `key` can be a mailbox address: text, an '@', text (`local@domain`).

    A display name without an address ("Carol Smith"), an empty `<>` or a bare local part
    is no address: such a party is no sender or recipient at all (GUIDE section 2)."""
    local, at, domain = key.rpartition("@")
    return bool(local and at and domain)


class Outcome(enum.StrEnum):
    """What happened to one queue message. Values are metric labels and DB values."""

    LOGGED = "logged"
    SENSITIVE = "sensitive"
    EXCLUDED = "excluded"
    DRAFT = "draft"
    NO_PARTIES = "no_parties"
    DUPLICATE = "duplicate"
    ADDRESS_TOO_LONG = "address_too_long"
    UNREGISTERED = "unregistered"
    #: Not a rule: the message could not be processed after bounded retries (left in the queue).
    FAILED = "failed"


class Disposal(enum.Enum):
    """How a non-logged message leaves the queue (EMAILLOG_DISPOSAL)."""

    HARD_DELETE = "delete"
    TRASH = "trash"
    MOVE = "move"


class Sensitivity(enum.StrEnum):
    NORMAL = "normal"
    PERSONAL = "personal"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class Direction(enum.StrEnum):
    """NAV's Information Flow."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


class InitiatedBy(enum.StrEnum):
    US = "us"
    THEM = "them"


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: `email` is the bare address as written (may be empty); see `key`."""

    email: str
    name: str = ""

    @property
    def key(self) -> str:
        """The comparison key: the bare address, case-folded the way NAV's Search E-Mail is."""
        return address_key(self.email)


@dataclass(frozen=True, slots=True)
class Mail:
    """What the rules need to know of one message (parsed from MIME or from EWS properties)."""

    message_id: str | None
    content_hash: str
    subject: str = ""
    sender: Address | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    sensitivity: Sensitivity = Sensitivity.NORMAL
    is_draft: bool = False
    sent_at: datetime | None = None
    received_at: datetime | None = None

    @property
    def dedupe_key(self) -> str:
        """Internet Message-ID, or the content hash when the message has none.

        An absurdly long Message-ID is replaced by its own hash so the key stays indexable.
        """
        if not self.message_id:
            return f"sha256:{self.content_hash}"
        encoded = self.message_id.encode("utf-8", "surrogatepass")
        if len(encoded) > MAX_MESSAGE_KEY_BYTES:
            return f"mid-sha256:{hashlib.sha256(encoded).hexdigest()}"
        return self.message_id


def hash_key(message_key: str) -> str:
    """A short sha256 of a message key: traceable in logs, not reversible to an address."""
    digest = hashlib.sha256(message_key.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:MESSAGE_ID_HASH_CHARS]


def message_id_hash(mail: Mail) -> str:
    """The short hash of the message's dedupe key (what logs and disposal_log carry)."""
    return hash_key(mail.dedupe_key)


@dataclass(frozen=True, slots=True)
class MailRef:
    """An item in the source's queue folder. `received_at` is when it reached the queue."""

    item_id: str
    changekey: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One Interaction Log Entry to write (entry no. and template fields are set by the store)."""

    contact_no: str
    contact_company_no: str
    contact_alt_address_code: str
    salesperson_code: str
    information_flow: Direction
    initiated_by: InitiatedBy
    interaction_at: datetime | None
    description: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The rules' verdict: which rule fired (`rule` is a human sentence) and what to write."""

    outcome: Outcome
    rule: str
    direction: Direction | None = None
    entries: tuple[Entry, ...] = field(default=())

    @property
    def is_logged(self) -> bool:
        return self.outcome is Outcome.LOGGED


@dataclass(frozen=True, slots=True)
class Candidate:
    """One classified queue message, as the rules decided it (before rule 3 is applied)."""

    queue_item_id: str
    mail: Mail
    decision: Decision


@dataclass(frozen=True, slots=True)
class Existing:
    """A stored_message row that already holds a message's key (the journal's answer to
    "is this message claimed?")."""

    stored_message_id: int
    state: str  # 'moving' or 'stored'
    queue_item_id: str | None


def content_hash(
    subject: str,
    sender: Address | None,
    to: Sequence[Address],
    cc: Sequence[Address],
    sent_at: datetime | None,
) -> str:
    """sha256 over a canonical JSON of the properties that identify a message.

    The dedupe key only when the message has no Internet Message-ID. Built from what both
    paths see alike (the EWS properties and a parsed .eml), so `emaillog explain` and the
    service key such a message the same. It leaves out what differs between copies of one
    message (received time, size, item id, transport headers). Addresses compare by
    `Address.key`, as the rules compare them.
    """
    canonical = json.dumps(
        {
            "subject": subject,
            "from": sender.key if sender else "",
            "to": [a.key for a in to],
            "cc": [a.key for a in cc],
            "sent": sent_at.isoformat() if sent_at else "",
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
