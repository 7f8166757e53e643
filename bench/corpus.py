"""Deterministic test data: a directory (as the product's CSV files) and realistic MIME.

    people = Directory(seed)                     1,000 salespersons, 50,000 contacts (+ alt.)
    people.write_csv(folder)                     the four files `emaillog directory import` reads
    messages = generate(people, n, seed)         n `BenchMessage`s with their expected outcome

The outcome mix follows what a queue sees in real traffic (see `MIX`). A "duplicate" is a
second copy of an earlier *logged* message (same Message-ID), as a transport rule produces
when one message crosses the boundary twice. Every message's outcome is known here, so the
benchmark can check that each one was accounted for with the right outcome.
"""

from __future__ import annotations

import base64
import csv
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

OUR_DOMAIN = "ourco.example"
#: Parties on these are "excluded" (EMAILLOG_NEVER_LOG): a law firm and the payroll desk.
NEVER_LOG = ("privileged-counsel.example", f"payroll@{OUR_DOMAIN}")
TEMPLATE_CODE = "EMAIL"

#: Share of each outcome (sums to 1). "logged" covers outbound and inbound.
MIX: dict[str, float] = {
    "logged": 0.60,
    "unregistered": 0.15,
    "duplicate": 0.08,
    "sensitive": 0.06,
    "excluded": 0.06,
    "address_too_long": 0.05,
}

_FIRST_TEXT = (
    "anna james maria peter laura thomas sofia daniel emma lukas julia david sara martin "
    "nina paul clara jonas eva felix lena simon mia oliver hannah noah lea elias ida adam"
)
_FIRST = _FIRST_TEXT.split()
_LAST_TEXT = (
    "smith jansen muller garcia rossi novak kowalski dubois svensson ivanova berg costa "
    "nielsen horvat fischer schmidt weber meyer wagner becker hoffmann koch richter klein "
    "wolf neumann schwarz zimmermann braun kruger"
)
_LAST = _LAST_TEXT.split()
_WORDS_TEXT = (
    "order delivery invoice quote price pallet shipment contract schedule meeting week "
    "please confirm attached revised volume discount payment terms sample warehouse "
    "forecast quarter stock item number request update thanks regards call tomorrow "
    "monday friday project plan budget offer renewal service support spare parts lead "
    "time production capacity approval signed draft final agreed account statement"
)
_WORDS = _WORDS_TEXT.split()
_SUBJECTS = (
    "Quote {n} for {w}",
    "RE: Order {n} - {w}",
    "FW: Invoice {n}",
    "Delivery schedule week {k}",
    "RE: RE: {w} {w2} follow-up",
    "Meeting on {w} next week",
    "Price list {k} update",
    "Ihre Bestellung {n}",
    "Réclamation commande {n}",
)


@dataclass(frozen=True, slots=True)
class Person:
    code: str  # salesperson code or contact no.
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class BenchMessage:
    """One generated queue message and the outcome the rules must give it."""

    raw: bytes
    message_id: str
    expected: str


class Directory:
    """Salespersons, company and person contacts, and alternative addresses (deterministic)."""

    def __init__(
        self, seed: int = 1, salespersons: int = 1_000, contacts: int = 50_000, alt_every: int = 20
    ) -> None:
        rng = random.Random(seed)
        self.salespersons = [
            Person(f"SP{i:04d}", *_name_and_mail(rng, i, OUR_DOMAIN))
            for i in range(1, salespersons + 1)
        ]
        # One company contact per ten; persons belong to the company before them.
        self.companies: list[tuple[str, str, str]] = []  # (no, name, email)
        self.persons: list[tuple[str, str, str, str]] = []  # (no, name, company_no, email)
        company_no, domain = "", ""
        for i in range(1, contacts + 1):
            no = f"CT{i:06d}"
            if (i - 1) % 10 == 0:
                word = rng.choice(_WORDS)
                domain = f"{word}-{i:06d}.example"
                company_no = no
                self.companies.append((no, f"{word.title()} {i} Ltd", f"info@{domain}"))
            else:
                name, email = _name_and_mail(rng, i, domain)
                self.persons.append((no, name, company_no, email))
        # Alternative addresses: a private address of every `alt_every`-th person.
        self.alt_addresses = [
            (no, "PRIVATE", f"{email.split('@')[0]}@homemail.example")
            for no, _, _, email in self.persons[::alt_every]
        ]
        self.contact_addresses = [p[3] for p in self.persons] + [c[2] for c in self.companies]
        self.alt_emails = [a[2] for a in self.alt_addresses]

    def write_csv(self, folder: Path) -> dict[str, Path]:
        """The four directory files, in the product's CSV format (import order: this order)."""
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, tuple[Sequence[str], Sequence[Sequence[str]]]] = {
            "salespersons": (
                ("code", "name", "email"),
                [(p.code, p.name, p.email) for p in self.salespersons],
            ),
            "contacts": (
                ("no", "name", "type", "company_no", "email"),
                [(no, name, "company", "", email) for no, name, email in self.companies]
                + [(no, name, "person", comp, email) for no, name, comp, email in self.persons],
            ),
            "alt_addresses": (("contact_no", "code", "email"), self.alt_addresses),
            "templates": (
                ("code", "description", "group_code", "unit_cost", "unit_duration_min"),
                [(TEMPLATE_CODE, "E-mail", "SALES", "0.50", "5")],
            ),
        }
        paths: dict[str, Path] = {}
        for kind, (header, rows) in files.items():
            path = folder / f"{kind}.csv"
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(rows)
            paths[kind] = path
        return paths


