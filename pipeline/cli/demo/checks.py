"""The demo's checks: what the database, the metrics and the simulator say, against what
the demo data (`data.py`) expects.

While the service runs, `drained()` decides when the demo is done: disposal_log holds
every sample and the service's metrics count exactly what disposal_log holds. At the end,
`summary()` prints the per-outcome counts, each sample's fate, the interaction log entries
and the storage folder against the journal, and returns every difference it found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import asyncpg

from pipeline.cli.demo.data import (
    MAILBOX,
    QUEUE_FOLDER,
    SAMPLES,
    STORAGE_FOLDER,
    Sample,
    expected_counts,
    expected_entries,
)
from pipeline.cli.demo.view import OUTCOMES, Say, disposed
from pipeline.mailparse import parse_mime
from pipeline.metrics import Metrics
from pipeline.model import Outcome, message_id_hash

if TYPE_CHECKING:  # for annotations only; the demo imports the simulator lazily
    from exchange_sim import Simulator
    from pipeline.cli.demo.graph_world import GraphWorld
    from pipeline.cli.demo.imap_world import DovecotWorld


async def disposal_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows of disposal_log per outcome, every outcome present."""
    rows = await pool.fetch("SELECT outcome, count(*) AS n FROM disposal_log GROUP BY outcome")
    found = {row["outcome"]: int(row["n"]) for row in rows}
    return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}


def metric_counts(metrics: Metrics) -> dict[str, int]:
    """emaillog_messages_total per outcome, read from the service's registry."""
    registry = metrics.registry
    return {
        outcome: int(
            registry.get_sample_value("emaillog_messages_total", {"outcome": outcome}) or 0
        )
        for outcome in OUTCOMES
    }


def drained(counts: Mapping[str, int], metrics: Metrics, *, delivered: int, in_queue: int) -> bool:
    """Every sample delivered and recorded in disposal_log (`counts`), the queue folder
    empty, and the service's metrics counting exactly what disposal_log holds."""
    total = len(SAMPLES)
    return (
        delivered == total
        and disposed(counts) == total
        and in_queue == 0
        and metric_counts(metrics) == counts
    )


async def summary(
    pool: asyncpg.Pool,
    sim: Simulator | DovecotWorld | GraphWorld,
    counts: Mapping[str, int],
    say: Say,
) -> list[str]:
    """Print the summary; return the differences from what the demo data expects."""
    problems = check_counts(counts, say)
    await show_sample_fates(pool, say)
    problems += await check_entries(pool, say)
    problems += await check_storage(pool, sim, counts, say)
    return problems


def check_counts(counts: Mapping[str, int], say: Say) -> list[str]:
    """disposal_log per outcome against the samples' declared outcomes."""
    problems: list[str] = []
    expected = expected_counts()
    say("")
    say(f"{'outcome':<18}{'count':>6}  {'expected':>8}")
    for outcome in OUTCOMES:
        mark = "" if counts[outcome] == expected[outcome] else "   <- differs"
        say(f"{outcome:<18}{counts[outcome]:>6}  {expected[outcome]:>8}{mark}")
        if mark:
            problems.append(f"{outcome}: {counts[outcome]}, expected {expected[outcome]}")
    return problems


async def show_sample_fates(pool: asyncpg.Pool, say: Say) -> None:
    """One line per sample with its recorded outcome, marked where it differs. Not a
    problem of its own: a difference already shows in the per-outcome counts."""
    say("")
    say("Each sample message (* = waiting before the service started, catch-up):")
    recorded = await pool.fetch(
        "SELECT message_id_hash, outcome FROM disposal_log WHERE outcome <> 'failed' ORDER BY id"
    )
    for number, (sample, got) in enumerate(sample_outcomes(recorded), start=1):
        mark = "" if got == sample.expect else f"   <- expected {sample.expect.value}"
        when = " " if sample.streaming else "*"
        say(f"{number:>3}{when} {sample.label:<46} {got or 'not disposed'}{mark}")


