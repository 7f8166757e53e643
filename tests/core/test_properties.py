"""Property tests: address normalisation, and totality of parse_mime and decide."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.directory import Directory, Salesperson
from pipeline.mailparse import parse_mime
from pipeline.model import MAX_ADDRESS_CHARS, Address, Mail, Outcome, Sensitivity, address_key
from pipeline.rules import Policy, decide, mark_duplicate
from tests.core.builders import ALT_ADDRESSES, CONTACTS, SALESPERSONS, directory

ASCII_ADDRESS_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "@._-+ ", max_size=100)
KNOWN = (
    [p.email for p in SALESPERSONS] + [c.email for c in CONTACTS] + [a.email for a in ALT_ADDRESSES]
)


@st.composite
def any_address_text(draw: st.DrawFn) -> str:
    """Known directory addresses in any case and padding, valid addresses, and junk."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        known = draw(st.sampled_from(KNOWN))
        flipped = "".join(c.upper() if draw(st.booleans()) else c for c in known)
        return " " * draw(st.integers(0, 2)) + flipped
    if choice == 1:
        return draw(st.emails())
    if choice == 2:
        return "x" * draw(st.integers(75, 90)) + "@them.example"
    return draw(st.text(max_size=40))


addresses = st.builds(Address, email=any_address_text(), name=st.text(max_size=10))
mails = st.builds(
    Mail,
    message_id=st.none() | st.text(max_size=30),
    content_hash=st.just("0" * 64),
    subject=st.text(max_size=150),
    sender=st.none() | addresses,
    to=st.lists(addresses, max_size=6).map(tuple),
    cc=st.lists(addresses, max_size=4).map(tuple),
    sensitivity=st.sampled_from(Sensitivity),
    is_draft=st.booleans(),
    sent_at=st.none() | st.datetimes(),
    received_at=st.none() | st.datetimes(),
)
policies = st.builds(
    Policy.build,
    include_cc=st.booleans(),
    never_log=st.lists(
        st.sampled_from(["them.example", "@us.example", "ann@them.example", "x.org"]), max_size=2
    ).map(tuple),
)


@given(ASCII_ADDRESS_TEXT)
def test_address_key_ignores_case_and_padding(text: str) -> None:
    assert address_key(text.upper()) == address_key(f"  {text.lower()} ")
    assert address_key(address_key(text)) == address_key(text)


@given(st.emails(), st.booleans())
def test_directory_finds_an_address_in_any_case_when_not_too_long(email: str, upper: bool) -> None:
    d = Directory.build([Salesperson("SP", "", email)])
    found = d.salesperson_for(email.upper() if upper else email)
    if len(address_key(email)) <= MAX_ADDRESS_CHARS and email.upper().lower() == email.lower():
        assert found is not None
    elif len(address_key(email)) > MAX_ADDRESS_CHARS:
        assert found is None


@settings(max_examples=300)
@given(mails, policies, st.booleans())
def test_decide_never_raises_and_its_decisions_are_consistent(
    mail: Mail, policy: Policy, already_logged: bool
) -> None:
    d = decide(mail, directory(), policy, already_logged=already_logged)
    assert d.outcome in set(Outcome) - {Outcome.FAILED}
    assert bool(d.entries) == (d.outcome is Outcome.LOGGED)
    assert (d.direction is not None) == (d.outcome is Outcome.LOGGED)
    keys = [(e.contact_no, e.salesperson_code) for e in d.entries]
    assert len(keys) == len(set(keys))  # the database's unique key can never be violated
    assert all(len(e.description) <= 100 for e in d.entries)
    if d.outcome is not Outcome.LOGGED:
        assert "@" not in d.rule
    assert mark_duplicate(d).outcome in (d.outcome, Outcome.DUPLICATE)


@settings(max_examples=300)
@given(st.binary(max_size=2_000))
def test_parse_mime_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    m = parse_mime(raw)
    decide(m, directory(), Policy())


header_names = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Date", "Message-ID", "Sensitivity", "Received", "X-Unsent"]
)
header_values = st.text(max_size=80) | st.sampled_from(
    [
        "=?utf-8?q?x?=",
        "=?bad",
        "undisclosed-recipients:;",
        "<a@b>",
        "(((",
        '"',
        "a@b, c@d",
        "Private",
    ]
)


@settings(max_examples=300)
@given(st.lists(st.tuples(header_names, header_values), max_size=12), st.text(max_size=50))
def test_parse_mime_never_raises_on_header_shaped_input(
    headers: list[tuple[str, str]], body: str
) -> None:
    raw = "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n" + body
    m = parse_mime(raw.encode("utf-8", "surrogatepass"))
    for text in (m.subject, *(a.email for a in (*m.to, *m.cc))):
        text.encode("utf-8")  # always storable
    decide(m, directory(), Policy(include_cc=True))