def _name_and_mail(rng: random.Random, i: int, domain: str) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return f"{first.title()} {last.title()}", f"{first}.{last}.{i}@{domain}"


def expected_counts(messages: list[BenchMessage]) -> dict[str, int]:
    return dict(sorted(Counter(m.expected for m in messages).items()))


def generate(people: Directory, n: int, seed: int = 1, tag: str = "bench") -> list[BenchMessage]:
    """`n` messages in delivery order; `tag` keeps Message-IDs of different runs apart."""
    rng = random.Random(seed)
    start = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
    outcomes = list(MIX)
    weights = [MIX[o] for o in outcomes]
    logged: list[BenchMessage] = []
    out: list[BenchMessage] = []
    for i in range(n):
        outcome = rng.choices(outcomes, weights)[0]
        if outcome == "duplicate" and not logged:
            outcome = "logged"
        if outcome == "duplicate":
            original = rng.choice(logged)
            # A second copy through transport: same message, another Received line on top.
            received = (
                f"Received: from edge{rng.randint(1, 4)}.{OUR_DOMAIN} ([10.0.0.{i % 250}])\r\n"
            )
            out.append(BenchMessage(received.encode() + original.raw, original.message_id, outcome))
            continue
        message_id = f"<{tag}.{seed}.{i}.{rng.getrandbits(40):010x}@mail.{OUR_DOMAIN}>"
        sent = start + timedelta(seconds=i * 7 + rng.randint(0, 6))
        sender, to, cc = _parties(rng, people, outcome)
        headers = [
            f"Received: from mail.{OUR_DOMAIN} (10.1.2.3) by ex01.{OUR_DOMAIN} with Microsoft "
            f"SMTP Server id 15.1.2507.39; {format_datetime(sent)}",
            f"Received: from [192.168.{i % 200}.{i % 250}] by mail.{OUR_DOMAIN}; "
            f"{format_datetime(sent - timedelta(seconds=2))}",
            f"From: {sender}",
            f"To: {', '.join(to)}",
            *([f"Cc: {', '.join(cc)}"] if cc else []),
            f"Subject: {_subject(rng)}",
            f"Date: {format_datetime(sent)}",
            f"Message-ID: {message_id}",
            f"Thread-Topic: {rng.choice(_WORDS)} {rng.choice(_WORDS)}",
            f"Thread-Index: {base64.b64encode(rng.randbytes(22)).decode()}",
            "Content-Language: en-US",
            "X-MS-Exchange-Organization-SCL: -1",
            "X-Originating-IP: [10.1.2.3]",
            "MIME-Version: 1.0",
        ]
        if outcome == "sensitive":
            headers.append(
                "Sensitivity: " + rng.choice(("Private", "Personal", "Company-Confidential"))
            )
        if rng.random() < 0.4:
            headers.append(f"In-Reply-To: <prev.{rng.getrandbits(48):012x}@mail.{OUR_DOMAIN}>")
        raw = _with_body(rng, headers)
        message = BenchMessage(raw, message_id, outcome)
        if outcome == "logged":
            logged.append(message)
        out.append(message)
    return out


