"""The EWS source: a queue folder and a storage folder reached through exchangelib.

    EwsSource(settings, events=None)     events: a SourceEvents (metrics hooks), optional
      open()        connect, resolve queue/storage/disposal folders (no subscription yet)
      arrivals()    start the arrivals thread (ews_stream.py) and yield its MailRefs
      fetch / move_to_storage / dispose / find_in_* / backlog / fetch_stored_mime
                    one EWS request per batch, on a dedicated pool of `ews_worker_threads`
      close()       stop the stream promptly, unsubscribe best-effort, free the pool

Threads: exchangelib is synchronous. Worker calls run in our own ThreadPoolExecutor (not
asyncio's default executor, which other code shares), and the stream in its own thread.
exchangelib's connection pool is sized 1 (stream) + workers + 1 spare (ews_connect.py).

`mailbox` is `ews_mailbox` for public-folder queues too: the journal keys stored messages
by (mailbox, Message-ID), and the account we act as is the stable name we have.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

from exchangelib.errors import ErrorServerBusy
from exchangelib.items import HARD_DELETE, MOVE_TO_DELETED_ITEMS

from pipeline.config import Settings
from pipeline.errors import Retryable, SourceUnavailable, Throttled
from pipeline.logs import get_logger
from pipeline.model import MailRef
from pipeline.sources import Disposal, Fetched, NoEvents, SourceEvents, Stored
from pipeline.sources import ews_links as links
from pipeline.sources.ews_connect import connect, forget_protocol, resolve_folder
from pipeline.sources.ews_convert import align, call_error, item_error, ref_from_item, to_mail
from pipeline.sources.ews_gate import gate_for
from pipeline.sources.ews_items import additional_fields, fetch_queue_items
from pipeline.sources.ews_route import content_mailbox, run_routed
from pipeline.sources.ews_stream import ArrivalStream

log = get_logger(__name__)

T = TypeVar("T")

#: How long close() waits for the stream thread, and for the final Unsubscribe.
CLOSE_WAIT_SECONDS = 5.0
#: How often the arrivals loop looks at the stream watchdog while no ref arrives.
WATCHDOG_TICK_SECONDS = 1.0
#: open() runs before the pipeline's retries exist: ErrorServerBusy there is waited out (as
#: the server says) this many times before open() gives up and the process exits.
OPEN_THROTTLED_ATTEMPTS = 10


def _ids(refs: Sequence[MailRef]) -> list[tuple[str, None]]:
    # No ChangeKey: GetItem/MoveItem/DeleteItem do not need one, and a stale one (the item
    # was touched since the event) would only turn into a needless error.
    return [(ref.item_id, None) for ref in refs]


class EwsSource:
    """`MailSource` over Exchange Web Services. See the module docstring."""

    def __init__(self, settings: Settings, events: SourceEvents | None = None) -> None:
        self._settings = settings
        self._events: SourceEvents = events if events is not None else NoEvents()
        self._ews = settings.source.ews
        self._queue_path = settings.source.queue_folder
        self._storage_path = settings.source.storage_folder
        self._disposal_path = settings.source.disposal.folder
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._account: Any = None
        self._queue: Any = None
        self._storage: Any = None
        self._disposal_folder: Any = None
        self._stream: ArrivalStream | None = None
        self._thread: threading.Thread | None = None
        self._poll_task: asyncio.Future[None] | None = None  # a poll while the stream is silent
        # Shared by every EWS call of the process to this server (ews_gate.py).
        self._gate = gate_for(self._ews.url)
        # Public-folder content mailboxes of the queue and storage (ews_route.py).
        self._queue_route: str | None = None
        self._storage_route: str | None = None
        self._links = links.QueueLinks(2 * settings.limits.max_in_flight_messages)
        self._queue_shape: Any = None  # GetItem's AdditionalProperties (ews_items.py)

    # --- MailSource: identity and state ---

    @property
    def mailbox(self) -> str:
        return self._ews.mailbox

    @property
    def connected(self) -> bool:
        return self._stream is not None and self._stream.connected

    # --- lifecycle ---

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(
            max_workers=self._ews.worker_threads, thread_name_prefix="ews-worker"
        )
        self._account = await self._call_when_allowed(connect, self._ews)
        self._queue = await self._call_when_allowed(resolve_folder, self._account, self._queue_path)
        self._storage = await self._call_when_allowed(
            resolve_folder, self._account, self._storage_path
        )
        if self._disposal_path is not None:
            self._disposal_folder = await self._call_when_allowed(
                resolve_folder, self._account, self._disposal_path
            )
        domain = self._ews.mailbox.rpartition("@")[2]
        if self._queue_path.public:
            self._queue_route = await self._call_when_allowed(
                content_mailbox, self._account, self._queue, domain
            )
        if self._storage_path.public:
            self._storage_route = await self._call_when_allowed(
                content_mailbox, self._account, self._storage, domain
            )
        log.info(
            "EWS source open: queue %s, storage %s, auth %s",
            self._queue_path,
            self._storage_path,
            self._ews.auth,
        )

    async def close(self) -> None:
        stream, thread = self._stream, self._thread
        subscription_id = stream.subscription_id if stream is not None else None
        if self._poll_task is not None:
            self._poll_task.cancel()
        if stream is not None and thread is not None:
            stream.stop()
            await self._wait_for_thread(stream, thread)
        if subscription_id is not None and self._executor is not None:
            # Best-effort: an abandoned subscription expires on its own, but it counts
            # against EWSMaxSubscriptions (20 on Exchange Online) until then.
            with suppress(Exception):
                await asyncio.wait_for(
                    self._call(self._queue.unsubscribe, subscription_id, route=self._queue_route),
                    CLOSE_WAIT_SECONDS,
                )
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._account is not None:
            forget_protocol(self._account.protocol.config)
        self._stream = self._thread = None

    async def _wait_for_thread(self, stream: ArrivalStream, thread: threading.Thread) -> None:
        """Keep shutting the stream socket down until the thread is gone: stop() may land
        while the thread is between requests, before there is a socket to shut."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAIT_SECONDS
        while thread.is_alive() and loop.time() < deadline:
            stream.interrupt()
            await asyncio.sleep(0.02)
        if thread.is_alive():
            log.warning("EWS stream thread still busy after close; leaving it (daemon)")

    # --- arrivals ---

    async def arrivals(self) -> AsyncIterator[MailRef]:
        """The stream thread starts at the first `anext()`, not at the call. The iterator
        never ends on its own, not even at close(): cancel the task consuming it. One
        consumer per open(). Failures are retried inside (see ews_stream.py); watch
        `connected` and the SourceEvents hooks for their state."""
        if self._account is None or self._loop is None:
            raise RuntimeError("EwsSource.arrivals() before open()")
        if self._stream is not None:
            raise RuntimeError("EwsSource.arrivals() supports one consumer per open()")
        # Refs waiting between the stream thread and `arrivals()`, bounded like every queue
        # between stages: the thread blocks when it is full.
        limits = self._settings.limits
        refs: asyncio.Queue[MailRef] = asyncio.Queue(maxsize=limits.stage_queue_messages)
        self._stream = ArrivalStream(
            account=self._account,
            queue_folder=self._queue,
            public=self._queue_path.public,
            # Public folders poll unless streaming is asked for (module docstring).
            streaming=not self._queue_path.public or self._ews.public_folder_streaming,
            stream_timeout_minutes=self._ews.stream_timeout_minutes,
            catch_up_interval_seconds=limits.catch_up_interval_seconds,
            poll_interval_seconds=self._settings.source.poll_interval_seconds,
            back_off_cap_seconds=limits.retry_max_wait_seconds,
            loop=self._loop,
            refs=refs,
            notify=self._notify_from_thread,
            gate=self._gate,
            route=self._queue_route,
        )
        self._thread = threading.Thread(target=self._stream.run, name="ews-stream", daemon=True)
        self._thread.start()
        silence = self._ews.stream_silence_seconds
        while True:
            try:
                async with asyncio.timeout(WATCHDOG_TICK_SECONDS):
                    ref = await refs.get()
            except TimeoutError:
                # The stream watchdog: no bytes, not even keep-alives, for too long; and
                # polling meanwhile once the silence lasts a poll interval.
                self._stream.check_silence(silence)
                self._poll_if_silent(self._stream)
                continue
            yield ref

    def _poll_if_silent(self, stream: ArrivalStream) -> None:
        if self._poll_task is not None and not self._poll_task.done():
            return
        if stream.wants_poll(self._settings.source.poll_interval_seconds):
            # A task of its own: it may block on the refs queue this generator drains.
            poll = self._call(stream.poll_now, route=self._queue_route)
            self._poll_task = asyncio.ensure_future(poll)

    def _notify_from_thread(self, hook: str, args: tuple[Any, ...]) -> None:
        """Run a SourceEvents hook on the event loop (called from the stream thread)."""
        if self._loop is None:
            return
        callback: Callable[..., None] | None = getattr(self._events, hook, None)
        if callback is None:  # a SourceEvents written before the hook existed
            return
        with suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(callback, *args)

    # --- batch operations ---

    async def backlog(self) -> int:
        queue = self._queue
        fresh = await self._call(lambda: type(queue).resolve(account=queue.account, folder=queue))
        return int(fresh.total_count or 0)

    async def fetch(self, refs: Sequence[MailRef]) -> list[Fetched | Exception]:
        if not refs:
            return []
        if self._queue_shape is None:
            self._queue_shape = additional_fields(self._queue, links.QUEUE_FIELDS)
        results = await self._call(
            fetch_queue_items, self._account, _ids(refs), self._queue_shape, route=self._queue_route
        )
        out: list[Fetched | Exception] = []
        for ref, result in zip(refs, align(results, len(refs), "GetItem"), strict=True):
            if isinstance(result, Exception):
                out.append(self._item_error(result))
                continue
            self._links.remember(ref.item_id, result)
            out.append(Fetched(ref=ref, mail=to_mail(result)))
        return out

    async def move_to_storage(self, refs: Sequence[MailRef]) -> list[Stored | Exception]:
        # A move into a public folder returns no id: the copy is found again by its
        # Message-ID, read before the move (ews_links.py).
        wanted: list[str | None] = [None] * len(refs)
        if self._storage_path.public and refs:
            with suppress(Retryable):  # best-effort: the reconciler fills what is missing
                ids = [ref.item_id for ref in refs]
                wanted = await self._call(
                    links.message_ids, self._account, self._queue, ids, route=self._queue_route
                )
        results = await self._move(refs, self._storage)
        moved = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        new_ids = [None if results[i] is None else results[i][0] for i in moved]
        known = [
            self._links.moved(refs[i].item_id, new) for i, new in zip(moved, new_ids, strict=True)
        ]
        try:
            stored = await self._call(
                links.complete,
                self._account,
                self._storage,
                new_ids,
                [wanted[i] for i in moved],
                known,
                self._ews.url,
                route=self._storage_route,
            )
        except Retryable:  # the move happened: record what we know, the reconciler the rest
            stored = [Stored(item_id=item_id) for item_id in new_ids]
        out: list[Stored | Exception] = [
            self._item_error(r) if isinstance(r, Exception) else Stored(None) for r in results
        ]
        for i, one in zip(moved, stored, strict=True):
            out[i] = one
        return out

    async def dispose(self, refs: Sequence[MailRef], how: Disposal) -> list[Exception | None]:
        if not refs:
            return []
        self._links.forget([ref.item_id for ref in refs])
        results: list[Any]
        if how is Disposal.MOVE:
            if self._disposal_folder is None:
                raise RuntimeError("Disposal.MOVE needs EMAILLOG_DISPOSAL=move:<folder>")
            results = await self._move(refs, self._disposal_folder)
        else:
            delete_type = HARD_DELETE if how is Disposal.HARD_DELETE else MOVE_TO_DELETED_ITEMS
            account, ids = self._account, _ids(refs)
            deleted = await self._call(
                lambda: account.bulk_delete(ids=ids, delete_type=delete_type, chunk_size=len(ids)),
                route=self._queue_route,
            )
            results = align(deleted, len(refs), "DeleteItem")
        return [self._item_error(r) if isinstance(r, Exception) else None for r in results]

    async def find_in_queue(self, message_id: str) -> list[MailRef]:
        items = await self._find(self._queue, message_id)
        return [ref_from_item(item) for item in items]

    async def find_in_storage(self, message_id: str) -> list[Stored]:
        items = await self._find(self._storage, message_id, links.LINK_FIELD)
        return links.stored_of(items, self._ews.url)

    async def find_in_queue_by_key(self, dedupe_key: str) -> list[MailRef]:
        items = await self._find_by_key(self._queue, dedupe_key)
        return [ref_from_item(item) for item in items]

    async def find_in_storage_by_key(self, dedupe_key: str) -> list[Stored]:
        items = await self._find_by_key(self._storage, dedupe_key, links.LINK_FIELD)
        return links.stored_of(items, self._ews.url)

    async def fetch_stored_mime(self, item_id: str) -> bytes:
        fetch = functools.partial(links.stored_mime, self._account, self._storage, item_id)
        mime = await self._call(fetch, route=self._storage_route)
        if isinstance(mime, Exception):
            raise self._item_error(mime)
        return mime

    # --- helpers ---

    async def _move(self, refs: Sequence[MailRef], folder: Any) -> list[Any]:
        if not refs:
            return []
        account, ids = self._account, _ids(refs)
        results = await self._call(
            lambda: list(
                links.MoveItemOnePerInput(account=account, chunk_size=len(ids)).call(
                    items=ids, to_folder=folder
                )
            ),
            route=self._queue_route,  # the items moved are the queue's
        )
        return align(results, len(refs), "MoveItem")

    async def _find(self, folder: Any, message_id: str, *extra: str) -> list[Any]:
        return await self._call(
            links.find_by_message_id, folder, message_id, extra, route=self._route_of(folder)
        )

    async def _find_by_key(self, folder: Any, dedupe_key: str, *extra: str) -> list[Any]:
        return await self._call(
            links.find_by_key, folder, dedupe_key, extra, route=self._route_of(folder)
        )

    def _route_of(self, folder: Any) -> str | None:
        return self._queue_route if folder is self._queue else self._storage_route

    def _item_error(self, exc: Exception) -> Exception:
        translated = item_error(exc, self._gate.asked())
        if isinstance(translated, Throttled):
            self._events.on_throttled(translated.retry_after)
        return translated

    async def _call_when_allowed(self, fn: Callable[..., T], *args: Any) -> T:
        """`_call`, waiting out ErrorServerBusy as told (a throttled start is not a failure)."""
        for _ in range(OPEN_THROTTLED_ATTEMPTS - 1):
            try:
                return await self._call(fn, *args)
            except Throttled as exc:
                await asyncio.sleep(exc.retry_after)
        return await self._call(fn, *args)

    async def _call(self, fn: Callable[..., T], *args: Any, route: str | None = None) -> T:
        """Run a blocking exchangelib call on our pool; translate its errors. `route`: the
        public-folder content mailbox its requests go to (ews_route.py)."""
        if self._executor is None:
            raise SourceUnavailable("EWS source is not open")
        loop = asyncio.get_running_loop()
        call = functools.partial(run_routed, route, functools.partial(fn, *args))
        try:
            return await loop.run_in_executor(self._executor, call)
        except Exception as exc:
            translated = call_error(exc, self._gate.asked())
            if isinstance(translated, Throttled) and isinstance(exc, ErrorServerBusy):
                self._events.on_throttled(translated.retry_after)
            if translated is exc:
                raise
            raise translated from exc
