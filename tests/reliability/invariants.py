"""The one invariants check every reliability scenario ends with (GUIDE section 4).

For every delivered queue message, exactly one of:
- logged: one 'logged' disposal_log row pointing at a stored_message row in state 'stored',
  whose storage_item_id is an item in the storage folder (with the message's Message-ID)
  and which has a web link (issue 11), carrying its entries (the expected number, when the
  scenario knows it);
- disposed: one disposal_log row with its outcome, and the item gone from the queue;
- failed (only where the scenario allows it): still in the queue BY DESIGN (a poison
  message is recorded 'failed' after bounded retries and left for a person), with a
  'failed' row, no 'logged' row, nothing in storage.
Anything still in the queue that is not an allowed failure is a violation.

And globally:
- no stored_message row is left 'moving' (the caller waits for the reconciler first);
- the storage folder holds exactly the stored_message rows' items: nothing twice, nothing
  without its row; so no entry exists for a message that is not in storage;
- each stored_message has exactly one 'logged' disposal row; no Message-ID is logged twice;
- every disposal_log row belongs to a delivered message (nothing decided that was not sent);
- `emaillog_messages_total` of one process equals the disposal_log rows written while it ran
  (ids above `run_from_id`). Metrics restart at zero with the process and a SIGKILLed one
  cannot be scraped, so scenarios compare the last run (the one that finishes the work).

`check()` returns what became of each delivered message, for scenario-specific assertions.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from pipeline.model import hash_key
from tests.reliability.mail import Delivered
from tests.service.harness import MAILBOX, QUEUE, STORAGE


class Folders(Protocol):
    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]: ...


@dataclass
class Snapshot:
    """The database and the mailbox, read together once the service is quiet."""

    disposals: list[asyncpg.Record]
    stored: dict[int, asyncpg.Record]
    entries: Counter[int]
    queue: dict[str, dict[str, Any]]
    storage: dict[str, dict[str, Any]]


@dataclass
class Outcomes:
    """What became of each delivered message (queue item id -> outcome, or 'failed')."""

    by_item: dict[str, str] = field(default_factory=dict)

    def of(self, delivered: Sequence[Delivered]) -> list[str]:
        return sorted(self.by_item[d.item_id] for d in delivered)


def run(coro: Any) -> Any:
    """Run one coroutine on a private loop (the scenarios are plain synchronous tests)."""
    return asyncio.run(coro)


async def _read_database(
    url: str,
) -> tuple[list[asyncpg.Record], list[asyncpg.Record], Counter[int]]:
    conn = await asyncpg.connect(url)
    try:
        disposals = await conn.fetch("SELECT * FROM disposal_log ORDER BY id")
        stored = await conn.fetch("SELECT * FROM stored_message ORDER BY id")
        counts = await conn.fetch(
            "SELECT stored_message_id, count(*) AS n FROM interaction_log_entry"
            " GROUP BY stored_message_id"
        )
    finally:
        await conn.close()
    return list(disposals), list(stored), Counter({r["stored_message_id"]: r["n"] for r in counts})


def snapshot(
    sim: Folders, database_url: str, storage: str = STORAGE, queue: str = QUEUE
) -> Snapshot:
    disposals, stored, entries = run(_read_database(database_url))
    return Snapshot(
        disposals=disposals,
        stored={r["id"]: r for r in stored},
        entries=entries,
        queue={i["id"]: i for i in sim.list_items(MAILBOX, queue)},
        storage={i["id"]: i for i in sim.list_items(MAILBOX, storage)},
    )


def unlinked_rows(database_url: str) -> int:
    """Stored messages still missing their storage item id or web link (the reconciler
    fills them)."""

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            value: int = await conn.fetchval(
                "SELECT count(*) FROM stored_message WHERE state = 'stored'"
                " AND (storage_item_id IS NULL OR web_link IS NULL)"
            )
            return value
        finally:
            await conn.close()

    result: int = run(count())
    return result


def moving_rows(database_url: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            value: int = await conn.fetchval(
                "SELECT count(*) FROM stored_message WHERE state = 'moving'"
            )
            return value
        finally:
            await conn.close()

    result: int = run(count())
    return result


def last_disposal_id(database_url: str) -> int:
    """The highest disposal_log id so far: rows above it belong to the next run."""

    async def last() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            value: int = await conn.fetchval("SELECT coalesce(max(id), 0) FROM disposal_log")
            return value
        finally:
            await conn.close()

    result: int = run(last())
    return result


def violations(
    snap: Snapshot,
    delivered: Sequence[Delivered],
    *,
    allowed_failed: Collection[str] = (),
    metrics: dict[str, float] | None = None,
    run_from_id: int = 0,
) -> tuple[list[str], Outcomes]:
    """Every broken invariant as one line (empty: all hold), and the outcomes found."""
    problems: list[str] = []
    outcomes = Outcomes()
    by_item: dict[str, list[asyncpg.Record]] = {}
    for row in snap.disposals:
        by_item.setdefault(row["queue_item_id"], []).append(row)
    delivered_ids = {d.item_id for d in delivered}

    for d in delivered:
        rows = by_item.get(d.item_id, [])
        decided = [r for r in rows if r["outcome"] != "failed"]
        failed = [r for r in rows if r["outcome"] == "failed"]
        where = f"{d.name!r} ({d.item_id[:12]}...)"
        if d.item_id in snap.queue:
            if (
                d.item_id in allowed_failed
                and failed
                and not any(r["outcome"] == "logged" for r in decided)
            ):
                outcomes.by_item[d.item_id] = "failed"
            else:
                problems.append(f"{where}: still in the queue; recorded {_outcomes(rows)}")
            continue
        if len(decided) != 1:
            problems.append(f"{where}: gone from the queue with decisions {_outcomes(rows)}")
            continue
        row = decided[0]
        outcome = row["outcome"]
        outcomes.by_item[d.item_id] = outcome
        if d.expect is not None and outcome != d.expect.value:
            problems.append(f"{where}: outcome {outcome}, expected {d.expect.value}")
        if d.message_id is not None and row["message_id_hash"] != hash_key(d.message_id):
            problems.append(f"{where}: disposal row carries another message's hash")
        if outcome == "logged":
            problems += _check_logged(snap, d, row, where)

    moving = [s for s in snap.stored.values() if s["state"] == "moving"]
    if moving:
        problems.append(f"{len(moving)} stored_message rows left 'moving'")
    linked = [s["storage_item_id"] for s in snap.stored.values() if s["state"] == "stored"]
    for item_id, n in Counter(linked).items():
        if n > 1:
            problems.append(f"storage item {item_id} linked from {n} stored_message rows")
    unlinked = set(snap.storage) - set(linked)
    if unlinked:
        problems.append(f"{len(unlinked)} storage items without a stored_message row (copies?)")
    dangling = {i for i in linked if i not in snap.storage}
    if dangling:
        problems.append(f"{len(dangling)} stored_message rows point at no storage item")
    storage_ids = Counter(i["message_id"] for i in snap.storage.values() if i["message_id"])
    problems += [f"Message-ID {m} stored {n} times" for m, n in storage_ids.items() if n > 1]
    logged_rows = Counter(
        r["stored_message_id"] for r in snap.disposals if r["outcome"] == "logged"
    )
    for sid, srow in snap.stored.items():
        if logged_rows[sid] != 1:
            problems.append(f"stored_message {sid}: {logged_rows[sid]} 'logged' disposal rows")
        if snap.entries[sid] == 0:
            problems.append(f"stored_message {sid} ({srow['state']}): no entries")
    orphans = set(snap.entries) - set(snap.stored)
    if orphans:
        problems.append(f"entries for unknown stored_message ids {sorted(orphans)}")
    strangers = {r["queue_item_id"] for r in snap.disposals} - delivered_ids
    if strangers:
        problems.append(f"{len(strangers)} disposal rows for queue items never delivered")

    if metrics is not None:
        counted = Counter(r["outcome"] for r in snap.disposals if r["id"] > run_from_id)
        for outcome in set(counted) | set(metrics):
            if metrics.get(outcome, 0.0) != counted.get(outcome, 0):
                problems.append(
                    f"emaillog_messages_total{{outcome={outcome!r}}} = {metrics.get(outcome)}, "
                    f"disposal_log rows of this run: {counted.get(outcome, 0)}"
                )
    return problems, outcomes


def _check_logged(snap: Snapshot, d: Delivered, row: asyncpg.Record, where: str) -> list[str]:
    sid = row["stored_message_id"]
    stored = snap.stored.get(sid)
    if stored is None:
        return [f"{where}: logged without a stored_message row"]
    problems = []
    if stored["state"] != "stored":
        problems.append(f"{where}: stored_message {sid} is {stored['state']}")
    if stored["state"] == "stored" and not stored.get("web_link"):
        problems.append(f"{where}: stored_message {sid} has no web link")
    storage_item = snap.storage.get(stored["storage_item_id"])
    if storage_item is None:
        problems.append(f"{where}: its storage_item_id is not in the storage folder")
    elif d.message_id is not None and storage_item["message_id"] != d.message_id:
        problems.append(f"{where}: its storage item is another message")
    if d.entries is not None and snap.entries[sid] != d.entries:
        problems.append(f"{where}: {snap.entries[sid]} entries, expected {d.entries}")
    return problems


def _outcomes(rows: Sequence[asyncpg.Record]) -> list[str]:
    return [r["outcome"] for r in rows]


def check(
    sim: Folders,
    database_url: str,
    delivered: Sequence[Delivered],
    *,
    allowed_failed: Collection[str] = (),
    metrics: dict[str, float] | None = None,
    run_from_id: int = 0,
    storage: str = STORAGE,
    queue: str = QUEUE,
) -> Outcomes:
    """Assert every invariant (see the module docstring); return the outcomes."""
    problems, outcomes = violations(
        snapshot(sim, database_url, storage, queue),
        delivered,
        allowed_failed=allowed_failed,
        metrics=metrics,
        run_from_id=run_from_id,
    )
    assert not problems, "invariants broken:\n  " + "\n  ".join(problems)
    return outcomes
