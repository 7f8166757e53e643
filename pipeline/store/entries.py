"""The interaction log as people and integrations read it (issue 13). SQL only.

Newest first means `coalesce(interaction_at, '-infinity') DESC, entry_no DESC` (migration
0006 indexes exactly that key): an entry without a date sorts as the oldest, and entry_no
breaks ties. Pages are keyset pages: the cursor is the last row's key, base64url JSON, opaque
to clients; entries added while someone pages never shift a page, so the entries that
existed when paging began are each seen exactly once.

Followers (`entries_after`) read ascending entry numbers. A number is taken when its row is
inserted but becomes visible only at commit, so a lower number can appear after a higher
one; an entry is therefore shown only once every transaction still writing began after it
was created (see migration 0006), and a follower that remembers the highest number seen
misses nothing.

The operations questions (outcomes, failures, directory counts, access records) are in
`pipeline.store.operations` and re-exported here: the web layer reads one module.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from pipeline.errors import InputError
from pipeline.store.operations import (
    Contact,
    Decision,
    DirectoryCounts,
    Failed,
    OutcomeBucket,
    Salesperson,
    decision_record,
    directory_counts,
    failed_messages,
    get_contact,
    get_salesperson,
    outcome_counts,
    record_access,
)

__all__ = [
    "Contact",
    "Decision",
    "DirectoryCounts",
    "Entry",
    "EntryQuery",
    "Failed",
    "OutcomeBucket",
    "Page",
    "Salesperson",
    "StoredRef",
    "decision_record",
    "directory_counts",
    "entries_after",
    "failed_messages",
    "get_contact",
    "get_entry",
    "get_salesperson",
    "get_stored",
    "list_entries",
    "outcome_counts",
    "record_access",
]

#: The sort key of "newest first"; spelled exactly as migration 0006's indexes spell it.
SORT_AT = "coalesce(e.interaction_at, '-infinity'::timestamptz)"

_SELECT = """
SELECT e.entry_no, e.contact_no, coalesce(c.name, '') AS contact_name,
       e.contact_company_no, coalesce(co.name, '') AS contact_company_name,
       e.contact_alt_address_code, e.salesperson_code, coalesce(s.name, '') AS salesperson_name,
       e.information_flow, e.initiated_by, e.description, e.subject, e.interaction_at,
       e.interaction_template_code, e.cost_lcy, e.duration_min,
       m.id AS sm_id, m.internet_message_id, m.web_link, m.storage_item_id, m.mailbox
FROM interaction_log_entry e
JOIN stored_message m ON m.id = e.stored_message_id
LEFT JOIN contact c ON c.no = e.contact_no
LEFT JOIN contact co ON co.no = e.contact_company_no AND e.contact_company_no <> ''
LEFT JOIN salesperson s ON s.code = e.salesperson_code
"""


@dataclass(frozen=True, slots=True)
class StoredRef:
    """The stored copy of a logged message (storage_item_id is for fetching, never shown)."""

    id: int
    internet_message_id: str | None
    web_link: str | None
    storage_item_id: str | None
    mailbox: str


@dataclass(frozen=True, slots=True)
class Entry:
    entry_no: int
    contact_no: str
    contact_name: str
    contact_company_no: str
    contact_company_name: str
    contact_alt_address_code: str
    salesperson_code: str
    salesperson_name: str
    information_flow: str  # "outbound" | "inbound"
    initiated_by: str  # "us" | "them"
    description: str
    subject: str
    interaction_at: datetime | None
    template_code: str
    cost_lcy: Decimal
    duration_min: Decimal
    stored_message: StoredRef


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """Filters of a list; every one given must hold (None: no filter)."""

    contact_no: str | None = None
    #: The company's own entries and those of its persons (the entry's company at logging).
    company_no: str | None = None
    #: A contact's number, or text in its name (case-insensitive).
    contact: str | None = None
    salesperson_code: str | None = None
    direction: str | None = None  # "inbound" | "outbound"
    since: datetime | None = None  # interaction_at >= since
    until: datetime | None = None  # interaction_at < until
    #: Words in the subject; each must start a word of the subject (case-insensitive).
    q: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[Entry]
    next_cursor: str | None  # None: this was the last page


# --- cursors ---


def encode_cursor(entry: Entry) -> str:
    return cursor_at(entry.interaction_at, entry.entry_no)


def cursor_at(interaction_at: datetime | None, entry_no: int) -> str:
    """The cursor of the page after the entry with this key."""
    at = interaction_at.isoformat() if interaction_at else None
    raw = json.dumps({"at": at, "no": entry_no}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | None, int]:
    """(interaction_at, entry_no) of the last row of the previous page; InputError if bad."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        at, no = data["at"], data["no"]
        if not isinstance(no, int) or isinstance(no, bool) or not (at is None or at):
            raise ValueError("bad key")
        parsed = datetime.fromisoformat(at) if at is not None else None
        if parsed is not None and parsed.tzinfo is None:
            raise ValueError("no time zone")
        return parsed, no
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError) as exc:
        raise InputError("cursor: not a cursor this API returned") from exc


