"""The directory tables: load them into a `Directory`, watch them, import and export CSV.

A running service holds a `DirectoryWatcher`: it LISTENs on `emaillog_directory` (the
triggers of migration 0001 notify once per changing statement) and swaps in a freshly built
`Directory`. Bursts of notifications (an import touches four tables) are debounced into one
reload. LISTEN is registered *before* the first load, so no change can fall between the two.

CSV import is one transaction per file: a file is either fully imported or not at all. Every
bad row is reported with file, line and reason before anything is written.
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import asyncpg

from pipeline.directory import (
    CONTACT_TYPES,
    AltAddress,
    Contact,
    ContactType,
    Directory,
    Salesperson,
    Template,
)
from pipeline.errors import DatabaseUnavailable, InputError
from pipeline.logs import get_logger
from pipeline.model import MAX_ADDRESS_CHARS
from pipeline.store.db import Database, connect

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

Kind = Literal["salespersons", "contacts", "alt_addresses", "templates"]
#: Import order matters: alt. addresses refer to contacts.
KINDS: tuple[Kind, ...] = ("salespersons", "contacts", "alt_addresses", "templates")
#: File names written by `export_csv` (the same names `directory import` options suggest).
EXPORT_FILES: dict[Kind, str] = {
    "salespersons": "salespersons.csv",
    "contacts": "contacts.csv",
    "alt_addresses": "alt-addresses.csv",
    "templates": "templates.csv",
}
HEADERS: dict[Kind, tuple[str, ...]] = {
    "salespersons": ("code", "name", "email"),
    "contacts": ("no", "name", "type", "company_no", "email"),
    "alt_addresses": ("contact_no", "code", "email"),
    "templates": ("code", "description", "group_code", "unit_cost", "unit_duration_min"),
}
#: Errors listed in one InputError before "and N more" (a wrong file can have 50,000).
MAX_REPORTED_ERRORS = 20

# A bare address: no spaces, brackets, commas or quotes; one '@' with text on both sides.
_BARE_ADDRESS = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\]+$")


def contact_type(value: str) -> ContactType:
    """Narrow a stored type to the Literal (the table's CHECK guarantees one of the two)."""
    return "company" if value == "company" else "person"


# --- loading -------------------------------------------------------------------------------


async def load_directory(conn: asyncpg.Connection) -> Directory:
    """Read the four tables (in one snapshot) and build the index."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        sp = await conn.fetch("SELECT code, name, email FROM salesperson")
        ct = await conn.fetch("SELECT no, name, type, company_no, email FROM contact")
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


# --- CSV import / export --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    values: dict[str, str]


def read_csv(kind: Kind, path: Path) -> list[_Row]:
    """The rows of a directory CSV, header checked; `line` is the row's first physical line."""
    expected = HEADERS[kind]
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}:1: empty file (expected header {','.join(expected)})")
            names = tuple(h.strip().lower() for h in header)
            if sorted(names) != sorted(expected):
                raise InputError(
                    f"{path}:1: wrong header {','.join(names)!r}; expected {','.join(expected)}"
                )
            rows: list[_Row] = []
            line = reader.line_num + 1
            for record in reader:
                if any(cell.strip() for cell in record):
                    if len(record) != len(names):
                        raise InputError(
                            f"{path}:{line}: expected {len(names)} fields, got {len(record)}"
                        )
                    values = {n: c.strip() for n, c in zip(names, record, strict=True)}
                    rows.append(_Row(line, values))
                line = reader.line_num + 1
            return rows
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: not valid CSV: {exc}") from exc


def _check_email(email: str) -> str | None:
    """Why `email` is not acceptable in the directory, or None (empty is allowed: no address)."""
    if not email:
        return None
    if len(email) > MAX_ADDRESS_CHARS:
        return f"email is {len(email)} characters, longer than {MAX_ADDRESS_CHARS}"
    if not _BARE_ADDRESS.match(email):
        return f"email {email!r} is not a bare address like name@example.com"
    return None


def _check_code(value: str, field: str, max_chars: int) -> str | None:
    if not value:
        return f"empty {field}"
    if len(value) > max_chars:
        return f"{field} {value!r} is longer than {max_chars} characters"
    return None


def _decimal(value: str, field: str) -> tuple[Decimal, str | None]:
    if not value:
        return Decimal(0), None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return Decimal(0), f"{field} {value!r} is not a number"
    if not number.is_finite() or abs(number) >= Decimal(10) ** 16:
        return Decimal(0), f"{field} {value!r} is out of range"
    return number, None


