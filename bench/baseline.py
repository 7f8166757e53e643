"""The NAV-style reference drain: one message at a time, one commit per message.

What NAV's job (codeunit 5064) does for each queue message, with our rules and our SQL:

    GetItem (the service's FETCH_FIELDS)         one EWS request
    rule 3: is it already logged?                one SELECT (store.queries.is_logged)
    decide(mail, directory, policy)              the same pure rules as the service
    logged:  CopyItem to storage                 one EWS request
             claim + entries + stored + disposal one transaction, one commit (journal SQL)
    other:   disposal record                     one transaction, one commit
    DeleteItem from the queue (hard)             one EWS request

The same exchangelib configuration (`ews_connect.connect`), the same conversion
(`ews_convert.to_mail`), the same journal functions: only the shape (one message, one
request per step, strictly sequential) differs, which is exactly what is being compared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from exchangelib.items import HARD_DELETE

from pipeline.config import Settings
from pipeline.directory import Directory
from pipeline.ledger import Ledger
from pipeline.metrics import Metrics
from pipeline.model import Candidate, message_id_hash
from pipeline.rules import Policy, decide
from pipeline.sources.ews_connect import connect, forget_protocol, resolve_folder
from pipeline.sources.ews_convert import FETCH_FIELDS, to_mail
from pipeline.stages.dedupe import record_decisions
from pipeline.store.journal import StorageLink
from pipeline.store.queries import is_logged


@dataclass(frozen=True, slots=True)
class BaselineResult:
    processed: int
    seconds: float
    outcomes: dict[str, int]


async def run_baseline(
    settings: Settings, pool: asyncpg.Pool, directory: Directory, item_ids: Sequence[str]
) -> BaselineResult:
    """Drain `item_ids` from the queue NAV-style; EWS set-up is not timed (NAV's isn't either)."""
    account = await asyncio.to_thread(connect, settings.source.ews)
    try:
        queue = await asyncio.to_thread(resolve_folder, account, settings.source.queue_folder)
        storage = await asyncio.to_thread(resolve_folder, account, settings.source.storage_folder)
        template = directory.template(settings.rules.email_template_code)
        assert template is not None, "the benchmark directory has the EMAIL template"
        policy = Policy.from_settings(settings.rules)
        mailbox = settings.source.ews.mailbox
        ledger = Ledger(
            pool,
            mailbox=mailbox,
            metrics=Metrics(),
            max_in_flight_messages=1,
            retry_max_wait_seconds=settings.limits.retry_max_wait_seconds,
        )
        outcomes: dict[str, int] = {}
        started = time.perf_counter()
        for item_id in item_ids:
            [item] = await asyncio.to_thread(_get_item, account, queue, item_id)
            if isinstance(item, Exception):
                raise item
            mail = to_mail(item)
            async with pool.acquire() as conn:
                seen = await is_logged(conn, mailbox, [mail.dedupe_key])
                decision = decide(mail, directory, policy, already_logged=bool(seen))
                storage_id: str | None = None
                if decision.is_logged:
                    [copied] = await asyncio.to_thread(
                        account.bulk_copy, ids=[(item_id, None)], to_folder=storage
                    )
                    if isinstance(copied, Exception):
                        raise copied
                    storage_id = copied[0]
            async with ledger.transaction() as book:
                [recorded] = await record_decisions(
                    book, [Candidate(item_id, mail, decision)], template
                )
                if recorded.stored_message_id is not None:
                    await book.record_stored(
                        [
                            StorageLink(
                                stored_message_id=recorded.stored_message_id,
                                queue_item_id=item_id,
                                storage_item_id=storage_id,
                                web_link=None,
                                rule=recorded.decision.rule,
                                message_id_hash=message_id_hash(mail),
                            )
                        ]
                    )
            [deleted] = await asyncio.to_thread(
                account.bulk_delete, ids=[(item_id, None)], delete_type=HARD_DELETE
            )
            if isinstance(deleted, Exception):
                raise deleted
            outcome = recorded.decision.outcome.value
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        seconds = time.perf_counter() - started
    finally:
        await asyncio.to_thread(_close, account)
    return BaselineResult(len(item_ids), seconds, dict(sorted(outcomes.items())))


def _get_item(account: Any, queue: Any, item_id: str) -> Any:
    """GetItem of one id with the service's fields: the item, or its exception."""
    return list(account.fetch(ids=[(item_id, None)], folder=queue, only_fields=list(FETCH_FIELDS)))


def _close(account: Any) -> None:
    forget_protocol(account.protocol.config)