# --- the queries ---


class _Where:
    """WHERE clauses with numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    def sql(self) -> str:
        return "WHERE " + " AND ".join(self.clauses) if self.clauses else ""


def _filters(query: EntryQuery, subject: _SubjectSearch | None) -> _Where:
    w = _Where()
    if query.contact_no is not None:
        w.add(f"e.contact_no = {w.param(query.contact_no)}")
    if query.company_no is not None:
        p = w.param(query.company_no)
        w.add(f"(e.contact_company_no = {p} OR e.contact_no = {p})")
    if query.contact is not None:
        p = w.param(query.contact)
        # Number or name: the directory is small (tens of thousands), a scan of it is cheap.
        w.add(
            "e.contact_no IN (SELECT no FROM contact "
            f"WHERE no = {p} OR name ILIKE '%' || {_like_escaped(p)} || '%' ESCAPE '\\')"
        )
    if query.salesperson_code is not None:
        w.add(f"e.salesperson_code = {w.param(query.salesperson_code)}")
    if query.direction is not None:
        w.add(f"e.information_flow = {w.param(query.direction)}")
    if query.since is not None:
        w.add(f"{SORT_AT} >= {w.param(query.since)}")
    if query.until is not None:
        # An entry without a date sorts as -infinity but is in no date range.
        w.add(f"{SORT_AT} < {w.param(query.until)} AND {SORT_AT} > '-infinity'::timestamptz")
    if subject is not None and subject.hits is not None:
        # Few hits, already taken from the word index: sort them.
        w.add(f"e.entry_no = ANY({w.param(subject.hits)}::bigint[])")
    elif subject is not None:
        # Many: walk newest first and test each row until the page is full; `|| ''` keeps
        # the planner off the word index, whose bitmap would hold every hit.
        w.add(
            f"to_tsvector('simple', e.subject::text || '') @@ {w.param(subject.tsquery)}::tsquery"
        )
    return w


def _like_escaped(param: str) -> str:
    return f"replace(replace(replace({param}, '\\', '\\\\'), '%', '\\%'), '_', '\\_')"


#: Text -> a tsquery of its words as prefixes, all required. The words are split by the
#: parser that indexed the subjects ('simple'), so "e-mail" or "PO-1234" split alike.
_SUBJECT_QUERY = """
SELECT coalesce(to_tsquery('simple', string_agg(quote_literal(w) || ':*', ' & ')), '')::text
FROM unnest(tsvector_to_array(to_tsvector('simple', $1::text))) AS w
"""
#: Up to this many hits a search takes them all from the word index and sorts them; above,
#: it walks the log newest first, testing each row (about entries / FEW_HITS rows per hit
#: on the page). Both cost about the same at this size for 1,000,000 entries. The planner
#: cannot choose itself: its estimates for prefixes and rare words are guesses.
FEW_HITS = 5000
_HITS = """
SELECT entry_no FROM interaction_log_entry
WHERE to_tsvector('simple', subject) @@ $1::tsquery LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class _SubjectSearch:
    tsquery: str
    hits: list[int] | None  # None: more than FEW_HITS


