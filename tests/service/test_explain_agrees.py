"""Issue 16, point 3: `emaillog explain` and the service agree, outcome by outcome.

One mixed folder of .eml files (hand-written cases for every rule, copies of logged and
unlogged messages with and without a Message-ID, then the whole shared corpus) goes through
`emaillog explain --json` (the console script, as an operator runs it) and through the
service (memory source, files delivered in the same order). For every file the outcome, the
rule text and every field of every entry must be the same.

NAV deletes a second copy of a logged message without new entries (codeunit 5064
`ProcessSimilarMessages`; BC's Graph app `IsMessageAlreadyLogged` on the Message-ID): so
does the service (rule 3, `claims.plan`), and explain says `duplicate` for it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from pipeline.mailparse import parse_mime
from pipeline.sources.memory import MemorySource
from tests.conftest import CORPUS
from tests.service.harness import BOSS, BUYER, MAILBOX, OTHER, OTHER_HOME, SALES, STRANGER
from tests.service.test_flow import memory_settings, running

#: When the service's queue received a file that names no time itself.
ARRIVAL = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
NEVER_LOG = "blocked.test"


def eml(
    sender: str,
    to: str | None,
    *,
    message_id: str | None,
    subject: str = "Offer",
    extra: tuple[str, ...] = (),
) -> str:
    lines = [f"From: {sender}", f"Subject: {subject}", "Date: Mon, 4 Mar 2024 10:00:00 +0000"]
    lines += [f"To: {to}"] if to is not None else []
    lines += [f"Message-ID: {message_id}"] if message_id else []
    lines += [*extra, "", "Body."]
    return "\r\n".join(lines)


RECEIVED = "Received: from mx.theirs.test by mx.ours.test; Mon, 4 Mar 2024 10:05:00 +0000"

#: (name, message): the order is the order of arrival.
CASES: list[tuple[str, str]] = [
    ("outbound", eml(SALES, f"{BUYER}, {OTHER}", message_id="<out@ours.test>")),
    ("inbound", eml(OTHER_HOME, f"{SALES}, {BOSS}", message_id="<in@x>", extra=(RECEIVED,))),
    ("outbound-copy", eml(SALES, f"{BUYER}, {OTHER}", message_id="<out@ours.test>")),
    ("unregistered", eml(STRANGER, BUYER, message_id="<u@x>")),
    ("unregistered-copy", eml(STRANGER, BUYER, message_id="<u@x>")),
    ("no-id", eml(SALES, BUYER, message_id=None, subject="No id")),
    ("no-id-copy", eml(SALES, BUYER, message_id=None, subject="No id")),
    ("sensitive", eml(SALES, BUYER, message_id="<s@x>", extra=("Sensitivity: Private",))),
    ("draft", eml(SALES, BUYER, message_id="<d@x>", extra=("X-Unsent: 1",))),
    ("display-name-only", eml(SALES, "Carol Smith", message_id="<n@x>")),
    ("display-name-and-contact", eml(SALES, f"Carol Smith, {BUYER}", message_id="<nc@x>")),
    ("recipient-both", eml(SALES, BOSS, message_id="<both@x>")),
    ("own-and-alt", eml(SALES, f"{OTHER}, {OTHER_HOME}", message_id="<alt@x>")),
    ("excluded", eml(SALES, f"{BUYER}, a@{NEVER_LOG}", message_id="<e@x>")),
    ("too-long", eml(STRANGER, "x@" + "d" * 80 + ".test", message_id="<l@x>")),
    ("outbound-third-copy", eml(SALES, BUYER, message_id="<out@ours.test>", subject="Re")),
    ("inbound-copy", eml(OTHER_HOME, f"{SALES}, {BOSS}", message_id="<in@x>")),
]


def mixed_folder(folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for n, (name, text) in enumerate(CASES):
        path = folder / f"{n:02}-{name}.eml"
        path.write_text(text)
        paths.append(path)
    return paths + sorted(CORPUS.glob("*.eml"))


async def explain(db: str, paths: list[Path]) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAILLOG_")}
    env |= {"EMAILLOG_DATABASE_URL": db, "EMAILLOG_NEVER_LOG": NEVER_LOG}
    env["EMAILLOG_EWS_MAILBOX"] = MAILBOX
    script = Path(sys.executable).parent / "emaillog"
    process = await asyncio.create_subprocess_exec(
        str(script),
        "explain",
        "--json",
        *map(str, paths),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def service_results(db: str, ids: list[str]) -> list[dict[str, Any]]:
    """Per queue item, in `ids` order: outcome, rule and entries as explain shows them."""
    conn = await asyncpg.connect(db)
    try:
        disposals = await conn.fetch(
            "SELECT queue_item_id, outcome, rule FROM disposal_log WHERE outcome <> 'failed'"
        )
        entries = await conn.fetch(
            """SELECT s.queue_item_id, e.* FROM interaction_log_entry e
               JOIN stored_message s ON s.id = e.stored_message_id ORDER BY e.entry_no"""
        )
    finally:
        await conn.close()
    decided = {r["queue_item_id"]: r for r in disposals}
    by_item: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_item.setdefault(e["queue_item_id"], []).append(
            {
                **{k: e[k] for k in ENTRY_TEXT},
                "interaction_at": e["interaction_at"].isoformat() if e["interaction_at"] else None,
                "cost_lcy": float(e["cost_lcy"]),
                "duration_min": float(e["duration_min"]),
            }
        )
    return [
        {
            "outcome": decided[i]["outcome"],
            "rule": decided[i]["rule"],
            "entries": sorted(by_item.get(i, []), key=_entry_order),
        }
        for i in ids
    ]


ENTRY_TEXT = (
    "contact_no",
    "contact_company_no",
    "contact_alt_address_code",
    "salesperson_code",
    "information_flow",
    "initiated_by",
    "description",
    "subject",
    "interaction_template_code",
    "interaction_group_code",
    "correspondence_type",
    "email_logged",
)


def _entry_order(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["contact_no"], entry["salesperson_code"]


async def test_explain_and_the_service_agree_on_a_mixed_folder(db: str, tmp_path: Path) -> None:
    # BOSS is salesperson SP2 and, from now on, also contact C3 (issue 16, point 1).
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(f"INSERT INTO contact (no, name, email) VALUES ('C3', 'B', '{BOSS}')")
    finally:
        await conn.close()
    paths = mixed_folder(tmp_path / "folder")
    explained = await explain(db, paths)
    assert [line["file"] for line in explained] == [str(p) for p in paths]

    source = MemorySource(MAILBOX)
    ids = []
    for path in paths:
        raw = path.read_bytes()
        received = parse_mime(raw).received_at or ARRIVAL
        ids.append(source.deliver(raw, received_at=received).item_id)
    # One worker per stage: the service decides in order of arrival, as explain does.
    settings = memory_settings(db, never_log=NEVER_LOG, ews_worker_threads=1, db_pool_connections=2)
    async with running(settings, source) as service:
        await service.until(lambda: service.total() == len(paths), "every file decided")
        assert service.counts()["failed"] == 0
    served = await service_results(db, ids)

    for path, said, did in zip(paths, explained, served, strict=True):
        entries = sorted(said["entries"], key=_entry_order)
        if parse_mime(path.read_bytes()).received_at is None:
            for entry in (*entries, *did["entries"]):  # inbound: the queue's arrival time,
                if entry["information_flow"] == "inbound":  # which only the service knows
                    entry.pop("interaction_at")
        assert (said["outcome"], said["rule"], entries) == (
            did["outcome"],
            did["rule"],
            did["entries"],
        ), path.name

    by_name = {
        p.name.split("-", 1)[1]: e
        for p, e in zip(paths, explained, strict=True)
        if p.parent.name == "folder"
    }
    assert {name: e["outcome"] for name, e in by_name.items()} == {
        "outbound.eml": "logged",
        "inbound.eml": "logged",
        "outbound-copy.eml": "duplicate",
        "unregistered.eml": "unregistered",
        "unregistered-copy.eml": "unregistered",
        "no-id.eml": "logged",
        "no-id-copy.eml": "duplicate",
        "sensitive.eml": "sensitive",
        "draft.eml": "draft",
        "display-name-only.eml": "no_parties",
        "display-name-and-contact.eml": "logged",
        "recipient-both.eml": "logged",
        "own-and-alt.eml": "logged",
        "excluded.eml": "excluded",
        "too-long.eml": "address_too_long",
        "outbound-third-copy.eml": "duplicate",
        "inbound-copy.eml": "duplicate",
    }
    assert [e["contact_no"] for e in by_name["recipient-both.eml"]["entries"]] == ["C3"]
    assert [e["contact_no"] for e in by_name["own-and-alt.eml"]["entries"]] == ["C2"]

    # Afterwards every message the service logged is a duplicate to explain (the journal).
    again = await explain(db, paths)
    for first, second in zip(explained, again, strict=True):
        if first["outcome"] == "logged":
            assert second["outcome"] == "duplicate", first["file"]
        else:
            assert second["outcome"] == first["outcome"], first["file"]
