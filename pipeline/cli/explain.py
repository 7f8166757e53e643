"""`emaillog explain MESSAGE.eml...`: which rule fires for each message, and what it writes.

Uses the same directory (from the database), policy (EMAILLOG_INCLUDE_CC,
EMAILLOG_NEVER_LOG), rules and claim plan (`pipeline.claims`, rule 3) as the service, so it
says what the service would say about the same files arriving in the given order:
`duplicate` when the message's dedupe key (Message-ID, else content hash) is already in the
journal for EMAILLOG_EWS_MAILBOX (in any mailbox when that is not set), or when an earlier
file of the same run would be logged with that key. Each entry shows every field the
service writes, the template's (EMAILLOG_EMAIL_TEMPLATE_CODE) included; when that template
is missing and some entry needs it, a warning (stderr) says the service would take no mail
until it is imported, and the entries' cost and duration are null. Nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pipeline import claims
from pipeline.cli.common import Subparsers, configure_command_logging, error
from pipeline.config import Settings
from pipeline.directory import Directory, Template
from pipeline.mailparse import parse_mime
from pipeline.model import Candidate, Decision, Entry, Existing, Mail
from pipeline.rules import Policy, decide
from pipeline.setup_check import setup_problems
from pipeline.store.db import open_database
from pipeline.store.directory_repo import load_directory
from pipeline.store.queries import is_logged


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="say which rule fires for messages (.eml files) and the entries they would get",
        description="Decide each message against the current directory and settings, "
        "without writing anything, in the order given (a later copy of a message an earlier "
        "file logs is a duplicate, as in the service). An unreadable file is reported and "
        "the others are still explained (exit code 1).",
    )
    parser.add_argument("messages", nargs="+", type=Path, metavar="MESSAGE.eml")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per message and line: file, outcome, rule, direction, entries "
        "(each with every field the service writes)",
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
    directory, decisions = asyncio.run(_decide(settings, mails))
    code = settings.rules.email_template_code
    if any(d.entries for d in decisions):  # their template fields would be unknown
        for problem in setup_problems(directory, code):
            print(f"emaillog: warning: {problem}", file=sys.stderr)
    template = directory.template(code)
    for (path, _), decision in zip(mails, decisions, strict=True):
        if args.json:
            print(json.dumps({"file": str(path), **decision_json(decision, template, code)}))
        else:
            print(_text(path, decision, template, code))
    sys.stdout.flush()
    return status


async def _decide(
    settings: Settings, mails: list[tuple[Path, Mail]]
) -> tuple[Directory, list[Decision]]:
    """The service's decisions for `mails` arriving in this order (nothing written)."""
    policy = Policy.from_settings(settings.rules)
    async with open_database(settings.database) as db, db.pool.acquire() as conn:
        directory = await load_directory(conn)
        logged = await is_logged(
            conn, settings.source.ews.mailbox, [m.dedupe_key for _, m in mails]
        )
    # The dedupe stage's own plan: a key already claimed is a duplicate, and so is a later
    # copy of a message logged earlier in this run (the service's order of arrival).
    candidates = [
        Candidate(f"explain:{i}", mail, decide(mail, directory, policy))
        for i, (_, mail) in enumerate(mails)
    ]
    existing = {key: Existing(0, "stored", None) for key in logged}
    steps = claims.plan(candidates, {}, existing)
    return directory, [step.decision for step in steps]


def decision_json(
    decision: Decision, template: Template | None, template_code: str
) -> dict[str, Any]:
    """The JSON shape of a decision (also useful to the HTTP API later)."""
    return {
        "outcome": decision.outcome.value,
        "rule": decision.rule,
        "direction": decision.direction.value if decision.direction else None,
        "entries": [_entry_json(e, template, template_code) for e in decision.entries],
    }


def _entry_json(entry: Entry, template: Template | None, template_code: str) -> dict[str, Any]:
    """Every column the service writes to interaction_log_entry (bar the numbers it draws).
    Cost and duration are null when the template is missing (the service would wait)."""
    return {
        "contact_no": entry.contact_no,
        "contact_company_no": entry.contact_company_no,
        "contact_alt_address_code": entry.contact_alt_address_code,
        "salesperson_code": entry.salesperson_code,
        "information_flow": entry.information_flow.value,
        "initiated_by": entry.initiated_by.value,
        "interaction_at": entry.interaction_at.isoformat() if entry.interaction_at else None,
        "description": entry.description,
        "subject": entry.description,
        "interaction_template_code": template_code,
        "interaction_group_code": template.group_code if template else None,
        "cost_lcy": float(template.unit_cost) if template else None,
        "duration_min": float(template.unit_duration_min) if template else None,
        "correspondence_type": "email",
        "email_logged": True,
    }


def _text(path: Path, decision: Decision, template: Template | None, code: str) -> str:
    direction = f" ({decision.direction.value})" if decision.direction else ""
    lines = [f"{path}: {decision.outcome.value}{direction}", f"  {decision.rule}"]
    if template is not None:
        what = (
            f"template {code} (group {template.group_code or '-'}, cost {template.unit_cost}, "
            f"{template.unit_duration_min} min)"
        )
    else:
        what = f"template {code} (MISSING: the service takes no mail)"
    for e in decision.entries:
        alt = f", alt. address {e.contact_alt_address_code}" if e.contact_alt_address_code else ""
        company = f", company {e.contact_company_no}" if e.contact_company_no else ""
        when = e.interaction_at.isoformat() if e.interaction_at else "no date"
        lines.append(
            f"  entry: contact {e.contact_no}{company}{alt} / salesperson {e.salesperson_code}"
            f" / {e.information_flow.value}, initiated by {e.initiated_by.value}"
            f" / {when} / {json.dumps(e.description)} / {what}"
        )
    return "\n".join(lines)
