"""The journal: the SQL that makes logging exactly-once (GUIDE section 4).

The database is the journal. For one batch of classified queue messages, in ONE transaction
(`record_decisions`):

1. A queue item that already has a (non-failed) disposal_log row was decided before a crash
   or restart; that committed decision stands, so what is deleted always matches the log.
2. Messages eligible for rule 3 (logged, address_too_long, unregistered) are looked up by
   (mailbox, message_key). A 'stored' row, or a 'moving' row of ANOTHER queue item, makes the
   message a duplicate. A 'moving' row of the SAME queue item is our own claim from before a
   crash: it is resumed (moved and marked stored), never inserted again.
3. Logged messages are claimed: the stored_message row (state 'moving') and its entries are
   inserted. The unique key is the final guard: a conflict (a second copy of a Message-ID in
   this batch, or a concurrent transaction) turns the later one into a duplicate.
4. Every non-logged decision is recorded in disposal_log BEFORE the queue item is deleted,
   ON CONFLICT DO NOTHING, so recording is idempotent and `newly_recorded` says whether this
   call wrote the row (metrics count only those, so they agree with the log).

After the move to storage, `mark_stored` records the storage link and the 'logged' row of
disposal_log in one transaction. Nothing here talks to the mail server or reads the clock.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pipeline.directory import Template
from pipeline.errors import DatabaseUnavailable, Retryable
from pipeline.model import Decision, Mail, Outcome
from pipeline.rules import DUPLICATE_ELIGIBLE, mark_duplicate

#: Hex digits of sha256 kept in disposal_log and logs: enough to trace, too few to be an id.
MESSAGE_ID_HASH_CHARS = 16

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
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc
    except asyncpg.exceptions.TransactionRollbackError as exc:  # deadlock, serialization
        raise Retryable(f"database transaction conflict: {type(exc).__name__}") from exc
    except asyncpg.exceptions.InterfaceError as exc:
        # A connection the server dropped is closed (or detached from its pool proxy) under
        # us; asyncpg says so only in the message. Other InterfaceErrors are bugs: re-raise.
        if any(sign in str(exc) for sign in _CLOSED_CONNECTION_SIGNS):
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
        raise


def message_id_hash(mail: Mail) -> str:
    """A short sha256 of the message's dedupe key: traceable, not reversible to an address."""
    return hash_key(mail.dedupe_key)


def hash_key(message_key: str) -> str:
    digest = hashlib.sha256(message_key.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:MESSAGE_ID_HASH_CHARS]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One classified queue message, as the rules decided it (before rule 3 is applied)."""

    queue_item_id: str
    mail: Mail
    decision: Decision


class Claim(enum.Enum):
    """What the journal did about the stored_message row of one candidate."""

    NONE = "none"  # not logged: no row
    NEW = "new"  # row and entries inserted now
    RESUMED = "resumed"  # our own 'moving' row from before a crash: move it, insert nothing


@dataclass(frozen=True, slots=True)
class Recorded:
    """The committed verdict for one candidate, in input order."""

    decision: Decision
    claim: Claim = Claim.NONE
    stored_message_id: int | None = None
    #: Entries inserted by this call (0 for a resumed claim).
    entries_written: int = 0
    #: True when this call inserted the disposal_log row (non-logged outcomes only).
    newly_recorded: bool = False


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


async def record_decisions(
    conn: asyncpg.Connection,
    *,
    mailbox: str,
    candidates: Sequence[Candidate],
    template: Template,
) -> list[Recorded]:
    """Apply rule 3, claim logged messages and record the others; call inside a transaction."""
    results: list[Recorded | None] = [None] * len(candidates)
    earlier = await _earlier_disposals(conn, mailbox, [c.queue_item_id for c in candidates])
    existing = await _existing_claims(
        conn,
        mailbox,
        [c.mail.dedupe_key for c in candidates if c.decision.outcome in DUPLICATE_ELIGIBLE],
    )

    to_claim: list[int] = []
    to_record: dict[int, Decision] = {}
    claimed_keys: set[str] = set()
    for i, cand in enumerate(candidates):
        decision = cand.decision
        prior = earlier.get(cand.queue_item_id)
        if prior is not None and prior.outcome is not Outcome.LOGGED:
            results[i] = Recorded(decision=prior)
            continue
        if decision.outcome not in DUPLICATE_ELIGIBLE:
            to_record[i] = decision
            continue
        key = cand.mail.dedupe_key
        row = existing.get(key)
        if row is not None:
            row_id, state, row_queue_item_id = row
            if state == "moving" and row_queue_item_id == cand.queue_item_id:
                resumed = Decision(Outcome.LOGGED, "resumed: claimed before a restart")
                results[i] = Recorded(resumed, Claim.RESUMED, stored_message_id=row_id)
            else:
                to_record[i] = mark_duplicate(decision)
        elif key in claimed_keys:
            to_record[i] = mark_duplicate(decision)
        elif decision.outcome is Outcome.LOGGED:
            claimed_keys.add(key)
            to_claim.append(i)
        else:
            to_record[i] = decision

    claimed = await _claim(conn, mailbox, [candidates[i] for i in to_claim], template)
    for i, claim in zip(to_claim, claimed, strict=True):
        if claim is None:  # lost to a concurrent transaction holding the same key
            to_record[i] = mark_duplicate(candidates[i].decision)
        else:
            stored_id, entries = claim
            results[i] = Recorded(candidates[i].decision, Claim.NEW, stored_id, entries)

    order = sorted(to_record)
    rows = [
        (candidates[i].queue_item_id, to_record[i], message_id_hash(candidates[i].mail))
        for i in order
    ]
    newly = await _record_disposals(conn, mailbox, rows)
    for i, new in zip(order, newly, strict=True):
        results[i] = Recorded(to_record[i], newly_recorded=new)

    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


async def _earlier_disposals(
    conn: asyncpg.Connection, mailbox: str, queue_item_ids: Sequence[str]
) -> dict[str, Decision]:
    rows = await conn.fetch(
        """SELECT queue_item_id, outcome, rule FROM disposal_log
           WHERE mailbox = $1 AND queue_item_id = ANY($2::text[]) AND outcome <> 'failed'""",
        mailbox,
        list(queue_item_ids),
    )
    return {r["queue_item_id"]: Decision(Outcome(r["outcome"]), r["rule"]) for r in rows}


async def _existing_claims(
    conn: asyncpg.Connection, mailbox: str, keys: Sequence[str]
) -> dict[str, tuple[int, str, str | None]]:
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT id, message_key, state, queue_item_id FROM stored_message
           WHERE mailbox = $1 AND message_key = ANY($2::text[])""",
        mailbox,
        list(set(keys)),
    )
    return {r["message_key"]: (r["id"], r["state"], r["queue_item_id"]) for r in rows}


