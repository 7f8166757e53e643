"""Which queue items are being worked on right now, and the cap on how many.

An item is admitted at intake (or by the reconciler) and released when it is disposed of,
failed or found gone. Admission waits for one of `limit` slots, so a backlog of 10,000
queued messages never means 10,000 messages in memory: intake simply waits. An item id
already in flight is not admitted twice (sources may repeat an arrival).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class InFlight:
    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._admitted: dict[str, float] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._on_change = on_change

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._admitted

    def __len__(self) -> int:
        return len(self._admitted)

    async def admit(self, item_id: str) -> bool:
        """Take a slot for `item_id` (waiting for one); False if it is already in flight."""
        if item_id in self._admitted:
            return False
        await self._slots.acquire()
        if item_id in self._admitted:  # admitted by someone else while we waited
            self._slots.release()
            return False
        self._admitted[item_id] = time.monotonic()
        self._idle.clear()
        self._changed()
        return True

    def release(self, item_id: str) -> float | None:
        """Free the slot; returns seconds since admission (None if it was not in flight)."""
        admitted_at = self._admitted.pop(item_id, None)
        if admitted_at is None:
            return None
        self._slots.release()
        if not self._admitted:
            self._idle.set()
        self._changed()
        return time.monotonic() - admitted_at

    async def wait_idle(self) -> None:
        """Until nothing is in flight."""
        await self._idle.wait()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(len(self._admitted))
