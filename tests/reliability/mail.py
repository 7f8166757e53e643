"""What the reliability scenarios put into the queue: a mixed batch covering every outcome
(with several copies of one Message-ID), hostile and odd messages, and the corpus.

A `Letter` is a message still to be delivered, with what must become of it; `deliver()`
puts it into the simulator's queue folder and returns the `Delivered` record the invariants
check. Transport delivery adds a Message-ID when there is none (as Exchange does), so
messages without one, and drafts, are created with CreateItem instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from exchange_sim import SimulatorThread
from pipeline.model import Outcome
from tests.conftest import CORPUS
from tests.service.harness import (
    BOSS,
    BUYER,
    MAILBOX,
    OTHER,
    OTHER_HOME,
    QUEUE,
    SALES,
    STRANGER,
)

#: Directory additions for the hostile batch (see `prepare_hostile_directory`).
CONTACT_80 = "c" * (80 - len("@theirs.test")) + "@theirs.test"  # exactly 80 characters
ADDRESS_81 = "c" * (81 - len("@theirs.test")) + "@theirs.test"  # 81: can never match
CONTACT_UTF8 = "josé.müller@theirs.test"  # SMTPUTF8 local part
CONTACT_IDN = "kontakt@bücher.test"  # internationalised domain name

_numbers = itertools.count(1)


@dataclass(frozen=True)
class Letter:
    """A message to deliver and what must become of it (None: any outcome, but one)."""

    name: str
    raw: bytes
    message_id: str | None
    expect: Outcome | None = None
    entries: int | None = None  # interaction log entries, when logged
    draft: bool = False
    transport: bool = True  # False: CreateItem (keeps a missing Message-ID missing)


@dataclass(frozen=True)
class Delivered:
    """A message in the queue: its queue item id and what must become of it."""

    name: str
    item_id: str
    message_id: str | None
    expect: Outcome | None
    entries: int | None


def unique_id(tag: str = "rel") -> str:
    return f"<{tag}-{next(_numbers)}-{id(object())}@ours.test>"


def message(
    *,
    sender: str | None = SALES,
    to: str | None = BUYER,
    subject: str = "Quote",
    message_id: str | None = "",
    sensitivity: str | None = None,
    extra_headers: tuple[str, ...] = (),
    body: str = "Body.",
) -> tuple[bytes, str | None]:
    """A small message as text, and its Message-ID ("" = a fresh one, None = none)."""
    if message_id == "":
        message_id = unique_id()
    lines = []
    if sender is not None:
        lines.append(f"From: {sender}")
    if to is not None:
        lines.append(f"To: {to}")
    lines.append(f"Subject: {subject}")
    if sensitivity:
        lines.append(f"Sensitivity: {sensitivity}")
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    lines += [*extra_headers, "Date: Mon, 4 Mar 2024 10:00:00 +0000", "", body]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape"), message_id


def letter(
    name: str,
    expect: Outcome | None,
    entries: int | None = None,
    *,
    draft: bool = False,
    transport: bool = True,
    **headers: object,
) -> Letter:
    raw, message_id = message(**headers)  # type: ignore[arg-type]
    return Letter(name, raw, message_id, expect, entries, draft=draft, transport=transport)


def mixed_batch(copies: int = 3) -> list[Letter]:
    """Every outcome of GUIDE section 2 (EMAILLOG_NEVER_LOG=blocked.test), plus `copies`
    copies of one logged message under the same Message-ID: one is logged, the rest are
    duplicates (which one is logged is up to the race). Messages without a Message-ID are
    in `hostile_batch` and in test_crash's own scenario (see the bug noted there)."""
    letters = [
        letter("outbound", Outcome.LOGGED, 2, to=f"{BUYER}, {OTHER}", subject="Offer"),
        letter("inbound", Outcome.LOGGED, 2, sender=OTHER_HOME, to=f"{SALES}, {BOSS}"),
        letter("sensitive", Outcome.SENSITIVE, sensitivity="Private"),
        letter("excluded", Outcome.EXCLUDED, to=f"{BUYER}, someone@blocked.test"),
        letter("draft", Outcome.DRAFT, draft=True, transport=False),
        letter("no_parties", Outcome.NO_PARTIES, to=None),
        letter("address_too_long", Outcome.ADDRESS_TOO_LONG, sender=STRANGER, to=ADDRESS_81),
        letter("unregistered", Outcome.UNREGISTERED, sender=STRANGER, to=BUYER),
    ]
    shared = unique_id("copy")
    raw, _ = message(to=BUYER, subject="Copied", message_id=shared)
    letters += [Letter(f"copy{i}", raw, shared, None, None) for i in range(copies)]
    return letters


