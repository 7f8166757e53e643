"""The directory tables: load them into a `Directory`, watch them, import and export CSV.

A running service holds a `DirectoryWatcher`: it LISTENs on `emaillog_directory` (the
triggers of migration 0001 notify once per changing statement) and swaps in a freshly built
`Directory`. Bursts of notifications (an import touches four tables) are debounced into one
reload. LISTEN is registered *before* the first load, so no change can fall between the two.

CSV import is one transaction per file: a file is either fully imported or not at all. Every
bad row is reported with file, line and reason before anything is written. People are never
deleted: `import --replace` and `retire` set `retired_at` (migration 0002), so past entries
keep their codes; a retired person is left out of the loaded `Directory` and never matches.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from pipeline.directory import (
    AltAddress,
    Contact,
    ContactType,
    Directory,
    Salesperson,
    Template,
)
from pipeline.errors import DatabaseUnavailable, InputError
from pipeline.logs import get_logger
from pipeline.store.db import Database, connect
from pipeline.store.directory_csv import (
    EXPORT_FILES,
    HEADERS,
    KINDS,
    PEOPLE,
    STATUS_HEADERS,
    Kind,
    Row,
    read_csv,
    report,
    validate,
)

__all__ = [
    "EXPORT_FILES",
    "HEADERS",
    "KINDS",
    "PEOPLE",
    "Kind",
    "export_csv",
    "import_csv",
    "replace_csv",
    "retire",
]

log = get_logger(__name__)

CHANNEL = "emaillog_directory"
#: What "the database went away" looks like; anything else is a bug and ends `run()`.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    DatabaseUnavailable,
)


def contact_type(value: str) -> ContactType:
    """Narrow a stored type to the Literal (the table's CHECK guarantees one of the two)."""
    return "company" if value == "company" else "person"


# --- loading -------------------------------------------------------------------------------


async def load_directory(conn: asyncpg.Connection) -> Directory:
    """Read the four tables (in one snapshot) and build the index."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # Retired people never match: they are not in the index at all (nor are the alt.
        # addresses of retired contacts: `Directory.build` drops those of unknown contacts).
        sp = await conn.fetch("SELECT code, name, email FROM salesperson WHERE retired_at IS NULL")
        ct = await conn.fetch(
            "SELECT no, name, type, company_no, email FROM contact WHERE retired_at IS NULL"
        )
        alt = await conn.fetch("SELECT contact_no, code, email FROM contact_alt_address")
        tpl = await conn.fetch(
            "SELECT code, description, interaction_group_code, unit_cost, unit_duration_min "
            "FROM interaction_template"
        )
    return Directory.build(
        salespersons=(Salesperson(r["code"], r["name"], r["email"]) for r in sp),
        contacts=(
            Contact(r["no"], r["name"], contact_type(r["type"]), r["company_no"], r["email"])
            for r in ct
        ),
        alt_addresses=(AltAddress(r["contact_no"], r["code"], r["email"]) for r in alt),
        templates=(Template(r[0], r[1], r[2], r[3], r[4]) for r in tpl),
    )


class DirectoryWatcher:
    """Keeps `current` equal to the directory tables, within about `debounce_seconds`.

    `run()` is a long-running task: it reconnects (and reloads) after losing its connection,
    and only ends when cancelled. `ready` is set after the first successful load.
    """

    def __init__(
        self,
        db: Database,
        *,
        debounce_seconds: float = 0.1,
        reconnect_seconds: float = 1.0,
        keepalive_seconds: float = 30.0,
        on_reload: Callable[[Directory], None] | None = None,
    ) -> None:
        self.db = db
        self.current = Directory.empty()
        self.ready = asyncio.Event()
        self.reloads = 0
        self._debounce_seconds = debounce_seconds
        self._reconnect_seconds = reconnect_seconds
        self._keepalive_seconds = keepalive_seconds
        self._on_reload = on_reload

    async def reload(self) -> Directory:
        async with self.db.pool.acquire() as conn:
            directory = await load_directory(conn)
        self.current = directory
        self.reloads += 1
        if self._on_reload is not None:
            self._on_reload(directory)
        log.info("directory loaded: %s", dict(directory.counts))
        self.ready.set()
        return directory

    async def run(self) -> None:
        while True:
            try:
                await self._listen_and_reload()
            except _CONNECTION_ERRORS as exc:
                # Keep serving the last directory; a restarted server will be back.
                log.warning("directory watcher lost the database (%s); reconnecting", exc)
            await asyncio.sleep(self._reconnect_seconds)

    async def _listen_and_reload(self) -> None:
        conn = await connect(self.db.url, timeout_seconds=self.db.connect_timeout_seconds)
        wake = asyncio.Event()
        lost = False

        def on_notify(*_: Any) -> None:
            wake.set()

        def on_termination(_: Any) -> None:
            nonlocal lost
            lost = True
            wake.set()

        try:
            conn.add_termination_listener(on_termination)
            await conn.add_listener(CHANNEL, on_notify)
            await self.reload()
            while True:
                try:
                    await asyncio.wait_for(wake.wait(), self._keepalive_seconds)
                except TimeoutError:
                    # A silent connection may be half-open (a network cut): ask it.
                    await conn.fetchval("SELECT 1", timeout=self._keepalive_seconds)
                    continue
                if lost:
                    raise ConnectionError("LISTEN connection closed")
                # Let a burst of notifications (one import = several statements) settle.
                await asyncio.sleep(self._debounce_seconds)
                wake.clear()
                await self.reload()
        finally:
            if not conn.is_closed():
                conn.terminate()


# --- CSV import / export, retiring (the files themselves: directory_csv.py) -----------------

_UPSERT: dict[Kind, str] = {
    # Importing a person makes them active again (retired_at from the file: NULL unless the
    # row says retired); a person already retired keeps the first retirement time.
    "salespersons": """
        INSERT INTO salesperson (code, name, email, retired_at)
        SELECT code, name, email, retired_at FROM _import
        ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
            retired_at = CASE WHEN EXCLUDED.retired_at IS NULL THEN NULL
                              ELSE coalesce(salesperson.retired_at, EXCLUDED.retired_at) END""",
    "contacts": """
        INSERT INTO contact (no, name, type, company_no, email, retired_at)
        SELECT no, name, type, company_no, email, retired_at FROM _import
        ON CONFLICT (no) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type,
            company_no = EXCLUDED.company_no, email = EXCLUDED.email,
            retired_at = CASE WHEN EXCLUDED.retired_at IS NULL THEN NULL
                              ELSE coalesce(contact.retired_at, EXCLUDED.retired_at) END""",
    "alt_addresses": """
        INSERT INTO contact_alt_address (contact_no, code, email)
        SELECT contact_no, code, email FROM _import
        ON CONFLICT (contact_no, code) DO UPDATE SET email = EXCLUDED.email""",
    "templates": """
        INSERT INTO interaction_template
            (code, description, interaction_group_code, unit_cost, unit_duration_min)
        SELECT code, description, interaction_group_code, unit_cost, unit_duration_min
        FROM _import
        ON CONFLICT (code) DO UPDATE SET description = EXCLUDED.description,
            interaction_group_code = EXCLUDED.interaction_group_code,
            unit_cost = EXCLUDED.unit_cost, unit_duration_min = EXCLUDED.unit_duration_min""",
}
#: `import --replace`: what the file leaves out. People are retired (their entries keep
#: their codes and names); alt. addresses and templates are only data, and are deleted.
_REPLACE: dict[Kind, str] = {
    "salespersons": """
        UPDATE salesperson SET retired_at = $1
        WHERE retired_at IS NULL AND code NOT IN (SELECT code FROM _import)""",
    "contacts": """
        UPDATE contact SET retired_at = $1
        WHERE retired_at IS NULL AND no NOT IN (SELECT no FROM _import)""",
    "alt_addresses": """
        DELETE FROM contact_alt_address a WHERE NOT EXISTS
            (SELECT 1 FROM _import i WHERE i.contact_no = a.contact_no AND i.code = a.code)""",
    "templates": """
        DELETE FROM interaction_template WHERE code NOT IN (SELECT code FROM _import)""",
}
_TABLE: dict[Kind, tuple[str, tuple[str, ...]]] = {
    "salespersons": ("salesperson", ("code", "name", "email", "retired_at")),
    "contacts": ("contact", ("no", "name", "type", "company_no", "email", "retired_at")),
    "alt_addresses": ("contact_alt_address", ("contact_no", "code", "email")),
    "templates": (
        "interaction_template",
        ("code", "description", "interaction_group_code", "unit_cost", "unit_duration_min"),
    ),
}
#: `retire`: the table and key column of each kind of person.
_PERSON_KEY: dict[Kind, tuple[str, str]] = {
    "salespersons": ("salesperson", "code"),
    "contacts": ("contact", "no"),
}


async def import_csv(conn: asyncpg.Connection, kind: Kind, path: Path) -> int:
    """Upsert every row of `path` by key, in one transaction; return the number of rows.

    Raises InputError (naming file, line and reason for up to 20 rows) and writes nothing
    when any row is bad.
    """
    imported, _ = await _import(conn, kind, path, replace=False)
    return imported


async def replace_csv(conn: asyncpg.Connection, kind: Kind, path: Path) -> tuple[int, int]:
    """`import_csv`, and the file is the whole truth: salespersons/contacts not in it are
    retired, alt. addresses/templates not in it deleted, in the same transaction.
    Returns (rows imported, rows retired or deleted)."""
    return await _import(conn, kind, path, replace=True)


async def _import(
    conn: asyncpg.Connection, kind: Kind, path: Path, *, replace: bool
) -> tuple[int, int]:
    rows = read_csv(kind, path)
    now = datetime.now(UTC)
    records, problems = validate(kind, rows, path, now)
    async with conn.transaction():
        if kind == "alt_addresses" and not problems:
            problems += await _unknown_contacts(conn, rows, path)
        if problems:
            raise InputError(report(problems, path))
        table, columns = _TABLE[kind]
        # COPY into a temporary table, then one INSERT ... ON CONFLICT: fast for 50,000 rows,
        # and one statement means one NOTIFY for the running services.
        await conn.execute(f"CREATE TEMP TABLE _import (LIKE {table}) ON COMMIT DROP")
        await conn.copy_records_to_table("_import", records=records, columns=list(columns))
        await conn.execute(_UPSERT[kind])
        removed = 0
        if replace:
            args = (now,) if kind in PEOPLE else ()
            status = await conn.execute(_REPLACE[kind], *args)
            removed = int(status.rsplit(" ", 1)[-1])  # "UPDATE n" / "DELETE n"
    return len(records), removed


async def retire(conn: asyncpg.Connection, kind: Kind, key: str) -> datetime:
    """Retire one salesperson (by code) or contact (by no.): they never match again, and
    their past entries keep their names. Returns when they were retired (earlier, if they
    already were); raises InputError when there is no such person."""
    table, column = _PERSON_KEY[kind]
    async with conn.transaction():
        when: datetime | None = await conn.fetchval(
            f"UPDATE {table} SET retired_at = coalesce(retired_at, now()) "
            f"WHERE {column} = $1 RETURNING retired_at",
            key,
        )
    if when is None:
        raise InputError(f"no {kind.removesuffix('s')} with {column} {key!r}")
    return when


async def _unknown_contacts(conn: asyncpg.Connection, rows: Sequence[Row], path: Path) -> list[str]:
    numbers = sorted({r.values["contact_no"] for r in rows})
    known = {
        r["no"] for r in await conn.fetch("SELECT no FROM contact WHERE no = ANY($1)", numbers)
    }
    return [
        f"{path}:{r.line}: unknown contact {r.values['contact_no']!r} (import contacts first)"
        for r in rows
        if r.values["contact_no"] not in known
    ]


async def export_csv(conn: asyncpg.Connection, directory: Path) -> list[Path]:
    """Write the four directory files into `directory` (created if missing), headers first.
    Salespersons and contacts, retired ones included, carry `status` and `retired_at`."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for kind in KINDS:
            table, columns = _TABLE[kind]
            rows = await conn.fetch(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(columns[:2])}"
            )
            path = directory / EXPORT_FILES[kind]
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                if kind in PEOPLE:
                    writer.writerow(HEADERS[kind] + STATUS_HEADERS)
                    writer.writerows(_person_cells(tuple(row)) for row in rows)
                else:
                    writer.writerow(HEADERS[kind])
                    writer.writerows(tuple(str(value) for value in row) for row in rows)
            written.append(path)
    return written


def _person_cells(row: tuple[Any, ...]) -> tuple[str, ...]:
    """A salesperson/contact row (retired_at last) as CSV cells, with its status."""
    *values, retired_at = row
    status = ("retired", retired_at.isoformat()) if retired_at is not None else ("active", "")
    return (*(str(v) for v in values), *status)
