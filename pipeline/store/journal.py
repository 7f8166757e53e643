"""The journal's SQL (GUIDE section 4). SQL only: what to do is decided elsewhere.

The database is the journal. `pipeline.claims` plans, for one batch of classified queue
messages, what the journal must do (keep an earlier decision, record, claim, resume, or
call it a duplicate) from the facts read here (`earlier_disposals`, `existing_claims`); the
dedupe stage runs that plan with `insert_claims` and the accounting path
(`pipeline.ledger`) records disposals with `insert_disposals`, all in one transaction.
After the move to storage, `mark_stored` records the storage link (with the 'logged'
disposal row, again through the ledger). Nothing here talks to the mail server, reads the
clock or decides anything.

    disposal_log    one row per queue message disposed of (or failed); unique per queue
                    item except 'failed', so recording is idempotent (ON CONFLICT DO NOTHING)
    stored_message  one row per logged message: 'moving' once claimed, 'stored' once linked
    interaction_log_entry  the entries, written with the claim
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pipeline.directory import Template
from pipeline.errors import DatabaseUnavailable, Retryable, describe
from pipeline.model import Candidate, Decision, Existing, Outcome

#: Errors that mean "PostgreSQL is not there right now" (restart, failover, network): the
#: runner pauses and retries these without limit, because no message is at fault.
DATABASE_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, socket gone (includes ConnectionError)
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now
    asyncpg.exceptions.ConnectionDoesNotExistError,  # the connection died mid-query
    asyncpg.exceptions.InternalClientError,
)
_CLOSED_CONNECTION_SIGNS = ("closed", "closing", "released back to the pool")


@contextmanager
def database_errors() -> Iterator[None]:
    """Translate asyncpg's outage and conflict errors into the service's exception tree."""
    try:
        yield
    except DATABASE_OUTAGE_ERRORS as exc:
        raise DatabaseUnavailable(f"database unavailable: {describe(exc)}") from exc
    except asyncpg.exceptions.TransactionRollbackError as exc:  # deadlock, serialization
        raise Retryable(f"database transaction conflict: {type(exc).__name__}") from exc
    except asyncpg.exceptions.InterfaceError as exc:
        # A connection the server dropped is closed (or detached from its pool proxy) under
        # us; asyncpg says so only in the message. Other InterfaceErrors are bugs: re-raise.
        if any(sign in str(exc) for sign in _CLOSED_CONNECTION_SIGNS):
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
        raise


@dataclass(frozen=True, slots=True)
class DisposalRow:
    """One disposal_log row: how one queue message ended (or failed)."""

    queue_item_id: str | None
    outcome: Outcome
    rule: str
    message_id_hash: str
    stored_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class StorageLink:
    """A logged message now in storage: what `mark_stored` records."""

    stored_message_id: int
    queue_item_id: str | None
    storage_item_id: str | None
    web_link: str | None
    rule: str
    message_id_hash: str


@dataclass(frozen=True, slots=True)
class MovingRow:
    """A stored_message left in state 'moving' (for the reconciler)."""

    id: int
    message_key: str
    internet_message_id: str | None
    queue_item_id: str | None
    created_at: datetime


async def earlier_disposals(
    conn: asyncpg.Connection, *, mailbox: str, queue_item_ids: Sequence[str]
) -> dict[str, Decision]:
    """The committed non-failed decision of each queue item that has one."""
    rows = await conn.fetch(
        """SELECT queue_item_id, outcome, rule FROM disposal_log
           WHERE mailbox = $1 AND queue_item_id = ANY($2::text[]) AND outcome <> 'failed'""",
        mailbox,
        list(queue_item_ids),
    )
    return {r["queue_item_id"]: Decision(Outcome(r["outcome"]), r["rule"]) for r in rows}


async def existing_claims(
    conn: asyncpg.Connection, *, mailbox: str, keys: Sequence[str]
) -> dict[str, Existing]:
    """The stored_message rows that hold any of these message keys."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT id, message_key, state, queue_item_id FROM stored_message
           WHERE mailbox = $1 AND message_key = ANY($2::text[])""",
        mailbox,
        list(set(keys)),
    )
    return {r["message_key"]: Existing(r["id"], r["state"], r["queue_item_id"]) for r in rows}


async def insert_claims(
    conn: asyncpg.Connection, *, mailbox: str, cands: Sequence[Candidate], template: Template
) -> list[tuple[int, int] | None]:
    """Insert stored_message rows (state 'moving') and their entries.

    Per candidate: (stored_message_id, entries inserted), or None where the key was already
    taken (by a concurrent transaction: the caller calls that a duplicate)."""
    if not cands:
        return []
    # Insert in key order: two concurrent batches holding the same keys then lock them in
    # the same order and cannot deadlock.
    rows = await conn.fetch(
        """INSERT INTO stored_message
               (mailbox, message_key, internet_message_id, content_hash, queue_item_id)
           SELECT $1::text, k, m, h, q FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
                AS t(k, m, h, q)
           ORDER BY k
           ON CONFLICT (mailbox, message_key) DO NOTHING
           RETURNING id, message_key""",
        mailbox,
        [c.mail.dedupe_key for c in cands],
        [c.mail.message_id for c in cands],
        [c.mail.content_hash for c in cands],
        [c.queue_item_id for c in cands],
    )
    ids = {r["message_key"]: r["id"] for r in rows}
    written = await _insert_entries(conn, ids, cands, template)
    out: list[tuple[int, int] | None] = []
    for c in cands:
        sid = ids.get(c.mail.dedupe_key)
        out.append(None if sid is None else (sid, written.get(sid, 0)))
    return out


async def _insert_entries(
    conn: asyncpg.Connection,
    ids: dict[str, int],
    cands: Sequence[Candidate],
    template: Template,
) -> dict[int, int]:
    """The entries of the claimed messages (`ids`: key -> stored_message id); per stored
    message, how many were inserted."""
    entry_rows = [
        (ids[c.mail.dedupe_key], c, e)
        for c in cands
        if c.mail.dedupe_key in ids
        for e in c.decision.entries
    ]
    written: dict[int, int] = {}
    if entry_rows:
        inserted = await conn.fetch(
            """INSERT INTO interaction_log_entry
                   (stored_message_id, contact_no, contact_company_no, contact_alt_address_code,
                    salesperson_code, information_flow, initiated_by, interaction_at,
                    description, subject, interaction_template_code, interaction_group_code,
                    cost_lcy, duration_min)
               SELECT s, c, cc, alt, sp, flow, ini, at, d, subj,
                      $1::text, $2::text, $3::numeric, $4::numeric
               FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[],
                           $10::text[], $11::text[], $12::timestamptz[], $13::text[], $14::text[])
                    AS t(s, c, cc, alt, sp, flow, ini, at, d, subj)
               ON CONFLICT (stored_message_id, contact_no, salesperson_code) DO NOTHING
               RETURNING stored_message_id""",
            template.code,
            template.group_code,
            template.unit_cost,
            template.unit_duration_min,
            [sid for sid, _, _ in entry_rows],
            [e.contact_no for _, _, e in entry_rows],
            [e.contact_company_no for _, _, e in entry_rows],
            [e.contact_alt_address_code for _, _, e in entry_rows],
            [e.salesperson_code for _, _, e in entry_rows],
            [e.information_flow.value for _, _, e in entry_rows],
            [e.initiated_by.value for _, _, e in entry_rows],
            [e.interaction_at for _, _, e in entry_rows],
            [e.description[:100] for _, _, e in entry_rows],
            [c.mail.subject[:100] for _, c, _ in entry_rows],
        )
        for r in inserted:
            written[r["stored_message_id"]] = written.get(r["stored_message_id"], 0) + 1
    return written


async def insert_disposals(
    conn: asyncpg.Connection, *, mailbox: str, rows: Sequence[DisposalRow]
) -> list[bool]:
    """Insert disposal_log rows; per row, True where this call inserted it.

    ON CONFLICT DO NOTHING: a queue item already disposed of keeps its first row, so
    recording is idempotent across retries and restarts ('failed' rows never conflict).
    Only the accounting path (`pipeline.ledger`) calls this: it counts what was inserted.
    """
    if not rows:
        return []
    inserted = await conn.fetch(
        """INSERT INTO disposal_log
               (mailbox, queue_item_id, outcome, rule, message_id_hash, stored_message_id)
           SELECT $1::text, q, o, r, h, s
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                AS t(q, o, r, h, s)
           ORDER BY q  -- one lock order for concurrent batches: no deadlock
           ON CONFLICT DO NOTHING
           RETURNING queue_item_id, stored_message_id""",
        mailbox,
        [row.queue_item_id for row in rows],
        [row.outcome.value for row in rows],
        [row.rule for row in rows],
        [row.message_id_hash for row in rows],
        [row.stored_message_id for row in rows],
    )
    new = {(r["queue_item_id"], r["stored_message_id"]) for r in inserted}
    return [(row.queue_item_id, row.stored_message_id) in new for row in rows]


async def mark_stored(conn: asyncpg.Connection, *, links: Sequence[StorageLink]) -> None:
    """Record where logged messages went: state 'stored'. A row already 'stored' keeps its
    first storage link (the reconciler and the pipeline may both finish it)."""
    if not links:
        return
    await conn.execute(
        """UPDATE stored_message AS s
           SET storage_item_id = t.item, web_link = t.link, state = 'stored', updated_at = now()
           FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(id, item, link)
           WHERE s.id = t.id AND s.state = 'moving'""",
        [link.stored_message_id for link in links],
        [link.storage_item_id for link in links],
        [link.web_link for link in links],
    )


async def moving_rows(conn: asyncpg.Connection, *, mailbox: str, limit: int) -> list[MovingRow]:
    """The oldest rows still in state 'moving' (claimed, not yet known to be in storage)."""
    rows = await conn.fetch(
        """SELECT id, message_key, internet_message_id, queue_item_id, created_at
           FROM stored_message WHERE mailbox = $1 AND state = 'moving'
           ORDER BY created_at LIMIT $2""",
        mailbox,
        limit,
    )
    return [
        MovingRow(
            r["id"], r["message_key"], r["internet_message_id"], r["queue_item_id"], r["created_at"]
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class UnlinkedRow:
    """A stored message whose storage item id or web link is not known yet (a move into a
    public folder returns no id; a lookup after the move failed)."""

    id: int
    message_key: str
    internet_message_id: str | None
    storage_item_id: str | None


async def unlinked_rows(conn: asyncpg.Connection, *, mailbox: str, limit: int) -> list[UnlinkedRow]:
    """Stored messages missing their storage item id or web link, least recently tried first."""
    rows = await conn.fetch(
        """SELECT id, message_key, internet_message_id, storage_item_id FROM stored_message
           WHERE mailbox = $1 AND state = 'stored'
             AND (storage_item_id IS NULL OR web_link IS NULL)
           ORDER BY updated_at LIMIT $2""",
        mailbox,
        limit,
    )
    return [
        UnlinkedRow(r["id"], r["message_key"], r["internet_message_id"], r["storage_item_id"])
        for r in rows
    ]


async def fill_link(
    conn: asyncpg.Connection,
    *,
    stored_message_id: int,
    storage_item_id: str | None,
    web_link: str | None,
) -> None:
    """Fill what is missing of a stored message's link (never overwrites); a row nothing
    was found for only moves to the back of `unlinked_rows`."""
    await conn.execute(
        """UPDATE stored_message
           SET storage_item_id = COALESCE(storage_item_id, $2),
               web_link = COALESCE(web_link, $3), updated_at = now()
           WHERE id = $1 AND state = 'stored'""",
        stored_message_id,
        storage_item_id,
        web_link,
    )