def _parties(
    rng: random.Random, people: Directory, outcome: str
) -> tuple[str, list[str], list[str]]:
    """(From, To, Cc) as header values, so that the rules give `outcome`."""

    def sp() -> str:
        p = rng.choice(people.salespersons)
        return f'"{p.name}" <{p.email}>'

    def contact() -> str:
        if rng.random() < 0.1:
            return rng.choice(people.alt_emails)
        return rng.choice(people.contact_addresses)

    def stranger() -> str:
        return f"{rng.choice(_FIRST)}.{rng.getrandbits(24):06x}@{rng.choice(_WORDS)}-mail.example"

    if outcome == "logged":
        if rng.random() < 0.58:  # outbound: a salesperson writes to 1-4 contacts
            to = [contact() for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4)))]
            cc = [sp()] if rng.random() < 0.2 else []
            return sp(), to, cc
        to = [sp() for _ in range(rng.choice((1, 1, 1, 2)))]  # inbound: a contact writes to us
        if rng.random() < 0.2:
            to.append(stranger())
        return contact(), to, []
    if outcome == "unregistered":
        kind = rng.random()
        if kind < 0.4:
            return sp(), [stranger()], []
        if kind < 0.8:
            return stranger(), [sp()], []
        return f"newsletter@{rng.choice(_WORDS)}-news.example", [sp(), sp()], []
    if outcome == "sensitive":
        return sp(), [contact()], []
    if outcome == "excluded":
        listed = rng.choice((f"partner{rng.randint(1, 9)}@{NEVER_LOG[0]}", NEVER_LOG[1]))
        return sp(), [contact()], [listed]
    if outcome == "address_too_long":
        local = ".".join(rng.choice(_WORDS) for _ in range(12))[:85]
        return f"{local}@{rng.choice(_WORDS)}-portal.example", [sp()], []
    raise ValueError(outcome)


def _subject(rng: random.Random) -> str:
    template = rng.choice(_SUBJECTS)
    w, w2 = rng.choice(_WORDS), rng.choice(_WORDS)
    text = template.format(n=rng.randint(10000, 99999), k=rng.randint(1, 52), w=w, w2=w2)
    if not text.isascii():
        return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="
    return text


def _paragraphs(rng: random.Random, size: int) -> list[str]:
    parts: list[str] = []
    total = 0
    while total < size:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 18)))
        para = (sentence.capitalize() + ". ") * rng.randint(1, 4)
        parts.append(para.strip())
        total += len(para) + 2
    return parts


def _with_body(rng: random.Random, headers: list[str]) -> bytes:
    """Headers + a text part, often an HTML alternative, sometimes a small attachment;
    the whole message lands between about 2 and 20 KB (log-uniform)."""
    target = int(2048 * 10 ** rng.uniform(0, 1))
    head_size = sum(len(h) + 2 for h in headers)
    with_html = rng.random() < 0.5
    attachment = rng.randbytes(rng.randint(600, 3000)) if rng.random() < 0.2 else b""
    budget = max(900, target - head_size - len(attachment) * 4 // 3 - 250)
    text_size = budget // 3 if with_html else budget
    paragraphs = _paragraphs(rng, text_size)
    text = "\r\n\r\n".join(paragraphs) + "\r\n\r\nBest regards\r\n"
    lines = list(headers)
    if not with_html and not attachment:
        lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        return ("\r\n".join(lines) + "\r\n\r\n" + text).encode()
    alt = f"_alt_{rng.getrandbits(64):016x}_"
    html = "<html><body>" + "".join(f"<p>{p}</p>\r\n" for p in paragraphs) + "</body></html>"
    body_parts = [f"--{alt}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"]
    if with_html:
        body_parts.append(f"--{alt}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n")
    alternative = "".join(body_parts) + f"--{alt}--\r\n"
    if not attachment:
        lines.append(f'Content-Type: multipart/alternative; boundary="{alt}"')
        return ("\r\n".join(lines) + "\r\n\r\n" + alternative).encode()
    mixed = f"_mix_{rng.getrandbits(64):016x}_"
    encoded = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    name = f"{rng.choice(_WORDS)}-{rng.randint(100, 999)}.pdf"
    lines.append(f'Content-Type: multipart/mixed; boundary="{mixed}"')
    body = (
        f'--{mixed}\r\nContent-Type: multipart/alternative; boundary="{alt}"\r\n\r\n{alternative}'
        f'--{mixed}\r\nContent-Type: application/pdf; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--{mixed}--\r\n"
    )
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
