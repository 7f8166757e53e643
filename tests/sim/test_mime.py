"""MIME parsing never crashes on the corpus (many messages are malformed on purpose), and
every corpus message survives delivery and a fetch through exchangelib."""

from __future__ import annotations

from pathlib import Path

import pytest
from exchangelib import Account

from exchange_sim import SimulatorThread
from exchange_sim.mime import Address, parse_headers
from tests.conftest import CORPUS

from .conftest import MAILBOX, QUEUE
from .test_workflow import FIELDS, queue_of

CORPUS_FILES = sorted(CORPUS.glob("*.eml"))


def test_corpus_is_present() -> None:
    assert len(CORPUS_FILES) > 400


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_parse_never_raises(path: Path) -> None:
    props = parse_headers(path.read_bytes())
    assert props.sensitivity in ("Normal", "Personal", "Private", "Confidential")


def test_every_corpus_message_round_trips_through_exchangelib(
    sim: SimulatorThread, account: Account
) -> None:
    raws = [p.read_bytes() for p in CORPUS_FILES]
    ids = [sim.deliver(MAILBOX, QUEUE, raw) for raw in raws]
    fetched = list(
        account.fetch(ids=[(i, None) for i in ids], folder=queue_of(account), only_fields=FIELDS)
    )
    assert [m.id for m in fetched] == ids
    for raw, item in zip(raws, fetched, strict=True):
        # Transport adds a Message-ID when there is none; otherwise the bytes are untouched.
        assert item.mime_content.endswith(raw)
        assert item.message_id
        assert item.size == len(item.mime_content)
        assert item.is_draft is False


def test_headers_as_exchange_shows_them() -> None:
    raw = (
        b"From: =?iso-8859-1?q?J=F6rg?= <joerg@example.de>\r\n"
        b"Sender: Desk <desk@example.de>\r\n"
        b'To: a@example.com, "B, Person" <b@example.com>, undisclosed-recipients:;\r\n'
        b"Subject: =?utf-8?b?w4RuZGVydW5n?= of\r\n  a folded subject\r\n"
        b"Sensitivity: Private\r\n"
        b"Date: not a date\r\n\r\nbody"
    )
    props = parse_headers(raw)
    assert props.author == Address("Jörg", "joerg@example.de")
    assert props.sender == Address("Desk", "desk@example.de")
    assert [a.email for a in props.to] == ["a@example.com", "b@example.com"]
    assert props.to[1].name == "B, Person"
    assert props.subject == "Änderung of a folded subject"
    assert props.sensitivity == "Private"
    assert props.date_sent is None
    assert props.message_id is None


def test_sender_defaults_to_from_and_missing_headers_are_none() -> None:
    props = parse_headers(b"From: x@example.com\r\n\r\n")
    assert props.sender == props.author == Address("x@example.com", "x@example.com")
    empty = parse_headers(b"")
    assert (empty.subject, empty.sender, empty.to, empty.message_id) == (None, None, (), None)


def test_create_item_keeps_a_missing_message_id_missing(
    sim: SimulatorThread, account: Account
) -> None:
    from exchangelib import Message

    raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: no id\r\n\r\nx"
    saved = Message(account=account, folder=queue_of(account), mime_content=raw)
    saved.save()
    [item] = account.fetch(ids=[saved], only_fields=["message_id", "mime_content"])
    assert item.message_id is None
    assert item.mime_content == raw
