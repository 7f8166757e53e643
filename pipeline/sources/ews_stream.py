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

Safety re-sync: a server can lose events without telling (a failover that keeps the
subscription id valid). So after a stream ends with Closed, if `catch_up_interval_seconds`
have passed since the last catch-up, the thread catches up again (an incremental
SyncFolderItems costs one request). To make that period hold, each stream connection lasts
at most the interval rounded up to whole minutes (and `stream_timeout_minutes` at most).

Refs go to the event loop through a bounded asyncio.Queue: when it is full this thread
blocks, so memory stays bounded whatever the backlog.

Stopping (`stop()`): set a flag and shut down the stream's socket so the blocked read
returns at once (the research note's §1.6: `response.close()` from another thread does
not unblock it). That reaches into requests/urllib3 private attributes, guarded: if the
layout ever changes, the thread (a daemon) notices the flag at the next keep-alive or
Closed, at most `stream_timeout_minutes` later, and the caller does not wait for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from typing import Any

from exchangelib.errors import ErrorInvalidSubscription, ErrorServerBusy, ErrorSubscriptionNotFound
from exchangelib.properties import TimestampEvent
from exchangelib.services import GetStreamingEvents

from pipeline.logs import get_logger
from pipeline.model import MailRef
from pipeline.sources.ews_convert import back_off_seconds, is_connection_error, ref_from_item, utc

log = get_logger(__name__)

EVENT_TYPES = ("NewMailEvent", "CreatedEvent", "MovedEvent")
#: How many emitted item ids to remember for de-duplication. One delivery fires Created
#: and NewMail, and every catch-up re-reports what is still in the queue; the pipeline also
#: de-duplicates in-flight ids, so this only has to cover the recent past.
SEEN_IDS = 20_000
#: SyncFolderItems MaxChangesReturned is limited to 1..512 by EWS. Catch-up pages are this
#: large whatever the fetch batch: a page is only ids, and fewer pages are fewer round trips.
MAX_SYNC_CHANGES = 512
#: Catch-up hands refs to the event loop this many at a time: one cross-thread round trip
#: per batch instead of per item.
EMIT_BATCH_REFS = 100
#: How often a thread blocked on a full queue looks at the stop flag.
STOP_POLL_SECONDS = 0.25

EventHook = Callable[..., None]


class _Stopped(Exception):
    """Raised inside the thread to unwind when stop() was called."""


def failure_delay(failures: int, cap_seconds: float) -> float:
    """Seconds to wait after `failures` consecutive failures: 0.5, 1, 2, 4 ... capped."""
    if failures <= 0:
        return 0.0
    return float(min(cap_seconds, 0.5 * 2 ** (failures - 1)))


def connection_minutes(stream_timeout_minutes: int, catch_up_interval_seconds: float) -> int:
    """GetStreamingEvents ConnectionTimeout: 1..30 minutes (EWS), and no longer than the
    safety re-sync interval so a Closed comes at least that often."""
    interval_minutes = math.ceil(catch_up_interval_seconds / 60)
    return max(1, min(30, stream_timeout_minutes, interval_minutes))


