"""dedupe: classified messages -> committed decisions (one transaction per batch).

Reads what the journal already holds, lets `claims.plan` decide (rule 3, resume, keep an
earlier decision), claims logged messages (stored_message row in state 'moving' + entries)
and records every other decision in disposal_log through the ledger, all in one
transaction and before anything leaves the queue. Idempotent: a retry after a rollback, or
a replay after a crash, resumes or finds what was committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline import claims
from pipeline.claims import Action, Claim, Recorded
from pipeline.crashpoints import crash_point
from pipeline.directory import Template
from pipeline.ledger import Book, Ledger
from pipeline.model import Candidate, message_id_hash
from pipeline.stages import Classified, Decided
from pipeline.store import journal
from pipeline.store.journal import DisposalRow


async def dedupe_and_claim(
    items: Sequence[Classified], *, ledger: Ledger, template: Callable[[], Template]
) -> list[Decided | Exception]:
    candidates = [Candidate(i.ref.item_id, i.mail, i.decision) for i in items]
    async with ledger.transaction() as book:
        recorded = await record_decisions(book, candidates, template())
    crash_point("after_claim")  # committed; nothing has left the queue yet
    return [Decided(i.ref, i.mail, r) for i, r in zip(items, recorded, strict=True)]


async def record_decisions(
    book: Book, candidates: Sequence[Candidate], template: Template
) -> list[Recorded]:
    """Run the claim plan for one batch inside `book`'s transaction; one verdict per input."""
    conn, mailbox = book.conn, book.mailbox
    earlier = await journal.earlier_disposals(
        conn, mailbox=mailbox, queue_item_ids=[c.queue_item_id for c in candidates]
    )
    existing = await journal.existing_claims(
        conn, mailbox=mailbox, keys=claims.duplicate_keys(candidates)
    )
    steps = claims.plan(candidates, earlier, existing)

    to_claim = [i for i, step in enumerate(steps) if step.action is Action.CLAIM]
    claimed = await journal.insert_claims(
        conn, mailbox=mailbox, cands=[candidates[i] for i in to_claim], template=template
    )
    results: dict[int, Recorded] = {}
    for i, claim in zip(to_claim, claimed, strict=True):
        if claim is None:  # lost to a concurrent transaction holding the same key
            steps[i] = claims.lost_race(steps[i])
        else:
            stored_id, entries = claim
            results[i] = Recorded(steps[i].decision, Claim.NEW, stored_id, entries)
            book.count_entries(entries)

    to_record = [i for i, step in enumerate(steps) if step.action is Action.RECORD]
    newly = await book.record(
        [
            DisposalRow(
                candidates[i].queue_item_id,
                steps[i].decision.outcome,
                steps[i].decision.rule,
                message_id_hash(candidates[i].mail),
            )
            for i in to_record
        ]
    )
    for i, new in zip(to_record, newly, strict=True):
        results[i] = Recorded(steps[i].decision, newly_recorded=new)
    for i, step in enumerate(steps):
        if step.action is Action.KEEP:
            results[i] = Recorded(step.decision)
        elif step.action is Action.RESUME:
            results[i] = Recorded(step.decision, Claim.RESUMED, step.stored_message_id)
    return [results[i] for i in range(len(candidates))]
