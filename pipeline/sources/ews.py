"""The EWS source: a queue folder and a storage folder reached through exchangelib.

    EwsSource(settings, events=None)     events: a SourceEvents (metrics hooks), optional
      open()        connect, resolve queue/storage/disposal folders (no subscription yet)
      arrivals()    start the arrivals thread (ews_stream.py) and yield its MailRefs
      fetch / move_to_storage / dispose / find_in_* / backlog
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
from exchangelib.services import MoveItem

from pipeline.config import Settings
from pipeline.errors import SourceUnavailable, Throttled
from pipeline.logs import get_logger
from pipeline.model import MailRef
from pipeline.sources import Disposal, Fetched, NoEvents, SourceEvents, Stored
from pipeline.sources.ews_connect import connect, forget_protocol, resolve_folder
from pipeline.sources.ews_convert import (
    FETCH_FIELDS,
    align,
    call_error,
    item_error,
    ref_from_item,
    to_mail,
)
from pipeline.sources.ews_stream import ArrivalStream

log = get_logger(__name__)

T = TypeVar("T")

#: How long close() waits for the stream thread, and for the final Unsubscribe.
CLOSE_WAIT_SECONDS = 5.0
#: open() runs before the pipeline's retries exist: ErrorServerBusy there is waited out (as
#: the server says) this many times before open() gives up and the process exits.
OPEN_THROTTLED_ATTEMPTS = 10


class _MoveItemOnePerInput(MoveItem):  # type: ignore[misc]
    """MoveItem yielding exactly one result per input item.

    A move into a public folder (or another mailbox) succeeds with an empty <m:Items/>, and
    exchangelib then yields nothing for that item, so its result list gets shorter and can
    no longer be matched to the inputs. Here an empty container yields None instead."""

    @classmethod
    def _get_elements_in_container(cls, container: Any) -> list[Any]:
        return list(container) or [None]


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
        log.info(
            "EWS source open: queue %s, storage %s, auth %s",
            self._queue_path,
            self._storage_path,
            self._ews.auth,
        )

    async def close(self) -> None:
        stream, thread = self._stream, self._thread
        subscription_id = stream.subscription_id if stream is not None else None
        if stream is not None and thread is not None:
            stream.stop()
            await self._wait_for_thread(stream, thread)
        if subscription_id is not None and self._executor is not None:
            # Best-effort: an abandoned subscription expires on its own, but it counts
            # against EWSMaxSubscriptions (20 on Exchange Online) until then.
            with suppress(Exception):
                await asyncio.wait_for(
                    self._call(self._queue.unsubscribe, subscription_id), CLOSE_WAIT_SECONDS
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
            stream_timeout_minutes=self._ews.stream_timeout_minutes,
            catch_up_interval_seconds=limits.catch_up_interval_seconds,
            back_off_cap_seconds=limits.retry_max_wait_seconds,
            loop=self._loop,
            refs=refs,
            notify=self._notify_from_thread,
        )
        self._thread = threading.Thread(target=self._stream.run, name="ews-stream", daemon=True)
        self._thread.start()
        while True:
            yield await refs.get()

    def _notify_from_thread(self, hook: str, args: tuple[Any, ...]) -> None:
        """Run a SourceEvents hook on the event loop (called from the stream thread)."""
        if self._loop is None:
            return
        callback: Callable[..., None] = getattr(self._events, hook)
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
        account, queue, ids = self._account, self._queue, _ids(refs)
        results = await self._call(
            lambda: list(
                account.fetch(
                    ids=ids, folder=queue, only_fields=list(FETCH_FIELDS), chunk_size=len(ids)
                )
            )
        )
        out: list[Fetched | Exception] = []
        for ref, result in zip(refs, align(results, len(refs), "GetItem"), strict=True):
            out.append(
                self._item_error(result)
                if isinstance(result, Exception)
                else Fetched(ref=ref, mail=to_mail(result))
            )
        return out

    async def move_to_storage(self, refs: Sequence[MailRef]) -> list[Stored | Exception]:
        results = await self._move(refs, self._storage)
        out: list[Stored | Exception] = []
        for result in results:
            if isinstance(result, Exception):
                out.append(self._item_error(result))
            elif result is None:  # moved into a public folder: the server returns no id
                out.append(Stored(item_id=None))
            else:
                new_id, _changekey = result
                out.append(Stored(item_id=new_id))
        return out

    async def dispose(self, refs: Sequence[MailRef], how: Disposal) -> list[Exception | None]:
        if not refs:
            return []
        results: list[Any]
        if how is Disposal.MOVE:
            if self._disposal_folder is None:
                raise RuntimeError("Disposal.MOVE needs EMAILLOG_DISPOSAL=move:<folder>")
            results = await self._move(refs, self._disposal_folder)
        else:
            delete_type = HARD_DELETE if how is Disposal.HARD_DELETE else MOVE_TO_DELETED_ITEMS
            account, ids = self._account, _ids(refs)
            deleted = await self._call(
                lambda: account.bulk_delete(ids=ids, delete_type=delete_type, chunk_size=len(ids))
            )
            results = align(deleted, len(refs), "DeleteItem")
        return [self._item_error(r) if isinstance(r, Exception) else None for r in results]

    async def find_in_queue(self, message_id: str) -> list[MailRef]:
        items = await self._find(self._queue, message_id)
        return [ref_from_item(item) for item in items]

    async def find_in_storage(self, message_id: str) -> list[Stored]:
        items = await self._find(self._storage, message_id)
        return [Stored(item_id=item.id) for item in items]

    async def find_in_queue_by_key(self, dedupe_key: str) -> list[MailRef]:
        items = await self._find_by_key(self._queue, dedupe_key)
        return [ref_from_item(item) for item in items]

    async def find_in_storage_by_key(self, dedupe_key: str) -> list[Stored]:
        items = await self._find_by_key(self._storage, dedupe_key)
        return [Stored(item_id=item.id) for item in items]

    # --- helpers ---

    async def _move(self, refs: Sequence[MailRef], folder: Any) -> list[Any]:
        if not refs:
            return []
        account, ids = self._account, _ids(refs)
        results = await self._call(
            lambda: list(
                _MoveItemOnePerInput(account=account, chunk_size=len(ids)).call(
                    items=ids, to_folder=folder
                )
            )
        )
        return align(results, len(refs), "MoveItem")

    async def _find(self, folder: Any, message_id: str) -> list[Any]:
        # FindItem with a restriction on message:InternetMessageId; id-only fields keep it a
        # single FindItem (no follow-up GetItem).
        def find() -> list[Any]:
            found = folder.filter(message_id=message_id).only(
                "id", "changekey", "datetime_received"
            )
            return [item for item in found if not isinstance(item, Exception)]

        return await self._call(find)

    async def _find_by_key(self, folder: Any, dedupe_key: str) -> list[Any]:
        # A content hash cannot go into a restriction: FindItem (paged) lists the items that
        # have no message:InternetMessageId, exchangelib follows up with GetItem for
        # FETCH_FIELDS, and each key is recomputed by `to_mail`, exactly as `fetch` does.
        # Cost: one pass over the folder's items without a Message-ID (usually few).
        def find() -> list[Any]:
            found = folder.filter(message_id__exists=False).only("id", "changekey", *FETCH_FIELDS)
            return [
                item
                for item in found
                if not isinstance(item, Exception) and to_mail(item).dedupe_key == dedupe_key
            ]

        return await self._call(find)

    def _item_error(self, exc: Exception) -> Exception:
        translated = item_error(exc)
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

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking exchangelib call on our pool; translate its errors."""
        if self._executor is None:
            raise SourceUnavailable("EWS source is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except Exception as exc:
            translated = call_error(exc)
            if isinstance(translated, Throttled) and isinstance(exc, ErrorServerBusy):
                self._events.on_throttled(translated.retry_after)
            if translated is exc:
                raise
            raise translated from exc