def shutdown_stream_socket(service: Any) -> bool:
    """Shut down the socket under a streaming exchangelib service's response (guarded).

    Returns True when a socket was found. `shutdown` (not `close`) wakes a reader blocked
    in recv() on another thread; it sees EOF and requests raises ChunkedEncodingError."""
    response = getattr(service, "_streaming_response", None)
    if response is None:
        return False
    # requests.Response.raw is urllib3's HTTPResponse; _fp is http.client's response whose
    # fp is a BufferedReader over socket.SocketIO (urllib3 2.x, CPython 3.11+).
    for path in (("raw", "_fp", "fp", "raw", "_sock"), ("raw", "_connection", "sock")):
        obj: Any = response
        try:
            for attr in path:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        if isinstance(obj, socket.socket):
            with suppress(OSError):
                obj.shutdown(socket.SHUT_RDWR)
            return True
    return False


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
    ) -> None:
        self._account = account
        self._queue_folder = queue_folder
        self._queue_id: str = queue_folder.id
        self._public = public
        self._connection_timeout = connection_minutes(
            stream_timeout_minutes, catch_up_interval_seconds
        )
        self._catch_up_interval = catch_up_interval_seconds
        self._back_off_cap = back_off_cap_seconds
        self._last_catch_up = -math.inf
        self._loop = loop
        self._refs = refs
        self._notify = notify
        self._stop = threading.Event()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._sync_state: str | None = None
        self._failures = 0  # consecutive; reset once a stream delivers or ends normally
        self._service: Any = None  # the GetStreamingEvents in progress, for stop()
        self.subscription_id: str | None = None
        self.connected = False

    # --- control (any thread) ---

    def stop(self) -> None:
        self._stop.set()
        self.interrupt()

    def interrupt(self) -> bool:
        """Break a blocked stream read now (see the module docstring). True if done."""
        service = self._service
        return service is not None and shutdown_stream_socket(service)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- the thread ---

    def run(self) -> None:
        subscribed_before = False
        caught_up = False
        stale_subscription: str | None = None
        while not self._stop.is_set():
            try:
                if self.subscription_id is None:
                    if stale_subscription is not None:
                        self._unsubscribe_quietly(stale_subscription)
                        stale_subscription = None
                    self.subscription_id = self._queue_folder.subscribe_to_streaming(
                        event_types=list(EVENT_TYPES)
                    )
                    caught_up = False
                    self._set_connected(True)
                    if subscribed_before:
                        self._notify("on_reconnect", ())
                    subscribed_before = True
                if not caught_up:
                    self._catch_up()
                    caught_up = True
                self._stream(self.subscription_id)
                # Closed: renew the connection with the same subscription.
                self._failures = 0
                if time.monotonic() - self._last_catch_up >= self._catch_up_interval:
                    caught_up = False  # the safety re-sync (module docstring)
                continue
            except _Stopped:
                break
            except (ErrorInvalidSubscription, ErrorSubscriptionNotFound):
                # The server forgot the subscription (expiry, failover, restart).
                log.warning("EWS subscription lost; resubscribing and catching up")
                self._lose_subscription()
            except ErrorServerBusy as exc:
                if is_connection_error(exc):
                    stale_subscription = self._drop(exc, stale_subscription)
                else:
                    seconds = back_off_seconds(exc)
                    log.warning("EWS throttled the stream; backing off %.1fs", seconds)
                    self._notify("on_throttled", (seconds,))
                    # The subscription (if any) is intact; an unfinished catch-up is redone
                    # from the last SyncState.
                    if self._stop.wait(seconds):
                        break
                    continue
            except Exception as exc:
                if self._stop.is_set():
                    break  # stop()'s socket shutdown surfaces as a connection error
                stale_subscription = self._drop(exc, stale_subscription)
            self._failures += 1
            if self._stop.wait(failure_delay(self._failures, self._back_off_cap)):
                break
        self._set_connected(False)

    def _drop(self, exc: BaseException, stale: str | None) -> str | None:
        """A connection-level failure: events in the broken body are lost, so start over
        with a new subscription (the old one is unsubscribed best-effort first)."""
        if is_connection_error(exc):
            log.warning("EWS stream dropped (%s); resubscribing", type(exc).__name__)
        else:
            log.exception("EWS stream failed unexpectedly; resubscribing")
        old = self.subscription_id
        self._lose_subscription()
        return old if old is not None else stale

    def _lose_subscription(self) -> None:
        self.subscription_id = None
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._notify("on_connected", (connected,))

    def _unsubscribe_quietly(self, subscription_id: str) -> None:
        try:
            self._queue_folder.unsubscribe(subscription_id)
        except Exception as exc:  # it may be gone already; it expires on its own anyway
            log.debug("unsubscribe of a stale subscription failed: %s", type(exc).__name__)

    def _stream(self, subscription_id: str) -> None:
        """Follow GetStreamingEvents until the server sends Closed (then return: renew)."""
        service = GetStreamingEvents(account=self._account)
        self._service = service
        try:
            notifications = service.call(
                subscription_ids=[subscription_id], connection_timeout=self._connection_timeout
            )
            for notification in notifications:
                if isinstance(notification, Exception):
                    raise notification
                self._failures = 0  # the stream works again
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

    def _ref_of(self, event: Any) -> MailRef | None:
        if not isinstance(event, TimestampEvent) or event.item_id is None:
            return None  # folder events, status (keep-alive) events
        parent = event.parent_folder_id
        if parent is None or parent.id != self._queue_id:
            return None  # e.g. the MovedEvent of an item leaving the queue for storage
        return MailRef(
            item_id=event.item_id.id,
            changekey=event.item_id.changekey,
            received_at=utc(event.timestamp),
        )

    def _catch_up(self) -> None:
        self._last_catch_up = time.monotonic()
        if self._public:
            # Public folders have no SyncFolderItems: list what is there, oldest first.
            items = (
                self._queue_folder.filter()
                .order_by("datetime_received")
                .only("id", "changekey", "datetime_received")
            )
            items.page_size = MAX_SYNC_CHANGES
            self._emit_in_batches(ref_from_item(i) for i in items if not isinstance(i, Exception))
            return
        # The folder keeps the new SyncState only once the generator is fully consumed; on a
        # failure midway the next catch-up repeats from the previous state (and dedupes).
        self._queue_folder.item_sync_state = self._sync_state
        changes = self._queue_folder.sync_items(
            sync_state=self._sync_state,
            only_fields=["datetime_received"],
            max_changes_returned=MAX_SYNC_CHANGES,
        )
        self._emit_in_batches(
            ref_from_item(item)
            for change_type, item in changes
            if change_type == "create" and not isinstance(item, Exception)
        )
        self._sync_state = self._queue_folder.item_sync_state

    def _emit_in_batches(self, refs: Iterable[MailRef]) -> None:
        batch: list[MailRef] = []
        for ref in refs:
            batch.append(ref)
            if len(batch) == EMIT_BATCH_REFS:
                self._emit(batch)
                batch = []
        self._emit(batch)

    def _emit(self, refs: Sequence[MailRef]) -> None:
        """Hand new refs to the event loop; blocks while the bounded queue is full."""
        fresh = {r.item_id: r for r in refs if r.item_id not in self._seen}
        for ref in refs:
            if ref.item_id in self._seen:
                self._seen.move_to_end(ref.item_id)
        if not fresh:
            return
        future = asyncio.run_coroutine_threadsafe(self._put_all(fresh.values()), self._loop)
        while True:
            try:
                future.result(timeout=STOP_POLL_SECONDS)
                break
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    raise _Stopped from None
            except concurrent.futures.CancelledError:
                raise _Stopped from None
        for item_id in fresh:
            self._seen[item_id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)

    async def _put_all(self, refs: Iterable[MailRef]) -> None:
        for ref in refs:
            await self._refs.put(ref)
