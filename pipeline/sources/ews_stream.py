"""The arrivals thread: subscribe, catch up, follow the stream; resubscribe on loss.

exchangelib's GetStreamingEvents blocks its thread reading one chunked HTTP body for up to
`stream_timeout_minutes`, so it gets a thread of its own (not a pool worker). The loop:

    subscribe (Streaming, on the queue folder)          <- FIRST, so no event is missed
    catch up  (SyncFolderItems from the last SyncState;  <- everything already there
               public folders: FindItem by received time)
    stream    (GetStreamingEvents until ConnectionStatus=Closed, then again, same id)

Streaming events carry no watermark and cannot be resumed, so any failure (subscription
lost or expired, stream dropped mid-body, server down) starts over at "subscribe", which
repeats the catch-up; item ids already emitted are suppressed by a bounded LRU.

Intake never depends on the stream alone. When Subscribe fails (too many subscriptions,
an invalid request, a proxy refusing, an outage) or streams keep failing, the thread polls
(the same scan every `poll_interval_seconds`), tries Subscribe once per interval and
streams again when it works (`mode`, via `on_mode`). With `streaming=False` (public
folders by default) it only polls. A stream silent for the watchdog's limit (not even a
keep-alive) is cut (`check_silence`) and reopened.

Safety re-sync: a server can lose events without telling (a failover that keeps the
subscription id valid). So after a stream ends with Closed, if `catch_up_interval_seconds`
have passed since the last catch-up, the thread catches up again (an incremental
SyncFolderItems costs one request). To make that period hold, each stream connection lasts
at most the interval rounded up to whole minutes (and `stream_timeout_minutes` at most).

Refs go to the event loop through a bounded asyncio.Queue (full: this thread blocks).

Stopping (`stop()`): set a flag and shut down the stream's socket so the blocked read
returns at once (`response.close()` from another thread does not unblock it; research
note §1.6). That uses requests/urllib3 private attributes, guarded: if they change, the
daemon thread sees the flag at the next keep-alive or Closed, and nobody waits for it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from typing import Any

from exchangelib.errors import ErrorServerBusy, EWSError

from pipeline.errors import describe
from pipeline.logs import get_logger
from pipeline.model import MailRef
from pipeline.sources.ews_catchup import QueueScan, connection_minutes, failure_delay
from pipeline.sources.ews_connect import shutdown_stream_socket
from pipeline.sources.ews_convert import (
    SUBSCRIPTION_LOST,
    back_off_seconds,
    is_connection_error,
    utc,
)
from pipeline.sources.ews_documents import ChunkedStreamingEvents
from pipeline.sources.ews_emit import RefSink, Stopped
from pipeline.sources.ews_gate import BackOffGate
from pipeline.sources.ews_route import route_thread

log = get_logger(__name__)

EVENT_TYPES = ("NewMailEvent", "CreatedEvent", "MovedEvent")
#: Streams failing this often in a row (refused: too many open streams; cut: half-open)
#: make the thread poll for one poll interval before it subscribes again.
STREAM_FAILURES_BEFORE_POLLING = 3


_Stopped = Stopped  # raised inside the thread to unwind when stop() was called


class ArrivalStream:
    """Runs in its own thread; see the module docstring. `run()` is the thread target."""

    def __init__(
        self,
        *,
        account: Any,
        queue_folder: Any,
        public: bool,
        stream_timeout_minutes: int,
        catch_up_interval_seconds: float,
        back_off_cap_seconds: float,
        loop: asyncio.AbstractEventLoop,
        refs: asyncio.Queue[MailRef],
        notify: Callable[[str, tuple[Any, ...]], None],
        streaming: bool = True,
        poll_interval_seconds: float = 30.0,
        gate: BackOffGate | None = None,
        route: str | None = None,
    ) -> None:
        self._account = account
        self._queue_folder = queue_folder
        self._queue_id: str = queue_folder.id
        self._scan = QueueScan(queue_folder, public)
        self._streaming = streaming
        self._connection_timeout = connection_minutes(
            stream_timeout_minutes, catch_up_interval_seconds
        )
        self._catch_up_interval = catch_up_interval_seconds
        self._poll_interval = poll_interval_seconds
        # A failing server is retried at least once per poll interval: intake never waits
        # longer than that for a back-off of our own.
        self._back_off_cap = min(back_off_cap_seconds, poll_interval_seconds)
        self._gate = gate
        self._route = route  # a public queue's content mailbox (ews_route.py)
        self._last_catch_up = -math.inf
        self._notify = notify
        self._stop = threading.Event()
        self._sink = RefSink(loop, refs, self._stop)
        self._scan_lock = threading.Lock()  # the thread and a poll meanwhile (poll_now)
        self._failures = 0  # consecutive; reset once a stream delivers or ends normally
        self._stream_failures = 0  # streams (or catch-ups) failed in a row while subscribed
        self._service: Any = None  # the GetStreamingEvents in progress, for stop()
        self._stream_opened_at = 0.0
        self._silenced = False  # the watchdog cut the current stream
        self._subscribed_before = False
        self.subscription_id: str | None = None
        self.connected = False
        self.mode: str | None = None  # "streaming" or "polling" once known

    @property
    def resyncs(self) -> int:
        """Full resyncs after an invalid SyncState (tests read it)."""
        return self._scan.resyncs

    # --- control (any thread) ---

    def stop(self) -> None:
        self._stop.set()
        self.interrupt()

    def interrupt(self) -> bool:
        """Break a blocked stream read now (see the module docstring). True if done."""
        service = self._service
        return service is not None and shutdown_stream_socket(service)

    def silent_for(self) -> float:
        """Seconds since the open stream last sent bytes (0 when no stream is open)."""
        service = self._service
        if service is None:
            return 0.0
        response = getattr(service, "_streaming_response", None)
        last = max(self._stream_opened_at, getattr(response, "last_bytes_at", 0.0))
        return time.monotonic() - last

    def check_silence(self, limit_seconds: float) -> bool:
        """The stream watchdog (called from the event loop): a stream that sent nothing,
        not even a keep-alive, for `limit_seconds` is half-open; cut it, so the thread
        resubscribes and catches up. True when it cut one."""
        if self.silent_for() <= limit_seconds:
            return False
        self._silenced = True
        return self.interrupt()

    # --- the thread ---

    def run(self) -> None:
        route_thread(self._route)  # everything this thread asks is about the queue
        retry_subscribe_at = 0.0
        caught_up = False
        stale: str | None = None
        while not self._stop.is_set():
            try:
                if self._wants_subscription(retry_subscribe_at):
                    self._unsubscribe_quietly(stale)
                    stale = None
                    if self._subscribe():
                        caught_up = False
                    else:
                        retry_subscribe_at = time.monotonic() + self._poll_interval
                if self.subscription_id is None:
                    self._poll()
                    if self._stop.wait(self._poll_wait(retry_subscribe_at)):
                        break
                    continue
                if not caught_up:
                    self._catch_up()
                    caught_up = True
                self._stream(self.subscription_id)
                # Closed: renew the connection with the same subscription.
                self._failures = self._stream_failures = 0
                if time.monotonic() - self._last_catch_up >= self._catch_up_interval:
                    caught_up = False  # the safety re-sync (module docstring)
                continue
            except _Stopped:
                break
            except SUBSCRIPTION_LOST as exc:
                # The server forgot the subscription (expiry, failover, restart) or lost
                # events: expected, one line each, then resubscribe and catch up.
                log.warning("EWS subscription lost (%s); resubscribing", type(exc).__name__)
                self._lose_subscription()
            except ErrorServerBusy as exc:
                if not is_connection_error(exc):
                    if self._throttled(exc):
                        break
                    continue
                stale = self._drop(exc, stale)
            except Exception as exc:
                if self._stop.is_set():
                    break  # stop()'s socket shutdown surfaces as a connection error
                stale = self._drop(exc, stale)
            if self._stream_failures >= STREAM_FAILURES_BEFORE_POLLING:
                self._stream_failures = 0  # streams keep failing: poll for an interval
                retry_subscribe_at = time.monotonic() + self._poll_interval
                continue
            self._failures += 1
            if self._stop.wait(failure_delay(self._failures, self._back_off_cap)):
                break
        self._unsubscribe_quietly(stale)
        self._set_connected(False)

    def _wants_subscription(self, retry_subscribe_at: float) -> bool:
        return (
            self._streaming
            and self.subscription_id is None
            and time.monotonic() >= retry_subscribe_at
        )

    def _poll_wait(self, retry_subscribe_at: float) -> float:
        if not self._streaming:
            return self._poll_interval
        return max(0.0, min(self._poll_interval, retry_subscribe_at - time.monotonic()))

    def _subscribe(self) -> bool:
        """Subscribe to the queue folder; False (one log line, polling meanwhile) when the
        server refuses: too many subscriptions (20 per mailbox on Exchange Online, stale
        ones included), a public folder that cannot stream, a proxy refusing, an outage."""
        try:
            self.subscription_id = self._queue_folder.subscribe_to_streaming(
                event_types=list(EVENT_TYPES)
            )
        except Exception as exc:
            if self._stop.is_set():
                raise _Stopped from None
            if isinstance(exc, ErrorServerBusy) and not is_connection_error(exc):
                if self._throttled(exc):  # back off as told, then poll until next time
                    raise _Stopped from None
                return False
            log.warning(
                "EWS Subscribe failed (%s); polling every %gs until it works",
                describe(exc),
                self._poll_interval,
            )
            return False
        self._set_connected(True)
        self._set_mode("streaming")
        if self._subscribed_before:
            self._notify("on_reconnect", ())
        self._subscribed_before = True
        return True

    def _poll(self) -> None:
        """No stream: one scan of the queue folder (SyncFolderItems / FindItem)."""
        self._set_mode("polling")
        self._catch_up()
        self._failures = 0
        self._set_connected(True)  # intake works, by polling

    def _throttled(self, exc: ErrorServerBusy) -> bool:
        """Wait out a back-off (the gate's, which honours the server's value); True if
        stopped meanwhile. The subscription (if any) is intact; an unfinished catch-up is
        redone from the last SyncState."""
        seconds = back_off_seconds(exc)
        if self._gate is not None and self._gate.asked() > 0:
            seconds = self._gate.asked()  # exchangelib's value may be its own 10 s default
        log.warning("EWS throttled the stream; backing off %.1fs", seconds)
        self._notify("on_throttled", (seconds,))
        return self._stop.wait(seconds)

    def _drop(self, exc: BaseException, stale: str | None) -> str | None:
        """A connection-level failure: events in the broken body are lost, so start over
        with a new subscription (the old one is unsubscribed best-effort first)."""
        if self._silenced:
            self._silenced = False
            log.warning("EWS stream silent too long (half-open?); resubscribing")
        elif is_connection_error(exc) or isinstance(exc, EWSError):
            log.warning("EWS stream or poll failed (%s); retrying", describe(exc))
        else:
            log.exception("EWS stream failed unexpectedly; resubscribing")
        old = self.subscription_id
        self._stream_failures += old is not None
        self._lose_subscription()
        return old if old is not None else stale

    def _lose_subscription(self) -> None:
        self.subscription_id = None
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._notify("on_connected", (connected,))

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            self._notify("on_mode", (mode,))

    def _unsubscribe_quietly(self, subscription_id: str | None) -> None:
        if subscription_id is None:
            return
        try:
            self._queue_folder.unsubscribe(subscription_id)
        except Exception as exc:  # it may be gone already; it expires on its own anyway
            log.debug("unsubscribe of a stale subscription failed: %s", type(exc).__name__)

    def _stream(self, subscription_id: str) -> None:
        """Follow GetStreamingEvents until the server sends Closed (then return: renew)."""
        service = ChunkedStreamingEvents(account=self._account)
        self._stream_opened_at = time.monotonic()
        self._silenced = False
        self._service = service
        try:
            notifications = service.call(
                subscription_ids=[subscription_id], connection_timeout=self._connection_timeout
            )
            for notification in notifications:
                if isinstance(notification, Exception):
                    raise notification
                self._failures = self._stream_failures = 0  # the stream works again
                self._emit_events(notification.events or ())
                if self._stop.is_set():
                    raise _Stopped
        finally:
            self._service = None
            with suppress(Exception):
                service.stop_streaming()  # release the session back to the pool
        if self._stop.is_set():
            raise _Stopped

    def _emit_events(self, events: Iterable[Any]) -> None:
        self._emit([ref for event in events if (ref := self._ref_of(event)) is not None])
        # Time blocked on a full queue is not the stream's silence (the watchdog).
        self._stream_opened_at = max(self._stream_opened_at, time.monotonic())

    def _ref_of(self, event: Any) -> MailRef | None:
        """A queue item's ref from an item event (ews_documents.ItemEvent, or exchangelib's
        TimestampEvent); None for folder and status (keep-alive) events."""
        item_id = getattr(event, "item_id", None)
        if item_id is None:
            return None
        parent = event.parent_folder_id
        if parent is None or parent.id != self._queue_id:
            return None  # e.g. the MovedEvent of an item leaving the queue for storage
        return MailRef(
            item_id=item_id.id,
            changekey=item_id.changekey,
            received_at=utc(event.timestamp),
        )

    def _catch_up(self) -> None:
        with self._scan_lock:
            self._last_catch_up = time.monotonic()
            self._scan.run(self._sink.emit_in_batches)

    def wants_poll(self, poll_interval_seconds: float) -> bool:
        """Streaming, but the stream has been silent (no events, no keep-alives) for a poll
        interval and nothing was scanned meanwhile: the stream may be half-open, and the
        watchdog may take longer to be sure. Poll meanwhile (`poll_now`)."""
        return (
            self.mode == "streaming"
            and self.silent_for() > poll_interval_seconds
            and time.monotonic() - self._last_catch_up > poll_interval_seconds
        )

    def poll_now(self) -> None:
        """One scan of the queue from another thread (a worker) while the stream is open;
        failures are left to the stream's own recovery."""
        try:
            self._catch_up()
        except Exception as exc:  # _Stopped included: nothing to do then
            log.debug("poll while the stream is silent failed: %s", type(exc).__name__)

    def _emit(self, refs: Sequence[MailRef]) -> None:
        self._sink.emit(refs)
