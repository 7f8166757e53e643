"""Injected faults, set through the /_sim/ side channel or the Simulator API."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class ItemFailure:
    code: str
    remaining: int | None  # None: fail every time


@dataclass
class Faults:
    busy_remaining: int = 0  # next N EWS requests get ErrorServerBusy
    busy_back_off_ms: int = 1500
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    max_connections: int | None = None  # ErrorExceededConnectionCount beyond this
    # op ("MoveItem"/"DeleteItem"/"CopyItem") -> item id -> failure
    item_failures: dict[str, dict[str, ItemFailure]] = field(default_factory=dict)

    def reset(self) -> None:
        self.busy_remaining = 0
        self.busy_back_off_ms = 1500
        self.latency_min_ms = self.latency_max_ms = 0.0
        self.max_connections = None
        self.item_failures.clear()

    def take_busy(self) -> int | None:
        """The back-off (ms) if this request is to be refused as busy."""
        if self.busy_remaining <= 0:
            return None
        self.busy_remaining -= 1
        return self.busy_back_off_ms

    def latency_seconds(self) -> float:
        if self.latency_max_ms <= 0:
            return 0.0
        if self.latency_max_ms <= self.latency_min_ms:
            return self.latency_min_ms / 1000
        return random.uniform(self.latency_min_ms, self.latency_max_ms) / 1000

    def fail_items(self, ops: list[str], item_ids: list[str], code: str, times: int | None) -> None:
        for op in ops:
            table = self.item_failures.setdefault(op, {})
            for item_id in item_ids:
                table[item_id] = ItemFailure(code=code, remaining=times)

    def take_item_failure(self, op: str, item_id: str) -> str | None:
        """The error code if this attempt on `item_id` is to fail."""
        table = self.item_failures.get(op)
        if not table:
            return None
        failure = table.get(item_id)
        if failure is None:
            return None
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                del table[item_id]
        return failure.code
