"""The demo's world: one queue mailbox, a small directory and a mix of sample messages.

Everything `emaillog demo` shows is defined here, and so is what it should show: every
sample names the outcome it must get and how many interaction log entries it writes, so
`expected_counts()` (and the tests) follow from the data instead of repeating numbers.

The directory goes into the database through the product's own CSV import
(`write_directory_csv` + `directory_repo.import_csv`). It is Python rather than package
data files so that it ships in every kind of install.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from decimal import Decimal
from pathlib import Path

from pipeline.directory import AltAddress, Contact, Salesperson, Template
from pipeline.model import Outcome
from pipeline.store.directory_repo import EXPORT_FILES, HEADERS, Kind

MAILBOX = "logging@demo.example"
QUEUE_FOLDER = "Email Logging/Queue"
STORAGE_FOLDER = "Email Logging/Storage"
#: Our law firm: whatever we write to them is never logged (EMAILLOG_NEVER_LOG).
NEVER_LOG = ("woodlegal.example",)
TEMPLATE_CODE = "EMAIL"

SALESPERSONS = (
    Salesperson("AH", "Annette Hill", "annette.hill@contoso.example"),
    Salesperson("BD", "Bart Duncan", "bart.duncan@contoso.example"),
    Salesperson("PS", "Priya Shah", "priya.shah@contoso.example"),
)
CONTACTS = (
    Contact("CT100", "Fabrikam Ltd", "company", "CT100", "info@fabrikam.example"),
    Contact("CT101", "Lisa Taylor", "person", "CT100", "lisa.taylor@fabrikam.example"),
    Contact("CT102", "Tom Berg", "person", "CT100", "tom.berg@fabrikam.example"),
    Contact("CT200", "Adatum Corp", "company", "CT200", "sales@adatum.example"),
    Contact("CT201", "Raj Patel", "person", "CT200", "raj.patel@adatum.example"),
    Contact("CT300", "Wood & Partners (legal)", "company", "CT300", "j.wood@woodlegal.example"),
)
ALT_ADDRESSES = (AltAddress("CT201", "HOME", "raj@patel-family.example"),)
TEMPLATES = (Template(TEMPLATE_CODE, "E-mail", "SALES", Decimal("0.50"), Decimal("3")),)

_ROWS: dict[Kind, Sequence[Salesperson | Contact | AltAddress | Template]] = {
    "salespersons": SALESPERSONS,
    "contacts": CONTACTS,
    "alt_addresses": ALT_ADDRESSES,
    "templates": TEMPLATES,
}


def write_directory_csv(folder: Path) -> dict[Kind, Path]:
    """Write the demo directory as the four CSV files `emaillog directory import` reads.

    The dataclass fields are in the CSV headers' order (directory_repo.HEADERS)."""
    paths: dict[Kind, Path] = {}
    for kind, rows in _ROWS.items():
        path = folder / EXPORT_FILES[kind]
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(HEADERS[kind])
            writer.writerows(astuple(row) for row in rows)
        paths[kind] = path
    return paths


@dataclass(frozen=True, slots=True)
class Sample:
    """One queue message of the demo and what must become of it."""

    label: str  # what it demonstrates (shown in the demo's output)
    expect: Outcome
    raw: bytes
    streaming: bool  # True: delivered while the service runs; False: waiting before it starts
    draft: bool = False  # saved into the queue folder by a user (CreateItem), not delivered
    entries: int = 0  # interaction log entries it writes (logged samples only)


def _message(
    subject: str,
    sender: str,
    to: Sequence[str] = (),
    *,
    message_id: str,
    cc: Sequence[str] = (),
    extra: Sequence[str] = (),
    date: str = "Mon, 3 Mar 2025 09:30:00 +0100",
) -> bytes:
    lines = [f"From: {sender}"]
    if to:
        lines.append(f"To: {', '.join(to)}")
    if cc:
        lines.append(f"Cc: {', '.join(cc)}")
    lines += [
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        *extra,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Hello,",
        "",
        "please find the details below.",
        "",
        "Kind regards",
    ]
    return "\r\n".join(lines).encode("utf-8")


ANNETTE = "Annette Hill <annette.hill@contoso.example>"
BART = "Bart Duncan <bart.duncan@contoso.example>"
PRIYA = "Priya Shah <priya.shah@contoso.example>"
LISA = "Lisa Taylor <lisa.taylor@fabrikam.example>"
TOM = "Tom Berg <tom.berg@fabrikam.example>"
RAJ = "Raj Patel <raj.patel@adatum.example>"
RAJ_HOME = "Raj Patel <raj@patel-family.example>"
ADATUM_SALES = "Adatum Sales <sales@adatum.example>"
LAWYER = "Jane Wood <j.wood@woodlegal.example>"
#: An 82-character address: longer than NAV's 80-character Search E-Mail, so it can never match.
LONG_SENDER = (
    "Shipment Notifications <shipment-status-notifications-for-customer-account-0042"
    "@logistics-provider.example>"
)

