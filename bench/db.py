"""The benchmark's view of the database: directory import, fresh journal, what was disposed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg

from pipeline.store.directory_repo import KINDS, import_csv

JOURNAL_TABLES = "interaction_log_entry, disposal_log, stored_message_access, stored_message"


async def import_directory(pool: asyncpg.Pool, files: dict[str, Path]) -> dict[str, int]:
    """Through the product's CSV import, in its order (alt. addresses after contacts)."""
    counts: dict[str, int] = {}
    async with pool.acquire() as conn:
        for kind in KINDS:
            counts[kind] = await import_csv(conn, kind, files[kind])
    return counts


async def reset_journal(pool: asyncpg.Pool) -> None:
    """Fresh journal for the next phase (the directory stays)."""
    async with pool.acquire() as conn:
        await conn.execute(f"TRUNCATE {JOURNAL_TABLES} RESTART IDENTITY")


@dataclass(frozen=True, slots=True)
class Disposals:
    """disposal_log (non-failed rows) and entry counts of one phase."""

    outcomes: dict[str, int]
    failed: int
    entries: int
    first_at: float  # unix seconds
    last_at: float

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


async def disposals(pool: asyncpg.Pool) -> Disposals:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT outcome, count(*) AS n FROM disposal_log WHERE outcome <> 'failed' "
            "GROUP BY outcome ORDER BY outcome"
        )
        span = await conn.fetchrow(
            "SELECT extract(epoch FROM min(disposed_at))::float8 AS first, "
            "extract(epoch FROM max(disposed_at))::float8 AS last, "
            "count(*) FILTER (WHERE outcome = 'failed') AS failed FROM disposal_log"
        )
        entries = await conn.fetchval("SELECT count(*) FROM interaction_log_entry")
    assert span is not None
    return Disposals(
        outcomes={r["outcome"]: r["n"] for r in rows},
        failed=span["failed"],
        entries=entries,
        first_at=span["first"] or 0.0,
        last_at=span["last"] or 0.0,
    )


async def disposed_count(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval("SELECT count(*) FROM disposal_log WHERE outcome <> 'failed'")
        return n


async def disposal_times(pool: asyncpg.Pool) -> dict[str, float]:
    """queue item id -> disposed_at (unix seconds) of every non-failed disposal."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT queue_item_id, extract(epoch FROM disposed_at)::float8 AS at "
            "FROM disposal_log WHERE outcome <> 'failed'"
        )
    return {r["queue_item_id"]: r["at"] for r in rows}
