"""One back-off gate per EWS server, shared by every call of the process.

Exchange asks a client to back off in three ways:

- `ErrorServerBusy` as a SOAP fault (HTTP 500) with `BackOffMilliseconds` in the detail's
  `MessageXml`: exchangelib reads it, but only for the call that got it;
- `ErrorServerBusy` inside a response message of an HTTP 200 response, with the same
  `BackOffMilliseconds` in `m:MessageXml`: exchangelib ignores the value and substitutes
  its own 10 s;
- HTTP 503 (IIS queueing, a server in maintenance) or 429 with `Retry-After`.

Throttling is per user (the budget is the account's), so a back-off asked of one call
applies to all: the worker threads, the stream, the backlog poll. Our HTTP adapter
(ews_connect.py) sees every request and response of exchangelib, so it is where the gate
is kept: `observe()` reads each response, `wait()` holds each request until the gate
opens. The stream's long GetStreamingEvents body is not inspected (its events are not
throttling replies); the request that opens it waits like any other.
"""

from __future__ import annotations

import re
import threading
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

#: The longest single back-off we accept from a server (a garbled value must not stop
#: intake for a day); Exchange asks for seconds to a few minutes.
MAX_BACK_OFF_SECONDS = 300.0
#: How long one `wait()` sleeps at most before looking again (the gate may be extended).
WAIT_STEP_SECONDS = 1.0

_BACK_OFF = re.compile(rb'Name="BackOffMilliseconds"\s*>\s*(\d+)\s*<')


class BackOffGate:
    """A time before which no request goes out. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0  # time.monotonic()
        self._asked = 0.0  # the back-off behind the current hold, as the server asked it

    def hold(self, seconds: float) -> None:
        """Keep requests back for `seconds` from now (never shortens a longer hold)."""
        seconds = min(max(seconds, 0.0), MAX_BACK_OFF_SECONDS)
        with self._lock:
            until = time.monotonic() + seconds
            if until >= self._until:
                self._until, self._asked = until, seconds

    def asked(self) -> float:
        """While the gate holds: the back-off the server asked for (seconds); else 0."""
        with self._lock:
            return self._asked if self._until > time.monotonic() else 0.0

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        with self._lock:
            return max(0.0, self._until - time.monotonic())

    def wait(self) -> float:
        """Block until the gate is open; the seconds waited."""
        waited = 0.0
        while (left := self.remaining()) > 0:
            step = min(left, WAIT_STEP_SECONDS)
            time.sleep(step)
            waited += step
        return waited

    def observe(self, status: int, headers: dict[str, str] | None, body: bytes | None) -> float:
        """Read a response for a back-off request; hold the gate for it. The seconds (0: none)."""
        seconds = 0.0
        if status in (429, 503) and headers is not None:
            seconds = retry_after_seconds(headers.get("Retry-After"))
        if body and b"BackOffMilliseconds" in body:
            seconds = max(seconds, back_off_ms_in(body) / 1000)
        if seconds > 0:
            self.hold(seconds)
        return seconds


def back_off_ms_in(body: bytes) -> int:
    """The largest BackOffMilliseconds value in a response body (0 when none)."""
    return max((int(m) for m in _BACK_OFF.findall(body)), default=0)


def retry_after_seconds(value: str | None) -> float:
    """A Retry-After header (delta-seconds or an HTTP date) as seconds; 0 when absent/bad."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


_GATES: dict[str, BackOffGate] = {}
_GATES_LOCK = threading.Lock()


def gate_for(url: str) -> BackOffGate:
    """The gate of the server at `url` (one per scheme://host:port, for the process)."""
    parts = urlsplit(url)
    key = f"{parts.scheme}://{parts.netloc}".lower()
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = BackOffGate()
        return gate
