"""The directory's CSV files: their columns, reading them, checking every row. No SQL.

`store.directory_repo` writes what `validate` returns (one transaction per file) and
exports the tables in the same format. Salespersons and contacts carry two optional
columns, written by `export` and read back by `import`: `status` (`active` or `retired`)
and `retired_at` (ISO 8601; a row marked retired without it is retired now). Importing a
row with an empty status makes that person active again.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from pipeline.directory import CONTACT_TYPES
from pipeline.errors import InputError
from pipeline.model import MAX_ADDRESS_CHARS

Kind = Literal["salespersons", "contacts", "alt_addresses", "templates"]
#: Import order matters: alt. addresses refer to contacts.
KINDS: tuple[Kind, ...] = ("salespersons", "contacts", "alt_addresses", "templates")
#: The kinds that are people: retired (never deleted) when they leave the directory.
PEOPLE: tuple[Kind, ...] = ("salespersons", "contacts")
#: File names written by `export_csv` (the same names `directory import` options suggest).
EXPORT_FILES: dict[Kind, str] = {
    "salespersons": "salespersons.csv",
    "contacts": "contacts.csv",
    "alt_addresses": "alt-addresses.csv",
    "templates": "templates.csv",
}
#: The columns every file of a kind must have (in any order).
HEADERS: dict[Kind, tuple[str, ...]] = {
    "salespersons": ("code", "name", "email"),
    "contacts": ("no", "name", "type", "company_no", "email"),
    "alt_addresses": ("contact_no", "code", "email"),
    "templates": ("code", "description", "group_code", "unit_cost", "unit_duration_min"),
}
#: Columns a file may have besides HEADERS (export writes them).
STATUS_HEADERS = ("status", "retired_at")
OPTIONAL_HEADERS: dict[Kind, tuple[str, ...]] = {
    kind: STATUS_HEADERS if kind in PEOPLE else () for kind in KINDS
}
#: Errors listed in one InputError before "and N more" (a wrong file can have 50,000).
MAX_REPORTED_ERRORS = 20

# A bare address: no spaces, brackets, commas or quotes; one '@' with text on both sides.
_BARE_ADDRESS = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\]+$")


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    values: dict[str, str]


def read_csv(kind: Kind, path: Path) -> list[Row]:
    """The rows of a directory CSV, header checked; `line` is the row's first physical line."""
    expected = HEADERS[kind]
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}:1: empty file (expected header {','.join(expected)})")
            names = tuple(h.strip().lower() for h in header)
            allowed = set(expected) | set(OPTIONAL_HEADERS[kind])
            if not set(expected) <= set(names) <= allowed or len(set(names)) != len(names):
                raise InputError(
                    f"{path}:1: wrong header {','.join(names)!r}; expected {','.join(expected)}"
                    + (f" (optional: {','.join(OPTIONAL_HEADERS[kind])})" if kind in PEOPLE else "")
                )
            rows: list[Row] = []
            line = reader.line_num + 1
            for record in reader:
                if any(cell.strip() for cell in record):
                    if len(record) != len(names):
                        raise InputError(
                            f"{path}:{line}: expected {len(names)} fields, got {len(record)}"
                        )
                    values = {n: c.strip() for n, c in zip(names, record, strict=True)}
                    rows.append(Row(line, values))
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


def validate(
    kind: Kind, rows: Sequence[Row], path: Path, now: datetime
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The records to write (in the order of the table's columns) and every problem found (as
    'file:line: reason'). `now` is the retirement time of a row marked retired without one."""
    records: list[tuple[Any, ...]] = []
    problems: list[str] = []
    first_line: dict[tuple[str, ...], int] = {}
    for row in rows:
        v = row.values
        errors: list[str | None] = []
        record: tuple[Any, ...]
        if kind == "salespersons":
            key: tuple[str, ...] = (v["code"],)
            retired_at, retired_error = _retired_at(v, now)
            errors += [_check_code(v["code"], "code", 20), _check_email(v["email"]), retired_error]
            record = (v["code"], v["name"], v["email"], retired_at)
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
            retired_at, retired_error = _retired_at(v, now)
            errors.append(retired_error)
            record = (v["no"], v["name"], kind_value, v["company_no"], v["email"], retired_at)
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


def _retired_at(values: dict[str, str], now: datetime) -> tuple[datetime | None, str | None]:
    """A person's retirement time from the optional columns (None: active), or a problem."""
    status = values.get("status", "").lower()
    stamp = values.get("retired_at", "")
    if status not in ("", "active", "retired"):
        return None, f"unknown status {values['status']!r} (expected active or retired)"
    if status == "active" or (status == "" and not stamp):
        return None, None
    if not stamp:
        return now, None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None, f"retired_at {stamp!r} is not an ISO 8601 time"
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), None


def report(problems: list[str], path: Path) -> str:
    """The text of the InputError for `problems` (the first MAX_REPORTED_ERRORS of them)."""
    more = len(problems) - MAX_REPORTED_ERRORS
    shown = problems[:MAX_REPORTED_ERRORS]
    if more > 0:
        shown.append(f"{path}: ... and {more} more problems; nothing of this file imported")
    else:
        shown.append(f"{path}: nothing of this file imported")
    return "\n".join(shown)
