"""Read questions of the web UI beside the entry lists (issue 13). SQL only.

What the operations page shows comes from disposal_log and the directory tables, which hold
no personal data of non-logged mail (disposal_log keeps only a hash of the Message-ID).
`record_access` writes the access table of migration 0006: who downloaded which stored
message, and when. `pipeline.store.entries` re-exports all of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

#: Buckets of `outcome_counts`, by their date_trunc unit.
INTERVALS = ("hour", "day")


@dataclass(frozen=True, slots=True)
class Decision:
    """One disposal_log row of a stored message: how its queue copy was decided."""

    disposed_at: datetime
    outcome: str
    rule: str


@dataclass(frozen=True, slots=True)
class OutcomeBucket:
    start: datetime  # UTC, at the start of the hour or day
    counts: dict[str, int]  # outcome -> messages; outcomes without any are absent


@dataclass(frozen=True, slots=True)
class Failed:
    """A queue message that failed (it stays in the queue): no personal data."""

    disposed_at: datetime
    rule: str
    message_id_hash: str
    queue_item_id: str | None


@dataclass(frozen=True, slots=True)
class DirectoryCounts:
    salespersons: int  # active
    salespersons_retired: int
    contacts: int  # active, persons and companies
    contacts_retired: int
    alt_addresses: int
    templates: int


@dataclass(frozen=True, slots=True)
class Contact:
    no: str
    name: str
    type: str  # "person" | "company"
    company_no: str
    company_name: str
    retired: bool


@dataclass(frozen=True, slots=True)
class Salesperson:
    code: str
    name: str
    retired: bool


async def decision_record(pool: asyncpg.Pool, stored_message_id: int) -> list[Decision]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT disposed_at, outcome, rule FROM disposal_log
               WHERE stored_message_id = $1 ORDER BY disposed_at, id""",
            stored_message_id,
        )
    return [Decision(r["disposed_at"], r["outcome"], r["rule"]) for r in rows]


async def outcome_counts(
    pool: asyncpg.Pool, *, since: datetime, until: datetime, interval: str
) -> list[OutcomeBucket]:
    """Messages per outcome per UTC hour or day in [since, until); every bucket, even empty."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}")
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """WITH counts AS (
                   SELECT date_trunc($3::text, disposed_at, 'UTC') AS start, outcome,
                          count(*) AS n
                   FROM disposal_log WHERE disposed_at >= $1 AND disposed_at < $2
                   GROUP BY 1, 2)
               SELECT b.start, c.outcome, c.n
               FROM generate_series(date_trunc($3::text, $1::timestamptz, 'UTC'),
                                    $2::timestamptz - interval '1 microsecond',
                                    ('1 ' || $3::text)::interval) AS b(start)
               LEFT JOIN counts c ON c.start = b.start
               ORDER BY b.start, c.outcome""",
            since,
            until,
            interval,
        )
    buckets: dict[datetime, dict[str, int]] = {}
    for r in rows:
        counts = buckets.setdefault(r["start"], {})
        if r["outcome"] is not None:
            counts[r["outcome"]] = r["n"]
    return [OutcomeBucket(start, counts) for start, counts in buckets.items()]


async def failed_messages(pool: asyncpg.Pool, *, limit: int) -> list[Failed]:
    """The most recent failures, newest first."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT disposed_at, rule, message_id_hash, queue_item_id FROM disposal_log
               WHERE outcome = 'failed' ORDER BY disposed_at DESC, id DESC LIMIT $1""",
            limit,
        )
    return [
        Failed(r["disposed_at"], r["rule"], r["message_id_hash"], r["queue_item_id"]) for r in rows
    ]


async def directory_counts(pool: asyncpg.Pool) -> DirectoryCounts:
    async with pool.acquire() as conn:
        r = await conn.fetchrow(
            """SELECT
                 (SELECT count(*) FROM salesperson WHERE retired_at IS NULL) AS sp,
                 (SELECT count(*) FROM salesperson WHERE retired_at IS NOT NULL) AS sp_retired,
                 (SELECT count(*) FROM contact WHERE retired_at IS NULL) AS ct,
                 (SELECT count(*) FROM contact WHERE retired_at IS NOT NULL) AS ct_retired,
                 (SELECT count(*) FROM contact_alt_address) AS alt,
                 (SELECT count(*) FROM interaction_template) AS tpl"""
        )
    assert r is not None
    return DirectoryCounts(r["sp"], r["sp_retired"], r["ct"], r["ct_retired"], r["alt"], r["tpl"])


async def get_contact(pool: asyncpg.Pool, no: str) -> Contact | None:
    async with pool.acquire() as conn:
        r = await conn.fetchrow(
            """SELECT c.no, c.name, c.type, c.company_no, coalesce(co.name, '') AS company_name,
                      c.retired_at IS NOT NULL AS retired
               FROM contact c
               LEFT JOIN contact co ON co.no = c.company_no AND c.company_no <> ''
               WHERE c.no = $1""",
            no,
        )
    if r is None:
        return None
    return Contact(r["no"], r["name"], r["type"], r["company_no"], r["company_name"], r["retired"])


async def get_salesperson(pool: asyncpg.Pool, code: str) -> Salesperson | None:
    async with pool.acquire() as conn:
        r = await conn.fetchrow(
            "SELECT code, name, retired_at IS NOT NULL AS retired FROM salesperson WHERE code = $1",
            code,
        )
    return Salesperson(r["code"], r["name"], r["retired"]) if r else None


async def record_access(
    pool: asyncpg.Pool, *, who: str, stored_message_id: int, action: str
) -> None:
    """Record (committed before returning) that `who` did `action` to a stored message."""
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO stored_message_access (who, stored_message_id, action)
               VALUES ($1, $2, $3)""",
            who,
            stored_message_id,
            action,
        )