_QUOTE = _message(
    "Quote Q-1042: 40 office chairs",
    ANNETTE,
    [LISA],
    message_id="<q1042.annette@contoso.example>",
)

SAMPLES: tuple[Sample, ...] = (
    # --- waiting in the queue before the service starts (catch-up) ---
    Sample("outbound to a contact", Outcome.LOGGED, _QUOTE, streaming=False, entries=1),
    Sample(
        "inbound from a contact",
        Outcome.LOGGED,
        _message(
            "RE: Delivery schedule for March",
            RAJ,
            [BART],
            message_id="<delivery-march.raj@adatum.example>",
        ),
        streaming=False,
        entries=1,
    ),
    Sample(
        "Sensitivity: Private",
        Outcome.SENSITIVE,
        _message(
            "Dinner on Friday?",
            LISA,
            [ANNETTE],
            message_id="<dinner.lisa@fabrikam.example>",
            extra=["Sensitivity: Private"],
        ),
        streaming=False,
    ),
    Sample(
        "inbound from an unknown sender",
        Outcome.UNREGISTERED,
        _message(
            "Your ticket for SalesCon 2025",
            "SalesCon <events@salescon.example>",
            [ANNETTE],
            message_id="<ticket-7781@salescon.example>",
        ),
        streaming=False,
    ),
    Sample(
        "a draft saved in the queue folder",
        Outcome.DRAFT,
        _message(
            "Follow-up on the chairs",
            ANNETTE,
            [TOM],
            message_id="<draft-follow-up.annette@contoso.example>",
            extra=["X-Unsent: 1"],
        ),
        streaming=False,
        draft=True,
    ),
    # --- delivered while the service runs (streaming notifications) ---
    Sample(
        "inbound from a contact's alternative address",
        Outcome.LOGGED,
        _message(
            "Question about invoice 2025-118",
            RAJ_HOME,
            [PRIYA],
            message_id="<invoice-118.raj@patel-family.example>",
        ),
        streaming=True,
        entries=1,
    ),
    Sample(
        "outbound to three contacts (two companies)",
        Outcome.LOGGED,
        _message(
            "Kick-off meeting agenda",
            BART,
            [LISA, TOM, RAJ],
            message_id="<kickoff.bart@contoso.example>",
        ),
        streaming=True,
        entries=3,
    ),
    Sample(
        "Sensitivity: Company-Confidential",
        Outcome.SENSITIVE,
        _message(
            "Pricing strategy 2025",
            ANNETTE,
            [RAJ],
            message_id="<pricing-2025.annette@contoso.example>",
            extra=["Sensitivity: Company-Confidential"],
        ),
        streaming=True,
    ),
    Sample(
        "to our law firm (never-log domain)",
        Outcome.EXCLUDED,
        _message(
            "Contract review Fabrikam",
            BART,
            [LAWYER],
            message_id="<contract-review.bart@contoso.example>",
        ),
        streaming=True,
    ),
    Sample(
        "sender address over 80 characters",
        Outcome.ADDRESS_TOO_LONG,
        _message(
            "Shipment 0042-17 is on its way",
            LONG_SENDER,
            [BART],
            message_id="<shipment-0042-17@logistics-provider.example>",
        ),
        streaming=True,
    ),
    Sample(
        "no To: line (Bcc only)",
        Outcome.NO_PARTIES,
        _message(
            "Notes to self",
            ANNETTE,
            [],
            message_id="<notes.annette@contoso.example>",
        ),
        streaming=True,
    ),
    Sample(
        "the quote again (same Message-ID)",
        Outcome.DUPLICATE,
        _QUOTE,
        streaming=True,
    ),
    Sample(
        "outbound to an unknown prospect",
        Outcome.UNREGISTERED,
        _message(
            "Introduction: Contoso office furniture",
            ANNETTE,
            ["new.prospect@unknown-startup.example"],
            message_id="<intro.annette@contoso.example>",
        ),
        streaming=True,
    ),
    Sample(
        "purchase order to a company contact",
        Outcome.LOGGED,
        _message(
            "Purchase order PO-7781",
            PRIYA,
            [ADATUM_SALES],
            message_id="<po-7781.priya@contoso.example>",
        ),
        streaming=True,
        entries=1,
    ),
)


def expected_counts(samples: Sequence[Sample] = SAMPLES) -> dict[str, int]:
    """Per-outcome counts the samples must produce, every outcome present (zeros too)."""
    counted = Counter(sample.expect for sample in samples)
    return {outcome.value: counted[outcome] for outcome in Outcome}


def expected_entries(samples: Sequence[Sample] = SAMPLES) -> int:
    return sum(sample.entries for sample in samples)
