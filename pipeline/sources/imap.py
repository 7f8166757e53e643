"""The IMAP source: a queue folder and a storage folder on any IMAP4rev1 server.

    ImapSource(settings, events=None)
      open()        connect, resolve the folders (LIST delimiter, \\Trash special-use)
      arrivals()    catch up by UID, then IDLE (RFC 2177), re-issued every
                    `imap_idle_renew_seconds`; polls every `poll_interval_seconds` when the
                    server has no IDLE or refuses it; reconnects and catches up when lost
      fetch / move_to_storage / dispose / find_in_* / backlog
                    one UID command per batch on the worker connection (imap_ops.py)
      close()       interrupt IDLE, LOGOUT both connections

Threads: imapclient (over the standard library's imaplib) is synchronous, and an IMAP
connection is one conversation at a time. So there are two connections, each confined to
its own single thread: the worker (batches, in call order) and the watcher (arrivals). The
README says why imapclient in threads rather than aioimaplib, with the measurement.

Item ids are `<UIDVALIDITY>:<UID>` of the queue folder; stored items carry the storage
folder's, with an RFC 5092 IMAP URL as their link. A UIDVALIDITY change of the queue makes
arrivals report the whole queue again (a full resync: the journal absorbs repeats), and
makes every older ref `ItemGone`. `mailbox` is the IMAP user name: the journal keys stored
messages by (mailbox, Message-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from imapclient import IMAPClient

from pipeline.config import Settings
from pipeline.errors import (
    EmailLogError,
    FolderNotFound,
    ItemGone,
    SourceUnavailable,
    Throttled,
    describe,
)
from pipeline.logs import get_logger
from pipeline.model import MailRef
from pipeline.sources import Disposal, Fetched, NoEvents, SourceEvents, Stored
from pipeline.sources.imap_conn import CONNECTION_ERRORS, Folders, failure, resolve_folders
from pipeline.sources.imap_ops import Session, parse_item_id

log = get_logger(__name__)

T = TypeVar("T")

#: Pause before reconnecting the watcher after its connection was lost.
RECONNECT_DELAY_SECONDS = 0.2
#: The longest pause between reconnection attempts (doubling from the one above).
RECONNECT_MAX_DELAY_SECONDS = 30.0
#: How long close() waits for each connection's LOGOUT.
CLOSE_WAIT_SECONDS = 5.0


def _guarded(session: Session, what: str, call: Callable[[], T]) -> T:
    """Run `call` on `session`'s thread; map failures to the pipeline's errors."""
    try:
        return call()
    except EmailLogError:
        raise
    except CONNECTION_ERRORS as exc:
        session.drop()  # the conversation is broken: the next call reconnects
        raise failure(exc, what) from exc
    except IMAPClient.Error as exc:
        raise failure(exc, what) from exc


class ImapSource:
    """`MailSource` over IMAP. See the module docstring."""

    def __init__(self, settings: Settings, events: SourceEvents | None = None) -> None:
        self._cfg = settings.source.imap
        self._source = settings.source
        self._events: SourceEvents = events if events is not None else NoEvents()
        self._poll_seconds = settings.source.poll_interval_seconds
        # Each IDLE ends with a catch-up by UID: ending it at least every catch-up interval
        # is the safety re-sync (a server may lose a notification without telling).
        self._idle_seconds = min(
            settings.source.imap.idle_renew_seconds, settings.limits.catch_up_interval_seconds
        )
        self._worker = Session(self._cfg)
        self._watcher = Session(self._cfg)
        self._worker_thread: ThreadPoolExecutor | None = None
        self._watcher_thread: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._open = False
        self._consumed = False
        self._connected = False
        self._mode: str | None = None

    # --- identity, state, lifecycle ---

    @property
    def mailbox(self) -> str:
        return self._cfg.username

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def folders(self) -> Folders:
        if self._worker.folders is None:
            raise SourceUnavailable("IMAP source is not open")
        return self._worker.folders

    async def open(self) -> None:
        self._stop.clear()
        self._worker_thread = ThreadPoolExecutor(1, thread_name_prefix="imap-worker")
        self._watcher_thread = ThreadPoolExecutor(1, thread_name_prefix="imap-watcher")
        self._open = True
        self._consumed = False
        src = self._source
        try:
            folders = await self._call(
                "open",
                lambda: resolve_folders(
                    self._worker.ensure(),
                    src.queue_folder,
                    src.storage_folder,
                    src.disposal.folder,
                ),
            )
        except BaseException:
            await self.close()
            raise
        if self._source.disposal.how is Disposal.TRASH and folders.trash is None:
            await self.close()
            raise FolderNotFound("EMAILLOG_DISPOSAL=trash: the server has no \\Trash folder")
        self._worker.folders = self._watcher.folders = folders
        log.info(
            "imap source open",
            extra={"fields": {"queue": folders.queue, "storage": folders.storage}},
        )

    async def close(self) -> None:
        was_open, self._open = self._open, False
        self._stop.set()
        self._set_connected(False)
        client = self._watcher.client
        if client is not None:  # wake the watcher thread out of select() at once
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown: SSLSocket's would tear down TLS state that
                # the watcher thread may be using right now.
                socket.socket.shutdown(client.socket(), socket.SHUT_RDWR)
        pools = [(self._worker, self._worker_thread), (self._watcher, self._watcher_thread)]
        self._worker_thread = self._watcher_thread = None
        for session, pool in pools:
            if pool is None:
                continue
            future = asyncio.get_running_loop().run_in_executor(pool, session.logout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, CLOSE_WAIT_SECONDS)
            pool.shutdown(wait=False)
        if was_open:
            log.info("imap source closed")

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            self._events.on_connected(connected)

    async def _call(self, what: str, call: Callable[[], T], watcher: bool = False) -> T:
        """`call` on the worker's (or watcher's) thread; Throttled is reported to events."""
        pool = self._watcher_thread if watcher else self._worker_thread
        if not self._open or pool is None:
            raise SourceUnavailable("IMAP source is not open")
        session = self._watcher if watcher else self._worker
        job = functools.partial(_guarded, session, what, call)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, job)
        except Throttled as exc:
            self._events.on_throttled(exc.retry_after)
            raise

    # --- arrivals ---

    async def arrivals(self) -> AsyncIterator[MailRef]:
        """As the protocol says: catch up, then IDLE (or poll); on a lost connection,
        reconnect and catch up from the last UID seen; a new UIDVALIDITY restarts at 0."""
        if not self._open:
            raise RuntimeError("ImapSource.arrivals() before open()")
        if self._consumed:
            raise RuntimeError("ImapSource.arrivals() supports one consumer per open()")
        self._consumed = True
        validity, last_uid, delay, subscribed = None, 0, RECONNECT_DELAY_SECONDS, False
        while self._open:
            try:
                current, push = await self._call("select", self._watch_select, True)
            except Exception as exc:  # SourceUnavailable, Throttled, FolderNotFound, ...
                log.warning(
                    "imap watcher cannot connect", extra={"fields": {"error": describe(exc)}}
                )
                await asyncio.sleep(getattr(exc, "retry_after", delay))
                delay = min(delay * 2, RECONNECT_MAX_DELAY_SECONDS)
                continue
            self._set_mode("streaming" if push else "polling")
            self._set_connected(True)
            if subscribed:
                self._events.on_reconnect()
            subscribed = True
            if current != validity:
                if validity is not None:
                    log.warning("imap queue UIDVALIDITY changed: full resync")
                validity, last_uid = current, 0
            try:
                while True:
                    news = await self._call(
                        "catch-up", functools.partial(self._watcher.new_since, last_uid), True
                    )
                    delay = RECONNECT_DELAY_SECONDS  # caught up: the connection works
                    for ref in news:
                        last_uid = max(last_uid, _uid(ref))
                        yield ref
                    await self._wait_for_news()
            except Exception as exc:  # any failure of the watcher: reconnect, catch up again
                if self._open:
                    log.warning("imap watcher lost", extra={"fields": {"error": describe(exc)}})
                    self._set_connected(False)
                    await self._call_quietly(self._watcher.drop)
                    await asyncio.sleep(delay)  # doubling while it keeps failing
                    delay = min(delay * 2, RECONNECT_MAX_DELAY_SECONDS)
        await asyncio.get_running_loop().create_future()  # closed: wait to be cancelled

    def _watch_select(self) -> tuple[int, bool]:
        """(UIDVALIDITY of the queue, whether the server offers IDLE)."""
        client = self._watcher.select(self.folders.queue)
        return self._watcher.uidvalidity, bool(client.has_capability("IDLE"))

    async def _wait_for_news(self) -> None:
        renew, loop = self._idle_seconds, asyncio.get_running_loop()

        def idling() -> None:  # on the watcher thread; events are called on the loop's
            loop.call_soon_threadsafe(self._set_mode, "streaming")

        idled = await self._call(
            "idle", lambda: self._watcher.idle_wait(renew, self._stop, idling), watcher=True
        )
        if not idled:
            self._set_mode("polling")  # no IDLE, or the server refused it
            await asyncio.sleep(self._poll_seconds)

    def _set_mode(self, mode: str) -> None:
        """IDLE is this source's push ("streaming"); without it, polling."""
        if mode != self._mode:
            self._mode = mode
            self._events.on_mode(mode)

    async def _call_quietly(self, call: Callable[[], None]) -> None:
        with contextlib.suppress(Exception):
            await self._call("drop", call, True)

    # --- batch operations ---

    async def backlog(self) -> int:
        return await self._call("status", self._worker.count)

    async def fetch(self, refs: Sequence[MailRef]) -> list[Fetched | Exception]:
        if not refs:
            return []
        return await self._call("fetch", lambda: self._worker.fetch(refs))

    async def move_to_storage(self, refs: Sequence[MailRef]) -> list[Stored | Exception]:
        if not refs:
            return []
        moved = await self._call("move", lambda: self._worker.move(refs, self.folders.storage))
        out: list[Stored | Exception] = []
        for ref in refs:
            if ref.item_id not in moved:
                out.append(ItemGone(f"IMAP item {ref.item_id} is not in the queue"))
            elif (target := moved[ref.item_id]) is None:
                out.append(Stored(item_id=None))  # moved; the server sent no COPYUID
            else:
                out.append(self._worker.stored(*target))
        return out

    async def dispose(self, refs: Sequence[MailRef], how: Disposal) -> list[Exception | None]:
        if not refs:
            return []
        if how is Disposal.HARD_DELETE:
            done = await self._call("delete", lambda: self._worker.delete(refs))
        else:
            target = self.folders.trash if how is Disposal.TRASH else self.folders.disposal
            if target is None:
                raise FolderNotFound(f"EMAILLOG_DISPOSAL: no IMAP folder for {how.value}")
            done = set(await self._call(how.value, lambda: self._worker.move(refs, target)))
        return [
            None if ref.item_id in done else ItemGone(f"IMAP item {ref.item_id} is gone")
            for ref in refs
        ]

    async def fetch_stored_mime(self, item_id: str) -> bytes:
        raw = await self._call("fetch", lambda: self._worker.stored_mime(item_id))
        if raw is None:
            raise ItemGone(f"IMAP item {item_id} is not in the storage folder")
        return raw

    async def find_in_queue(self, message_id: str) -> list[MailRef]:
        found = await self._call(
            "search", lambda: self._worker.find(self.folders.queue, message_id, "")
        )
        return [MailRef(i, received_at=mail.received_at) for i, mail in found]

    async def find_in_storage(self, message_id: str) -> list[Stored]:
        found = await self._call(
            "search", lambda: self._worker.find(self.folders.storage, message_id, "")
        )
        return [self._stored(i) for i, _ in found]

    async def find_in_queue_by_key(self, dedupe_key: str) -> list[MailRef]:
        found = await self._call(
            "search", lambda: self._worker.find(self.folders.queue, None, dedupe_key)
        )
        return [MailRef(i, received_at=mail.received_at) for i, mail in found]

    async def find_in_storage_by_key(self, dedupe_key: str) -> list[Stored]:
        found = await self._call(
            "search", lambda: self._worker.find(self.folders.storage, None, dedupe_key)
        )
        return [self._stored(i) for i, _ in found]

    def _stored(self, item_id: str) -> Stored:
        parsed = parse_item_id(item_id)
        assert parsed is not None
        return self._worker.stored(*parsed)


def _uid(ref: MailRef) -> int:
    parsed = parse_item_id(ref.item_id)
    return parsed[1] if parsed else 0