def sample_outcomes(recorded: Sequence[Mapping[str, str]]) -> list[tuple[Sample, str | None]]:
    """Each sample with the outcome disposal_log recorded for it (None: not disposed of).

    disposal_log keeps only a hash of the Message-ID, so samples are matched by that hash.
    Copies of one message share it (the duplicate): within such a group a sample gets its
    expected outcome when one was recorded, else whatever is left."""
    left: dict[str, list[str]] = {}
    for row in recorded:
        left.setdefault(row["message_id_hash"], []).append(row["outcome"])
    hashes = [message_id_hash(parse_mime(sample.raw)) for sample in SAMPLES]
    result: list[tuple[Sample, str | None]] = []
    for sample, hashed in zip(SAMPLES, hashes, strict=True):
        outcomes = left.get(hashed, [])
        if sample.expect.value in outcomes:
            outcomes.remove(sample.expect.value)
            result.append((sample, sample.expect.value))
        else:
            result.append((sample, outcomes.pop(0) if outcomes else None))
    return result


ENTRIES_SQL = """
    SELECT e.entry_no, e.salesperson_code, s.name AS salesperson, e.contact_no,
           c.name AS contact, e.contact_company_no, e.contact_alt_address_code,
           e.information_flow, e.description
    FROM interaction_log_entry e
    LEFT JOIN salesperson s ON s.code = e.salesperson_code
    LEFT JOIN contact c ON c.no = e.contact_no
    ORDER BY e.entry_no
"""


async def check_entries(pool: asyncpg.Pool, say: Say) -> list[str]:
    """The interaction log entries as a table; their number against the samples'."""
    entries = await pool.fetch(ENTRIES_SQL)
    want_entries = expected_entries()
    say("")
    say(f"Interaction log entries ({len(entries)}, expected {want_entries}):")
    say(f"{'no.':>4}  {'salesperson':<24}{'contact':<36}{'flow':<10}description")
    for e in entries:
        contact = f"{e['contact_no']} {e['contact'] or ''}"
        if e["contact_alt_address_code"]:
            contact += f" [{e['contact_alt_address_code']}]"
        contact += f" ({e['contact_company_no']})" if e["contact_company_no"] else ""
        salesperson = f"{e['salesperson_code']} {e['salesperson'] or ''}"
        say(
            f"{e['entry_no']:>4}  {salesperson[:23]:<24}{contact[:35]:<36}"
            f"{e['information_flow']:<10}{e['description']}"
        )
    if len(entries) != want_entries:
        return [f"{len(entries)} interaction log entries, expected {want_entries}"]
    return []


async def check_storage(
    pool: asyncpg.Pool,
    sim: Simulator | DovecotWorld | GraphWorld,
    counts: Mapping[str, int],
    say: Say,
) -> list[str]:
    """The storage folder must hold exactly the logged messages, each linked from the journal."""
    stored = await pool.fetch("SELECT state, storage_item_id FROM stored_message")
    storage_ids = {item["id"] for item in sim.list_items(MAILBOX, STORAGE_FOLDER)}
    linked = {row["storage_item_id"] for row in stored if row["state"] == "stored"}
    in_queue = len(sim.list_items(MAILBOX, QUEUE_FOLDER))
    say("")
    say(
        f"Storage folder: {len(storage_ids)} messages; journal: {len(linked)} stored messages "
        f"linked to them, {len(stored) - len(linked)} still moving; queue folder: {in_queue} left"
    )
    problems = []
    if linked != storage_ids or len(stored) != len(linked):
        problems.append("the storage folder and the journal's stored messages differ")
    if len(storage_ids) != counts[Outcome.LOGGED]:
        problems.append(f"{len(storage_ids)} in storage but {counts[Outcome.LOGGED]} logged")
    if in_queue:
        problems.append(f"{in_queue} messages left in the queue folder")
    return problems
