"""Injected faults: what is armed, set through the /_sim/ side channel or the Simulator API.

Request-level faults (latency, ErrorServerBusy, the connection limit) are applied by the
faults middleware (middleware.py); per-item failures by MoveItem/CopyItem/DeleteItem.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BACK_OFF_MS = 1500


@dataclass
class ItemFailure:
    code: str
    remaining: int | None  # None: fail every time


@dataclass(frozen=True)
class FaultStatus:
    """What is armed at one moment (tests assert on it; GET /_sim/faults returns it)."""

    busy_remaining: int
    busy_back_off_ms: int
    latency_min_ms: float
    latency_max_ms: float
    max_connections: int | None
    # op -> ids of the items that still fail it; ops with none left are absent.
    item_failures: Mapping[str, tuple[str, ...]]


@dataclass
class Faults:
    busy_remaining: int = 0  # next N EWS requests get ErrorServerBusy
    busy_back_off_ms: int = DEFAULT_BACK_OFF_MS
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    max_connections: int | None = None  # ErrorExceededConnectionCount beyond this
    # op ("MoveItem"/"DeleteItem"/"CopyItem") -> item id -> failure
    item_failures: dict[str, dict[str, ItemFailure]] = field(default_factory=dict)

    def reset(self) -> None:
        self.busy_remaining = 0
        self.busy_back_off_ms = DEFAULT_BACK_OFF_MS
        self.latency_min_ms = self.latency_max_ms = 0.0
        self.max_connections = None
        self.item_failures.clear()

    def set_busy(self, count: int, back_off_ms: int = DEFAULT_BACK_OFF_MS) -> None:
        self.busy_remaining = count
        self.busy_back_off_ms = back_off_ms

    def set_latency(self, min_ms: float, max_ms: float | None = None) -> None:
        """A fixed latency (`max_ms` None) or one drawn uniformly from [min_ms, max_ms]."""
        self.latency_min_ms = min_ms
        self.latency_max_ms = min_ms if max_ms is None else max_ms

    def status(self) -> FaultStatus:
        return FaultStatus(
            busy_remaining=self.busy_remaining,
            busy_back_off_ms=self.busy_back_off_ms,
            latency_min_ms=self.latency_min_ms,
            latency_max_ms=self.latency_max_ms,
            max_connections=self.max_connections,
            item_failures={op: tuple(t) for op, t in self.item_failures.items() if t},
        )

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