def _validate(
    kind: Kind, rows: Sequence[_Row], path: Path
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The records to write and every problem found (as 'file:line: reason')."""
    records: list[tuple[Any, ...]] = []
    problems: list[str] = []
    first_line: dict[tuple[str, ...], int] = {}
    for row in rows:
        v = row.values
        errors: list[str | None] = []
        record: tuple[Any, ...]
        if kind == "salespersons":
            key: tuple[str, ...] = (v["code"],)
            errors += [_check_code(v["code"], "code", 20), _check_email(v["email"])]
            record = (v["code"], v["name"], v["email"])
        elif kind == "contacts":
            key = (v["no"],)
            kind_value = (v["type"] or "person").lower()
            errors += [
                _check_code(v["no"], "no", 20),
                None if len(v["company_no"]) <= 20 else "company_no is longer than 20 characters",
                _check_email(v["email"]),
                None
                if kind_value in CONTACT_TYPES
                else f"unknown type {v['type']!r} (expected person or company)",
            ]
            record = (v["no"], v["name"], kind_value, v["company_no"], v["email"])
        elif kind == "alt_addresses":
            key = (v["contact_no"], v["code"])
            errors += [
                _check_code(v["contact_no"], "contact_no", 20),
                _check_code(v["code"], "code", 10),
                _check_email(v["email"]),
            ]
            record = (v["contact_no"], v["code"], v["email"])
        else:
            key = (v["code"],)
            cost, cost_error = _decimal(v["unit_cost"], "unit_cost")
            duration, duration_error = _decimal(v["unit_duration_min"], "unit_duration_min")
            errors += [_check_code(v["code"], "code", 10), cost_error, duration_error]
            record = (v["code"], v["description"], v["group_code"], cost, duration)
        if all(key) and key in first_line:
            errors.append(f"duplicate key {'/'.join(key)} (first on line {first_line[key]})")
        first_line.setdefault(key, row.line)
        problems += [f"{path}:{row.line}: {e}" for e in errors if e]
        records.append(record)
    return records, problems


_UPSERT: dict[Kind, str] = {
    "salespersons": """
        INSERT INTO salesperson (code, name, email) SELECT code, name, email FROM _import
        ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email""",
    "contacts": """
        INSERT INTO contact (no, name, type, company_no, email)
        SELECT no, name, type, company_no, email FROM _import
        ON CONFLICT (no) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type,
            company_no = EXCLUDED.company_no, email = EXCLUDED.email""",
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
_TABLE: dict[Kind, tuple[str, tuple[str, ...]]] = {
    "salespersons": ("salesperson", ("code", "name", "email")),
    "contacts": ("contact", ("no", "name", "type", "company_no", "email")),
    "alt_addresses": ("contact_alt_address", ("contact_no", "code", "email")),
    "templates": (
        "interaction_template",
        ("code", "description", "interaction_group_code", "unit_cost", "unit_duration_min"),
    ),
}


async def import_csv(conn: asyncpg.Connection, kind: Kind, path: Path) -> int:
    """Upsert every row of `path` by key, in one transaction; return the number of rows.

    Raises InputError (naming file, line and reason for up to 20 rows) and writes nothing
    when any row is bad.
    """
    rows = read_csv(kind, path)
    records, problems = _validate(kind, rows, path)
    async with conn.transaction():
        if kind == "alt_addresses" and not problems:
            problems += await _unknown_contacts(conn, rows, path)
        if problems:
            more = len(problems) - MAX_REPORTED_ERRORS
            shown = problems[:MAX_REPORTED_ERRORS]
            if more > 0:
                shown.append(f"{path}: ... and {more} more problems; nothing of this file imported")
            else:
                shown.append(f"{path}: nothing of this file imported")
            raise InputError("\n".join(shown))
        table, columns = _TABLE[kind]
        # COPY into a temporary table, then one INSERT ... ON CONFLICT: fast for 50,000 rows,
        # and one statement means one NOTIFY for the running services.
        await conn.execute(f"CREATE TEMP TABLE _import (LIKE {table}) ON COMMIT DROP")
        await conn.copy_records_to_table("_import", records=records, columns=list(columns))
        await conn.execute(_UPSERT[kind])
    return len(records)


async def _unknown_contacts(
    conn: asyncpg.Connection, rows: Sequence[_Row], path: Path
) -> list[str]:
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
    """Write the four directory files into `directory` (created if missing), headers first."""
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
                writer.writerow(HEADERS[kind])
                writer.writerows(tuple(str(value) for value in row) for row in rows)
            written.append(path)
    return written
