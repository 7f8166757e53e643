"""Injected faults: what is armed, set through the /_sim/ side channel or the Simulator API.

Request-level faults (latency, HTTP 503/429 with Retry-After, ErrorServerBusy as a SOAP
fault, error response messages inside HTTP 200, the connection limit) are applied by the
faults middleware (middleware.py); per-item failures by GetItem/MoveItem/CopyItem/DeleteItem; the
subscription limit by Subscribe; half-open streams by GetStreamingEvents.

Limits as Exchange Online has them: 20 subscriptions per mailbox (EWSMaxSubscriptions;
stale ones count until they expire) and 10 open streams (HangingConnectionLimit; one more
is refused with ErrorExceededConnectionCount).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BACK_OFF_MS = 1500
EXCHANGE_ONLINE_SUBSCRIPTIONS = 20
EXCHANGE_ONLINE_STREAMS = 10
#: The operation name that arms a request fault for every operation.
ANY_OP = "*"


@dataclass
class RequestFault:
    """Answer an operation with an error response message (HTTP 200) instead of doing it."""

    code: str
    remaining: int | None  # None: every time, until reset
    back_off_ms: int | None = None  # BackOffMilliseconds in MessageXml (ErrorServerBusy)


@dataclass
class HttpFault:
    """Answer requests with a bare HTTP error (IIS queueing: 503; a proxy: 429)."""

    status: int
    remaining: int
    retry_after_seconds: int | None


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
    # op (or "*") -> [code, remaining (None: until reset)]
    request_faults: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    http_error_status: int | None = None
    http_error_remaining: int = 0
    half_open_streams: int = 0
    subscription_limit: int | None = None
    require_public_routing: bool = False
    stream_limit: int | None = None


@dataclass
class Faults:
    busy_remaining: int = 0  # next N EWS requests get ErrorServerBusy
    busy_back_off_ms: int = DEFAULT_BACK_OFF_MS
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    max_connections: int | None = None  # ErrorExceededConnectionCount beyond this
    # op ("MoveItem"/"DeleteItem"/"CopyItem"/"GetItem") -> item id -> failure
    item_failures: dict[str, dict[str, ItemFailure]] = field(default_factory=dict)
    request_faults: dict[str, RequestFault] = field(default_factory=dict)
    http_error: HttpFault | None = None
    half_open_streams: int = 0  # the next N streams send OK once, then nothing
    subscription_limit: int | None = None  # ErrorExceededSubscriptionCount beyond this
    require_public_routing: bool = False  # public-folder content needs routing headers
    stream_limit: int | None = None  # open streams per mailbox (HangingConnectionLimit)

    def reset(self) -> None:
        self.busy_remaining = 0
        self.busy_back_off_ms = DEFAULT_BACK_OFF_MS
        self.latency_min_ms = self.latency_max_ms = 0.0
        self.max_connections = None
        self.item_failures.clear()
        self.request_faults.clear()
        self.http_error = None
        self.half_open_streams = 0
        self.subscription_limit = None
        self.require_public_routing = False
        self.stream_limit = None

    def fail_requests(
        self, ops: list[str], code: str, times: int | None, back_off_ms: int | None = None
    ) -> None:
        for op in ops:
            self.request_faults[op] = RequestFault(code, times, back_off_ms)

    def take_request_fault(self, op: str) -> RequestFault | None:
        """The error to answer `op` with, if one is armed (for it or for every op)."""
        for key in (op, ANY_OP):
            fault = self.request_faults.get(key)
            if fault is None:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self.request_faults[key]
            return fault
        return None

    def set_http_error(self, status: int, count: int, retry_after_seconds: int | None) -> None:
        self.http_error = HttpFault(status, count, retry_after_seconds) if count > 0 else None

    def take_http_error(self) -> HttpFault | None:
        fault = self.http_error
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.http_error = None
        return fault

    def take_half_open(self) -> bool:
        if self.half_open_streams <= 0:
            return False
        self.half_open_streams -= 1
        return True

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
            request_faults={op: (f.code, f.remaining) for op, f in self.request_faults.items()},
            http_error_status=self.http_error.status if self.http_error else None,
            http_error_remaining=self.http_error.remaining if self.http_error else 0,
            half_open_streams=self.half_open_streams,
            subscription_limit=self.subscription_limit,
            require_public_routing=self.require_public_routing,
            stream_limit=self.stream_limit,
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
