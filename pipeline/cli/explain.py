"""`emaillog explain MESSAGE.eml...`: which rule fires for each message, and what it writes.

Uses the same directory (from the database), policy (EMAILLOG_INCLUDE_CC,
EMAILLOG_NEVER_LOG) and rules as the service. `duplicate` is reported when the message's
dedupe key (Message-ID, else content hash) is already in the journal for EMAILLOG_EWS_MAILBOX,
or in any mailbox when that is not set. Nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.common import Subparsers, configure_command_logging, error
from pipeline.config import Settings
from pipeline.mailparse import parse_mime
from pipeline.model import Decision, Entry, Mail
from pipeline.rules import Policy, decide
from pipeline.store.db import open_database
from pipeline.store.directory_repo import load_directory
from pipeline.store.queries import is_logged


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="say which rule fires for messages (.eml files) and the entries they would get",
        description="Decide each message against the current directory and settings, "
        "without writing anything. An unreadable file is reported and the others are "
        "still explained (exit code 1).",
    )
    parser.add_argument("messages", nargs="+", type=Path, metavar="MESSAGE.eml")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per message and line: file, outcome, rule, direction, entries",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    configure_command_logging(settings)
    mails: list[tuple[Path, Mail]] = []
    status = 0
    for path in args.messages:
        try:
            mails.append((path, parse_mime(path.read_bytes())))
        except OSError as exc:
            error(f"{path}: cannot read: {exc.strerror or exc}")
            status = 1
    for path, decision in asyncio.run(_decide(settings, mails)):
        print(_json(path, decision) if args.json else _text(path, decision), flush=False)
    sys.stdout.flush()
    return status


async def _decide(
    settings: Settings, mails: list[tuple[Path, Mail]]
) -> list[tuple[Path, Decision]]:
    policy = Policy.from_settings(settings.rules)
    async with open_database(settings.database) as db, db.pool.acquire() as conn:
        directory = await load_directory(conn)
        logged = await is_logged(
            conn, settings.source.ews.mailbox, [m.dedupe_key for _, m in mails]
        )
    return [
        (path, decide(mail, directory, policy, already_logged=mail.dedupe_key in logged))
        for path, mail in mails
    ]


def decision_json(decision: Decision) -> dict[str, Any]:
    """The JSON shape of a decision (also useful to the HTTP API later)."""
    return {
        "outcome": decision.outcome.value,
        "rule": decision.rule,
        "direction": decision.direction.value if decision.direction else None,
        "entries": [_entry_json(e) for e in decision.entries],
    }


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "contact_no": entry.contact_no,
        "contact_company_no": entry.contact_company_no,
        "contact_alt_address_code": entry.contact_alt_address_code,
        "salesperson_code": entry.salesperson_code,
        "information_flow": entry.information_flow.value,
        "initiated_by": entry.initiated_by.value,
        "description": entry.description,
    }


def _json(path: Path, decision: Decision) -> str:
    return json.dumps({"file": str(path), **decision_json(decision)})


def _text(path: Path, decision: Decision) -> str:
    direction = f" ({decision.direction.value})" if decision.direction else ""
    lines = [f"{path}: {decision.outcome.value}{direction}", f"  {decision.rule}"]
    for e in decision.entries:
        alt = f", alt. address {e.contact_alt_address_code}" if e.contact_alt_address_code else ""
        company = f", company {e.contact_company_no}" if e.contact_company_no else ""
        when = e.interaction_at.isoformat() if e.interaction_at else "no date"
        lines.append(
            f"  entry: contact {e.contact_no}{company}{alt} / salesperson {e.salesperson_code}"
            f" / {e.information_flow.value}, initiated by {e.initiated_by.value}"
            f" / {when} / {json.dumps(e.description)}"
        )
    return "\n".join(lines)
