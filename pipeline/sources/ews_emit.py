"""Handing MailRefs from EWS threads to the event loop: de-duplicated, bounded, stoppable.

Both the arrivals thread and a worker polling while the stream is silent emit refs; one
lock keeps the de-duplication memory consistent between them. The refs go through a
bounded asyncio.Queue: when it is full the emitting thread blocks (memory stays bounded
whatever the backlog), looking at the stop flag meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from pipeline.model import MailRef

#: Emitted item ids remembered for de-duplication (Created + NewMail per delivery; catch-ups
#: re-report the queue); the pipeline dedupes in-flight ids, so the recent past will do.
SEEN_IDS = 20_000
#: Catch-up hands refs to the event loop this many at a time (one cross-thread trip each).
EMIT_BATCH_REFS = 100
#: How often a thread blocked on a full queue looks at the stop flag.
STOP_POLL_SECONDS = 0.25


class Stopped(Exception):
    """Raised inside an emitting thread to unwind when the source is stopping."""


class RefSink:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, refs: asyncio.Queue[MailRef], stop: threading.Event
    ) -> None:
        self._loop = loop
        self._refs = refs
        self._stop = stop
        self._lock = threading.RLock()
        self._seen: OrderedDict[str, None] = OrderedDict()

    def emit_in_batches(self, refs: Iterable[MailRef]) -> None:
        batch: list[MailRef] = []
        for ref in refs:
            batch.append(ref)
            if len(batch) == EMIT_BATCH_REFS:
                self.emit(batch)
                batch = []
        self.emit(batch)

    def emit(self, refs: Sequence[MailRef]) -> None:
        """Hand new refs to the event loop; blocks while the bounded queue is full."""
        with self._lock:
            fresh = {r.item_id: r for r in refs if r.item_id not in self._seen}
            for ref in refs:
                if ref.item_id in self._seen:
                    self._seen.move_to_end(ref.item_id)
            if not fresh:
                return
            self._hand_over(fresh.values())
            for item_id in fresh:
                self._seen[item_id] = None
            while len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)

    def _hand_over(self, refs: Iterable[MailRef]) -> None:
        future = asyncio.run_coroutine_threadsafe(self._put_all(refs), self._loop)
        while True:
            try:
                future.result(timeout=STOP_POLL_SECONDS)
                return
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    raise Stopped from None
            except concurrent.futures.CancelledError:
                raise Stopped from None

    async def _put_all(self, refs: Iterable[MailRef]) -> None:
        for ref in refs:
            await self._refs.put(ref)