async def _claim(
    conn: asyncpg.Connection, mailbox: str, cands: Sequence[Candidate], template: Template
) -> list[tuple[int, int] | None]:
    """Insert stored_message rows (and their entries); None where the key was taken."""
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
    out: list[tuple[int, int] | None] = []
    for c in cands:
        sid = ids.get(c.mail.dedupe_key)
        out.append(None if sid is None else (sid, written.get(sid, 0)))
    return out


async def _record_disposals(
    conn: asyncpg.Connection, mailbox: str, rows: Sequence[tuple[str, Decision, str]]
) -> list[bool]:
    """Insert non-logged disposal_log rows; True where this call inserted the row."""
    if not rows:
        return []
    inserted = await conn.fetch(
        """INSERT INTO disposal_log (mailbox, queue_item_id, outcome, rule, message_id_hash)
           SELECT $1::text, q, o, r, h FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
                AS t(q, o, r, h)
           ON CONFLICT DO NOTHING
           RETURNING queue_item_id""",
        mailbox,
        [q for q, _, _ in rows],
        [d.outcome.value for _, d, _ in rows],
        [d.rule for _, d, _ in rows],
        [h for _, _, h in rows],
    )
    new = {r["queue_item_id"] for r in inserted}
    return [q in new for q, _, _ in rows]


async def mark_stored(
    conn: asyncpg.Connection, *, mailbox: str, links: Sequence[StorageLink]
) -> list[bool]:
    """Record where logged messages went and their 'logged' disposal rows; call in a transaction.

    Returns, per link, whether this call inserted the disposal_log row. A row already
    'stored' keeps its first storage link (the reconciler and the pipeline may both finish it).
    """
    if not links:
        return []
    await conn.execute(
        """UPDATE stored_message AS s
           SET storage_item_id = t.item, web_link = t.link, state = 'stored', updated_at = now()
           FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(id, item, link)
           WHERE s.id = t.id AND s.state = 'moving'""",
        [link.stored_message_id for link in links],
        [link.storage_item_id for link in links],
        [link.web_link for link in links],
    )
    inserted = await conn.fetch(
        """INSERT INTO disposal_log
               (mailbox, queue_item_id, outcome, rule, message_id_hash, stored_message_id)
           SELECT $1::text, q, 'logged', r, h, s
           FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS t(q, r, h, s)
           ON CONFLICT DO NOTHING
           RETURNING stored_message_id""",
        mailbox,
        [link.queue_item_id for link in links],
        [link.rule for link in links],
        [link.message_id_hash for link in links],
        [link.stored_message_id for link in links],
    )
    new = {r["stored_message_id"] for r in inserted}
    return [link.stored_message_id in new for link in links]


async def record_failed(
    conn: asyncpg.Connection, *, mailbox: str, queue_item_id: str, rule: str, message_id_hash: str
) -> None:
    """Record that a message failed after bounded retries (it stays in the queue)."""
    await conn.execute(
        """INSERT INTO disposal_log (mailbox, queue_item_id, outcome, rule, message_id_hash)
           VALUES ($1, $2, 'failed', $3, $4)""",
        mailbox,
        queue_item_id,
        rule,
        message_id_hash,
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