def hostile_batch() -> list[Letter]:
    """Generated odd input; every one must get an outcome without stopping the service."""
    many = ", ".join(f"r{i}@nowhere.test" for i in range(998))
    twin_id = unique_id("twin")
    return [
        letter("1000 recipients", Outcome.LOGGED, 2, to=f"{many}, {BUYER}, {OTHER}"),
        letter("200 KB subject", Outcome.LOGGED, 1, subject="S" * 200_000),
        letter("NUL bytes", Outcome.LOGGED, 1, subject="nul\x00in\x00subject", body="a\x00b"),
        Letter(
            "invalid UTF-8",
            b"From: "
            + SALES.encode()
            + b"\r\nTo: "
            + BUYER.encode()
            + b"\r\nSubject: caf\xe9 \xff\xfe broken\r\nMessage-ID: "
            + (invalid_id := unique_id("bad8")).encode()
            + b"\r\n\r\nbody \xc3\x28\r\n",
            invalid_id,
            Outcome.LOGGED,
            1,
        ),
        letter("no Message-ID", Outcome.LOGGED, 1, message_id=None, transport=False),
        letter(
            "no Message-ID, stranger",
            Outcome.UNREGISTERED,
            sender=STRANGER,
            message_id=None,
            transport=False,
        ),
        # Same Message-ID, different content: the second one to be decided is a duplicate.
        letter("twin a", None, message_id=twin_id, subject="Twin A", to=BUYER),
        letter("twin b", None, message_id=twin_id, subject="Twin B", to=f"{BUYER}, {OTHER}"),
        letter("80-char contact", Outcome.LOGGED, 1, to=CONTACT_80),
        letter("81-char address", Outcome.ADDRESS_TOO_LONG, sender=STRANGER, to=ADDRESS_81),
        letter("81-char sender", Outcome.ADDRESS_TOO_LONG, sender=ADDRESS_81, to=BUYER),
        letter("SMTPUTF8 contact", Outcome.LOGGED, 1, to=CONTACT_UTF8),
        letter("IDN contact", Outcome.LOGGED, 1, to=CONTACT_IDN),
        letter("IDN stranger", Outcome.UNREGISTERED, sender="x@bücher-nowhere.test", to=BUYER),
        letter("encoded-word", Outcome.LOGGED, 1, subject="=?utf-8?b?w6nDqMOgIM6xzrI=?="),
    ]


def corpus_letters() -> list[Letter]:
    """Every real-world message of ../shared/corpus/, as it is (any outcome)."""
    return [
        Letter(path.name, path.read_bytes(), None, None, None)
        for path in sorted(CORPUS.glob("*.eml"))
    ]


def deliver(sim: SimulatorThread, item: Letter, queue: str = QUEUE) -> Delivered:
    """Put `item` into the queue folder (transport delivery or CreateItem)."""
    if item.transport and not item.draft:
        item_id = sim.deliver(MAILBOX, queue, item.raw)
    else:
        item_id = sim.create_item(MAILBOX, queue, item.raw, is_draft=item.draft, is_read=False)
    return Delivered(item.name, item_id, item.message_id, item.expect, item.entries)


def deliver_all(sim: SimulatorThread, letters: list[Letter]) -> list[Delivered]:
    return [deliver(sim, item) for item in letters]
