"""Versioned plain-SQL migrations: `store/migrations/NNNN_name.sql`, applied in order.

Each file runs in its own transaction and is recorded in `schema_migrations` in that same
transaction, so a failed migration leaves nothing behind and is retried next time. The whole
run holds a session advisory lock: two processes migrating at once (two replicas starting,
`emaillog migrate` during a deploy) run one after the other, and the second finds nothing
left to do. Files are never edited once released; a change is a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from pipeline.logs import get_logger

log = get_logger(__name__)

#: Arbitrary, fixed: the advisory lock key that serialises migrators ("emaillog" in ASCII).
MIGRATION_LOCK_KEY = 0x656D61696C6C6F67
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migration files shipped in the package, in version order."""
    folder = resources.files("pipeline.store").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(match[1], entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migration files share a version: {versions}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet recorded; return the file names applied (may be [])."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    text PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version FROM schema_migrations")
        done = {r["version"] for r in rows}
        applied: list[str] = []
        for migration in available_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                # No arguments: asyncpg sends it as a simple query, so a file may hold many
                # statements (and dollar-quoted function bodies).
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %s", migration.name)
            applied.append(migration.name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """The migration files not yet applied (all of them on an empty database), read-only:
    for processes that need the schema current but must not change it (`emaillog ui`)."""
    done: set[str] = set()
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.name for m in available_migrations() if m.version not in done]
