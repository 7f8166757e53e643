"""parse_mime: the fields the rules need, and no exception for hostile input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.mailparse import parse_mime
from pipeline.model import Sensitivity, content_hash


def eml(*headers: str, body: str = "body") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def test_parses_the_fields_the_rules_use() -> None:
    raw = eml(
        'From: "Sam, Sales" <Sam@Us.Example>',
        "To: Ann <ann@them.example>, bob@them.example",
        "Cc: =?utf-8?q?J=C3=BCrgen?= <j@them.example>",
        "Subject: =?utf-8?b?UXVvdGUgw6Q=?=",
        "Date: Fri, 01 Mar 2024 10:00:00 +0100",
        "Message-ID:  <abc@us.example> ",
    )
    m = parse_mime(raw)
    assert (
        m.sender is not None
        and m.sender.email == "Sam@Us.Example"
        and m.sender.name == "Sam, Sales"
    )
    assert [a.email for a in m.to] == ["ann@them.example", "bob@them.example"]
    assert [(a.name, a.email) for a in m.cc] == [("Jürgen", "j@them.example")]
    assert m.subject == "Quote ä"
    assert m.sent_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert m.message_id == "<abc@us.example>"  # angle brackets kept, like InternetMessageId
    assert m.content_hash == content_hash(m.subject, m.sender, m.to, m.cc, m.sent_at)
    assert m.sensitivity is Sensitivity.NORMAL
    assert not m.is_draft


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Personal", Sensitivity.PERSONAL),
        ("private", Sensitivity.PRIVATE),
        ("COMPANY-CONFIDENTIAL", Sensitivity.CONFIDENTIAL),
        ("Normal", Sensitivity.NORMAL),
        ("secret-ish", Sensitivity.NORMAL),
    ],
)
def test_sensitivity_header_rfc2156_values(value: str, expected: Sensitivity) -> None:
    assert parse_mime(eml("From: a@b.example", f"Sensitivity: {value}")).sensitivity is expected


def test_x_unsent_marks_a_draft() -> None:
    assert parse_mime(eml("X-Unsent: 1")).is_draft
    assert not parse_mime(eml("X-Unsent: 0")).is_draft


def test_sender_header_wins_over_from_as_exchange_sender_does() -> None:
    # "On behalf of" mail: NAV reads Exchange's Sender property (BC: Graph `sender`).
    on_behalf = parse_mime(eml("From: boss@us.example", "Sender: assistant@us.example"))
    assert on_behalf.sender is not None and on_behalf.sender.key == "assistant@us.example"
    plain = parse_mime(eml("From: boss@us.example"))
    assert plain.sender is not None and plain.sender.key == "boss@us.example"


def test_received_at_parameter_wins_over_headers() -> None:
    when = datetime(2020, 1, 1, tzinfo=UTC)
    raw = eml("Received: from a by b; Tue, 02 Jan 2024 10:00:00 +0000")
    assert parse_mime(raw, received_at=when).received_at == when


def test_received_at_comes_from_the_topmost_received_header() -> None:
    raw = eml(
        "Received: from a by b; Tue, 02 Jan 2024 10:00:00 +0000",
        "Received: from c by a; Tue, 02 Jan 2024 09:00:00 +0000",
    )
    assert parse_mime(raw).received_at == datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


def test_date_without_zone_is_utc_and_garbage_is_none() -> None:
    assert parse_mime(eml("Date: 1 Jan 2024 10:00:00 -0000")).sent_at == datetime(
        2024, 1, 1, 10, tzinfo=UTC
    )
    assert parse_mime(eml("Date: yesterday-ish")).sent_at is None


def test_message_without_message_id_dedupes_on_content_hash() -> None:
    m = parse_mime(eml("From: a@b.example"))
    assert m.message_id is None
    assert m.dedupe_key == f"sha256:{m.content_hash}"


def test_content_hash_is_the_one_the_ews_source_computes() -> None:
    # explain and the service must key a message without Message-ID alike: the hash covers
    # the identifying properties, not transport headers that differ between copies.
    one = parse_mime(eml("From: A@B.example", "To: c@d.example", "Subject: Hi", "X-Copy: 1"))
    two = parse_mime(eml("From: a@b.example", "To: C@D.example", "Subject: Hi", "X-Copy: 2"))
    assert one.content_hash == two.content_hash
    assert one.content_hash == content_hash("Hi", one.sender, one.to, one.cc, one.sent_at)
    assert parse_mime(eml("From: a@b.example", "Subject: Other")).content_hash != (one.content_hash)


def test_absurdly_long_message_id_gets_an_indexable_dedupe_key() -> None:
    m = parse_mime(eml("Message-ID: <" + "x" * 5000 + "@b>"))
    assert m.dedupe_key.startswith("mid-sha256:") and len(m.dedupe_key) < 100


def test_group_syntax_undisclosed_recipients_has_no_addresses() -> None:
    m = parse_mime(eml("From: a@b.example", "To: undisclosed-recipients:;"))
    assert m.to == ()


def test_group_with_members_is_flattened() -> None:
    m = parse_mime(eml("To: Team: ann@them.example, bob@them.example;"))
    assert [a.email for a in m.to] == ["ann@them.example", "bob@them.example"]


def test_broken_encoded_word_display_name_still_yields_the_address() -> None:
    m = parse_mime(
        eml("From: =?utf-8?q?broken <a@b.example>", "To: =?x-unknown?b?!!!?= <c@d.example>")
    )
    assert m.sender is not None and m.sender.email == "a@b.example"
    assert [a.email for a in m.to] == ["c@d.example"]


def test_raw_utf8_and_invalid_bytes_in_headers() -> None:
    raw = b"From: J\xc3\xbcrgen <j@x.example>\r\nSubject: caf\xc3\xa9 \xff\xfe\r\n\r\n"
    m = parse_mime(raw)
    assert m.sender is not None and m.sender.name == "Jürgen"
    assert m.subject.startswith("café")
    m.subject.encode("utf-8")  # no lone surrogates left: PostgreSQL and JSON can take it


def test_nul_bytes_are_removed_from_text() -> None:
    m = parse_mime(b"Subject: a\x00b\r\nFrom: x\x00@y.example\r\n\r\n")
    assert "\x00" not in m.subject
    assert m.sender is not None and "\x00" not in m.sender.email


def test_address_without_at_is_a_name_not_an_address() -> None:
    # Changed by issue 16 (it pinned the text as the address): a display name alone is no
    # address; the name is kept, the address is empty, so the rules see no recipient.
    m = parse_mime(eml("From: a@b.example", "To: just-a-name"))
    assert [(a.email, a.name) for a in m.to] == [("", "just-a-name")]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 1000,
        b"\xff\xfe\xfd",
        b"no colon at all\r\n\r\n",
        b"\r\n\r\nbody only",
        b"From: " + b"(" * 100_000 + b"a@b\r\n\r\n",  # nests deeper than the recursion limit
        b"To: " + b'"' * 200_000 + b"\r\n\r\n",
        b"To: " + b"\\" * 200_000 + b"\r\n\r\n",
        b"Subject: " + b"=?utf-8?q?abc?= " * 60_000 + b"\r\n\r\n",
        b"Subject: " + b"y " * 500_000 + b"\r\n\r\n",  # a 1 MB header line
        b"Date: Mon, 1 Jan 99999 10:00:00 +9999\r\nReceived: ;;;\r\n\r\n",
    ],
)
def test_hostile_input_still_gives_a_mail(raw: bytes) -> None:
    m = parse_mime(raw)
    assert len(m.content_hash) == 64 and m.dedupe_key


def test_ten_thousand_recipients() -> None:
    to = ", ".join(f"User {i} <u{i}@them.example>" for i in range(10_000))
    m = parse_mime(eml("From: a@b.example", f"To: {to}"))
    assert len(m.to) == 10_000
    assert m.to[-1].email == "u9999@them.example"


def test_subject_of_a_1mb_header_is_cut_but_starts_right() -> None:
    m = parse_mime(eml("Subject: Hello " + "w" * 1_000_000))
    assert m.subject.startswith("Hello")
