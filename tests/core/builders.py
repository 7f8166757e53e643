"""Small builders for readable rule tests: one directory, one way to write a Mail."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pipeline.directory import AltAddress, Contact, Directory, Salesperson, Template
from pipeline.model import Address, Mail, Sensitivity

SENT = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
RECEIVED = datetime(2024, 3, 1, 9, 5, tzinfo=UTC)

#: Our people, their contacts. Keys are chosen so each matching rule has its own case.
SALESPERSONS = (
    Salesperson("SP1", "Sam", "sam@us.example"),
    Salesperson("SP2", "Sue", "Sue@Us.Example"),
    # A shared mailbox two salespersons list: the lowest code (text order) wins.
    Salesperson("SP9", "Team B", "team@us.example"),
    Salesperson("SP10", "Team A", "team@us.example"),
    # An address that is a salesperson and a contact (e.g. an employee who is also a customer).
    Salesperson("SPX", "Xavier", "both@example.org"),
)
CONTACTS = (
    Contact("C000", "Them Ltd", "company", "", "info@them.example"),
    Contact("C001", "Ann", "person", "C000", "ann@them.example"),
    Contact("C002", "Bob", "person", "C000", "bob@them.example"),
    # Two contacts sharing an address: the lowest No. in text order ("C10" < "C9") wins.
    Contact("C9", "Shared Nine", "person", "", "shared@them.example"),
    Contact("C10", "Shared Ten", "person", "", "shared@them.example"),
    Contact("CX", "Xavier as contact", "person", "", "both@example.org"),
    # Own address of C003 is also an alt. address of C001: the own address wins.
    Contact("C003", "Carl", "person", "C000", "carl@them.example"),
)
ALT_ADDRESSES = (
    AltAddress("C001", "HOME", "ann@home.example"),
    AltAddress("C001", "OLD", "carl@them.example"),
)
TEMPLATES = (Template("EMAIL", "E-mail", "SALES", Decimal("1.50"), Decimal(2)),)


def directory() -> Directory:
    return Directory.build(SALESPERSONS, CONTACTS, ALT_ADDRESSES, TEMPLATES)


def addr(text: str, name: str = "") -> Address:
    return Address(email=text, name=name)


def mail(
    sender: str | None = "sam@us.example",
    to: tuple[str, ...] = ("ann@them.example",),
    cc: tuple[str, ...] = (),
    *,
    subject: str = "Quote 42",
    sensitivity: Sensitivity = Sensitivity.NORMAL,
    is_draft: bool = False,
    sent_at: datetime | None = SENT,
    received_at: datetime | None = RECEIVED,
    message_id: str | None = "<m1@us.example>",
) -> Mail:
    return Mail(
        message_id=message_id,
        content_hash="0" * 64,
        subject=subject,
        sender=None if sender is None else addr(sender),
        to=tuple(addr(a) for a in to),
        cc=tuple(addr(a) for a in cc),
        sensitivity=sensitivity,
        is_draft=is_draft,
        sent_at=sent_at,
        received_at=received_at,
    )