async def _subject_search(conn: asyncpg.Connection, text: str) -> _SubjectSearch:
    tsquery = str(await conn.fetchval(_SUBJECT_QUERY, text))
    if not tsquery:
        return _SubjectSearch(tsquery, [])
    rows = await conn.fetch(_HITS, tsquery, FEW_HITS)
    return _SubjectSearch(tsquery, [r[0] for r in rows] if len(rows) < FEW_HITS else None)


async def list_entries(
    pool: asyncpg.Pool, query: EntryQuery, *, limit: int, cursor: str | None = None
) -> Page:
    """One page, newest first; `cursor` is a previous page's next_cursor (InputError if bad)."""
    key = decode_cursor(cursor) if cursor is not None else None
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        subject = await _subject_search(conn, query.q) if query.q is not None else None
        # Plan with the values (prepared statements would fall back to a generic plan
        # after five runs, blind to which contact or how rare a word is).
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await conn.fetch(*_page_sql(_filters(query, subject), key, limit))
    entries = [_entry(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(entries, encode_cursor(entries[-1]) if more and entries else None)


def _page_sql(w: _Where, key: tuple[datetime | None, int] | None, limit: int) -> tuple[Any, ...]:
    if key is not None:
        at, no = key
        after = f"coalesce({w.param(at)}::timestamptz, '-infinity'::timestamptz)"
        w.add(f"({SORT_AT}, e.entry_no) < ({after}, {w.param(no)})")
    sql = f"{_SELECT} {w.sql()} ORDER BY {SORT_AT} DESC, e.entry_no DESC LIMIT {w.param(limit + 1)}"
    return (sql, *w.args)


async def entries_after(pool: asyncpg.Pool, after_entry_no: int, *, limit: int) -> list[Entry]:
    """Entries numbered above `after_entry_no`, ascending, that no open write can precede."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"""{_SELECT}
            WHERE e.entry_no > $1 AND e.created_at < coalesce(
                (SELECT min(xact_start) FROM pg_stat_activity
                 WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
                   AND datname = current_database() AND backend_type = 'client backend'),
                'infinity'::timestamptz)
            ORDER BY e.entry_no LIMIT $2""",
            after_entry_no,
            limit,
        )
    return [_entry(r) for r in rows]


async def get_entry(pool: asyncpg.Pool, entry_no: int) -> Entry | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"{_SELECT} WHERE e.entry_no = $1", entry_no)
    return _entry(row) if row else None


async def get_stored(pool: asyncpg.Pool, stored_message_id: int) -> StoredRef | None:
    """A stored message that has entries (a claim never linked has none to show)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT id AS sm_id, internet_message_id, web_link, storage_item_id, mailbox
               FROM stored_message m WHERE id = $1
               AND EXISTS (SELECT FROM interaction_log_entry e WHERE e.stored_message_id = m.id)""",
            stored_message_id,
        )
    return _stored(row) if row else None


async def entries_of_stored(pool: asyncpg.Pool, stored_message_id: int) -> list[Entry]:
    """Every entry one stored message produced (one per contact and salesperson)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"{_SELECT} WHERE e.stored_message_id = $1 ORDER BY e.entry_no", stored_message_id
        )
    return [_entry(r) for r in rows]


def _stored(r: asyncpg.Record) -> StoredRef:
    return StoredRef(
        id=r["sm_id"],
        internet_message_id=r["internet_message_id"],
        web_link=r["web_link"],
        storage_item_id=r["storage_item_id"],
        mailbox=r["mailbox"],
    )


def _entry(r: asyncpg.Record) -> Entry:
    return Entry(
        entry_no=r["entry_no"],
        contact_no=r["contact_no"],
        contact_name=r["contact_name"],
        contact_company_no=r["contact_company_no"],
        contact_company_name=r["contact_company_name"],
        contact_alt_address_code=r["contact_alt_address_code"],
        salesperson_code=r["salesperson_code"],
        salesperson_name=r["salesperson_name"],
        information_flow=r["information_flow"],
        initiated_by=r["initiated_by"],
        description=r["description"],
        subject=r["subject"],
        interaction_at=r["interaction_at"],
        template_code=r["interaction_template_code"],
        cost_lcy=r["cost_lcy"],
        duration_min=r["duration_min"],
        stored_message=_stored(r),
    )
