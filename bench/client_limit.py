"""What one exchangelib client does here with no logging work at all.

GetItem of the service's QUEUE_FIELDS for `fetch_batch_messages` ids, then MoveItem of
`move_batch_messages` ids to storage, one call after the other in one thread: the ceiling
the pipeline's own overhead (classify, database, asyncio) is measured against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.sources.ews_connect import connect, forget_protocol, resolve_folder
from pipeline.sources.ews_links import QUEUE_FIELDS


@dataclass(frozen=True, slots=True)
class ClientLimitResult:
    fetched: int
    moved: int
    seconds: float
    cpu_seconds: float  # this thread's: the client's own cost, what the service is held to


def run_client_limit(settings: Settings, item_ids: Sequence[str]) -> ClientLimitResult:
    """Blocking: run it in a thread. Connection set-up and folder lookups are not timed."""
    account = connect(settings.source.ews)
    try:
        queue = resolve_folder(account, settings.source.queue_folder)
        storage = resolve_folder(account, settings.source.storage_folder)
        fetch_size = settings.limits.fetch_batch_messages
        move_size = settings.limits.move_batch_messages
        fetched = moved = 0
        started, cpu_started = time.perf_counter(), time.thread_time()
        for start in range(0, len(item_ids), fetch_size):
            ids = [(i, None) for i in item_ids[start : start + fetch_size]]
            items = list(
                account.fetch(
                    ids=ids, folder=queue, only_fields=list(QUEUE_FIELDS), chunk_size=len(ids)
                )
            )
            fetched += sum(1 for item in items if not isinstance(item, Exception))
            for m in range(0, len(ids), move_size):
                chunk = ids[m : m + move_size]
                results = account.bulk_move(ids=chunk, to_folder=storage, chunk_size=len(chunk))
                moved += sum(1 for r in results if not isinstance(r, Exception))
        seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    finally:
        forget_protocol(account.protocol.config)
    return ClientLimitResult(fetched, moved, seconds, cpu)
