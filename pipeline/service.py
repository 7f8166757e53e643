"""The service: the stages wired with bounded queues in one TaskGroup; two-phase shutdown.

    await serve(settings, shutdown=stop_event.wait)

    intake ─▶ fetch ─▶ classify ─▶ dedupe ─┬─▶ move ─▶ store   (logged)
                                           └─▶ dispose         (every other outcome)

Intake admits queue items into `InFlight` (at most EMAILLOG_MAX_IN_FLIGHT_MESSAGES) and
every lane's inbox holds at most EMAILLOG_STAGE_QUEUE_MESSAGES, so a slow database or
mail server fills the queues and intake waits: memory stays bounded whatever the backlog.
Lane concurrency follows the limits already there: mail-server lanes run as many batches
as EMAILLOG_EWS_WORKER_THREADS, database lanes half of EMAILLOG_DB_POOL_CONNECTIONS each.

Shutdown (hypercorn's pattern, arq's drain): when `shutdown()` returns, /readyz turns 503
and intake stops (with the reconciler); in-flight messages get EMAILLOG_DRAIN_TIMEOUT_SECONDS
to finish; then every task is cancelled. Whatever was cut short is safe: it is still in the
queue, or claimed in state 'moving' for the reconciler. A task that crashes cancels the rest
and `serve()` raises, so the process exits non-zero and the orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from pipeline.config import Settings
from pipeline.directory import Directory, Template
from pipeline.errors import DatabaseUnavailable, EmailLogError, ItemGone
from pipeline.http import build_app, serve_http
from pipeline.inflight import InFlight
from pipeline.metrics import Metrics, SourceMetrics
from pipeline.model import Mail, MailRef, Outcome
from pipeline.reconciler import Reconciler
from pipeline.rules import Policy
from pipeline.runner import Lane, RetryPolicy, run_worker
from pipeline.sources import Fetched, MailSource
from pipeline.stages import Classified, Decided, Moved
from pipeline.stages.classify import classify
from pipeline.stages.dedupe import dedupe_and_claim
from pipeline.stages.dispose import disposal_from_setting, dispose
from pipeline.stages.fetch import fetch
from pipeline.stages.move import move_to_storage
from pipeline.stages.store import record_storage
from pipeline.store import journal
from pipeline.store.db import open_database
from pipeline.store.directory_repo import DirectoryWatcher

log = logging.getLogger("emaillog.service")


async def serve(
    settings: Settings,
    *,
    shutdown: Callable[[], Awaitable[object]],
    source: MailSource | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Run until `shutdown()` returns, then drain and return.

    `source` defaults to the EWS source built from `settings` (with metrics hooks); `serve`
    opens and closes whichever source it runs. `metrics` lets a caller read the counters.
    Migrations are applied at start.
    """
    metrics = metrics if metrics is not None else Metrics()
    if source is None:
        from pipeline.sources.ews import EwsSource  # exchangelib is slow to import: only here

        source = EwsSource(settings, events=SourceMetrics(metrics))
    async with open_database(settings) as db:
        await source.open()
        try:
            watcher = DirectoryWatcher(db, on_reload=lambda _: metrics.directory_reloads.inc())
            await _run(settings, db.pool, source, watcher, metrics, shutdown)
        finally:
            await source.close()


class _Stop(Exception):
    """Raised in the TaskGroup's body after the drain, to cancel every remaining task."""


@dataclass
class _Lifecycle:
    started: bool = False
    stopping: bool = False


async def _run(
    settings: Settings,
    pool: asyncpg.Pool,
    source: MailSource,
    watcher: DirectoryWatcher,
    metrics: Metrics,
    shutdown: Callable[[], Awaitable[object]],
) -> None:
    pipeline = Pipeline(settings, pool, source, lambda: watcher.current, metrics)
    reconciler = Reconciler(pool, source, pipeline.in_flight, metrics)
    lifecycle = _Lifecycle()
    metrics.source_connected.set_function(lambda: 1.0 if source.connected else 0.0)
    metrics.in_flight_limit.set(settings.max_in_flight_messages)
    retry = RetryPolicy(settings.retry_max_attempts, settings.retry_max_wait_seconds)

    async def readiness() -> dict[str, bool]:
        return {
            "database": await _database_reachable(pool, settings.ready_timeout_seconds),
            "source": source.connected,
            "started": lifecycle.started,
            "accepting": not lifecycle.stopping,
        }

    async def intake() -> None:
        """Phase-1 work, cancelled together at shutdown: reconciler and intake."""
        await watcher.ready.wait()
        await reconciler.run_once_logged()  # finish half-done claims before taking new mail
        async with asyncio.TaskGroup() as phase_one:
            phase_one.create_task(reconciler.run(settings.reconcile_interval_seconds))
            lifecycle.started = True
            log.info("service started: taking mail from the queue")
            phase_one.create_task(pipeline.take_in())

    try:
        async with asyncio.TaskGroup() as tg:
            app = build_app(metrics, readiness)
            tg.create_task(serve_http(app, host=settings.http_host, port=settings.http_port))
            tg.create_task(watcher.run())
            tg.create_task(_poll_backlog(source, metrics, settings.backlog_poll_seconds))
            for lane in pipeline.lanes():
                for _ in range(lane.concurrency):
                    tg.create_task(run_worker(lane, retry, metrics))
            intake_task = tg.create_task(intake())

            await shutdown()
            lifecycle.stopping = True
            intake_task.cancel()
            log.info(
                "shutdown: intake stopped, draining",
                extra={"fields": {"in_flight": len(pipeline.in_flight)}},
            )
            try:
                async with asyncio.timeout(settings.drain_timeout_seconds):
                    await pipeline.in_flight.wait_idle()
            except TimeoutError:
                log.warning(
                    "drain timeout: cancelling the rest (it stays in the queue or 'moving')",
                    extra={"fields": {"in_flight": len(pipeline.in_flight)}},
                )
            raise _Stop
    except* _Stop:
        pass
    log.info(
        "service stopped",
        extra={
            "fields": {
                "disposed": pipeline.disposed,
                "failed": pipeline.failed,
                "cancelled_in_flight": len(pipeline.in_flight),
            }
        },
    )


class _Tracked(Protocol):
    """Any item after fetch: it knows its queue item and its message."""

    @property
    def ref(self) -> MailRef: ...

    @property
    def mail(self) -> Mail: ...


class Pipeline:
    """The lanes, their queues and what happens to an item between and after them."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        source: MailSource,
        directory: Callable[[], Directory],
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.source = source
        self.directory = directory
        self.metrics = metrics
        self.policy = Policy.from_settings(settings)
        self.disposal = disposal_from_setting(settings.disposal)
        self.in_flight = InFlight(settings.max_in_flight_messages, on_change=metrics.in_flight.set)
        #: Items that failed after bounded retries: left in the queue, not retried this run.
        self.failed_ids: set[str] = set()
        self.disposed = 0
        self.failed = 0
        size = settings.stage_queue_messages
        self.to_fetch: asyncio.Queue[MailRef] = asyncio.Queue(size)
        self.to_classify: asyncio.Queue[Fetched] = asyncio.Queue(size)
        self.to_dedupe: asyncio.Queue[Classified] = asyncio.Queue(size)
        self.to_move: asyncio.Queue[Decided] = asyncio.Queue(size)
        self.to_store: asyncio.Queue[Moved] = asyncio.Queue(size)
        self.to_dispose: asyncio.Queue[Decided] = asyncio.Queue(size)

    def lanes(self) -> list[Lane[Any, Any]]:
        s = self.settings
        wait = s.batch_wait_ms / 1000
        source = s.ews_worker_threads  # each mail-server batch holds one worker thread
        db = max(1, s.db_pool_connections // 2)  # two database lanes share the pool
        lane = functools.partial(Lane, batch_wait_seconds=wait)
        return [
            lane("fetch", self.to_fetch, self._fetch, self._fetched, self._fail_ref,
                 batch_messages=s.fetch_batch_messages, concurrency=source),
            lane("classify", self.to_classify, self._classify, self._classified, self._fail_item,
                 batch_messages=s.fetch_batch_messages, concurrency=1),
            lane("dedupe", self.to_dedupe, self._dedupe, self._decided, self._fail_item,
                 batch_messages=s.store_batch_messages, concurrency=db),
            lane("move", self.to_move, self._move, self._moved, self._fail_item,
                 batch_messages=s.move_batch_messages, concurrency=source),
            lane("store", self.to_store, self._store, self._stored, self._fail_item,
                 batch_messages=s.store_batch_messages, concurrency=db),
            lane("dispose", self.to_dispose, self._dispose, self._disposed, self._fail_item,
                 batch_messages=s.move_batch_messages, concurrency=source),
        ]  # fmt: skip

    async def take_in(self) -> None:
        """Admit arrivals into the pipeline; waits while the in-flight cap is reached."""
        async for ref in self.source.arrivals():
            if ref.item_id in self.failed_ids:
                continue
            if not await self.in_flight.admit(ref.item_id):
                continue  # already in flight: sources may repeat an arrival
            try:
                await self.to_fetch.put(ref)
            except BaseException:
                self.in_flight.release(ref.item_id)
                raise

    # --- stages, bound to their dependencies ---

    async def _fetch(self, refs: Sequence[MailRef]) -> list[Fetched | Exception]:
        return await fetch(self.source, refs)

    async def _classify(self, items: Sequence[Fetched]) -> list[Classified | Exception]:
        return await classify(items, self.directory(), self.policy)

    async def _dedupe(self, items: Sequence[Classified]) -> list[Decided | Exception]:
        return await dedupe_and_claim(
            self.pool, mailbox=self.source.mailbox, items=items, template=self._template()
        )

    async def _move(self, items: Sequence[Decided]) -> list[Moved | Exception]:
        return await move_to_storage(self.source, items)

    async def _store(self, items: Sequence[Moved]) -> list[bool | Exception]:
        return await record_storage(self.pool, mailbox=self.source.mailbox, items=items)

    async def _dispose(self, items: Sequence[Decided]) -> list[Exception | None]:
        return await dispose(self.source, items, self.disposal)

    def _template(self) -> Template:
        code = self.settings.email_template_code
        found = self.directory().template(code)
        return found or Template(code, "", "", Decimal(0), Decimal(0))

    # --- between lanes ---

    async def _fetched(self, _: MailRef, item: Fetched) -> None:
        await self.to_classify.put(item)

    async def _classified(self, _: Fetched, item: Classified) -> None:
        await self.to_dedupe.put(item)

    async def _decided(self, _: Classified, item: Decided) -> None:
        recorded = item.recorded
        # Counted when the disposal_log row is written, so metrics agree with the log.
        if recorded.newly_recorded:
            self.metrics.messages.labels(recorded.decision.outcome.value).inc()
        if recorded.entries_written:
            self.metrics.interactions_logged.inc(recorded.entries_written)
        if recorded.claim is journal.Claim.NONE:
            await self.to_dispose.put(item)
        else:
            await self.to_move.put(item)

    async def _moved(self, _: Decided, item: Moved) -> None:
        await self.to_store.put(item)

    async def _stored(self, item: Moved, newly_recorded: bool) -> None:
        if newly_recorded:
            self.metrics.messages.labels(Outcome.LOGGED.value).inc()
        self._finish(item.decided)

    async def _disposed(self, item: Decided, _: None) -> None:
        self._finish(item)

    # --- the end of an item ---

    def _finish(self, item: Decided) -> None:
        pipeline_seconds = self.in_flight.release(item.ref.item_id) or 0.0
        now = time.time()
        fields: dict[str, object] = {
            "outcome": item.decision.outcome.value,
            "rule": item.decision.rule,
            "message_id_hash": journal.message_id_hash(item.mail),
            "entries": item.recorded.entries_written,
            "claim": item.recorded.claim.value,
            "pipeline_ms": round(pipeline_seconds * 1000, 1),
        }
        if item.ref.received_at is not None:
            end_to_end = max(0.0, now - item.ref.received_at.timestamp())
            self.metrics.end_to_end.observe(end_to_end)
            fields["end_to_end_ms"] = round(end_to_end * 1000, 1)
        self.metrics.last_disposed.set(now)
        self.disposed += 1
        log.info("disposed", extra={"fields": fields})

    async def _fail_ref(self, ref: MailRef, exc: Exception) -> None:
        await self._fail(ref, None, exc)

    async def _fail_item(self, item: _Tracked, exc: Exception) -> None:
        await self._fail(item.ref, item.mail, exc)

    async def _fail(self, ref: MailRef, mail: Mail | None, exc: Exception) -> None:
        if isinstance(exc, ItemGone):
            # Someone else handled it (or a repeated arrival of a message we disposed of). A
            # logged one whose move found it gone stays 'moving' for the reconciler.
            self.in_flight.release(ref.item_id)
            log.debug("queue item gone", extra={"fields": {"error": str(exc)}})
            return
        reason = f"{type(exc).__name__}: {exc}"[:500]
        hashed = journal.message_id_hash(mail) if mail is not None else ""
        try:
            await self._record_failure(ref.item_id, reason, hashed)
        finally:
            self.failed_ids.add(ref.item_id)
            pipeline_seconds = self.in_flight.release(ref.item_id) or 0.0
        self.metrics.messages.labels(Outcome.FAILED.value).inc()
        self.failed += 1
        log.warning(
            "failed; left in the queue",
            extra={
                "fields": {
                    "outcome": Outcome.FAILED.value,
                    "error": reason,
                    "message_id_hash": hashed,
                    "pipeline_ms": round(pipeline_seconds * 1000, 1),
                }
            },
            # A traceback only for the unexpected: our own errors say what they are.
            exc_info=None if isinstance(exc, EmailLogError) else exc,
        )

    async def _record_failure(self, queue_item_id: str, reason: str, hashed: str) -> None:
        # A failure must be recorded, and the database may be the thing that is down.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DatabaseUnavailable),
            wait=wait_random_exponential(multiplier=0.2, max=self.settings.retry_max_wait_seconds),
        ):
            with attempt, journal.database_errors():
                async with self.pool.acquire() as conn:
                    await journal.record_failed(
                        conn,
                        mailbox=self.source.mailbox,
                        queue_item_id=queue_item_id,
                        rule=reason,
                        message_id_hash=hashed,
                    )


async def _poll_backlog(source: MailSource, metrics: Metrics, interval_seconds: float) -> None:
    while True:
        try:
            metrics.queue_backlog.set(await source.backlog())
        except Exception as exc:  # a gauge is not worth stopping for; the next poll retries
            log.debug("backlog poll failed", extra={"fields": {"error": str(exc)}})
        await asyncio.sleep(interval_seconds)


async def _database_reachable(pool: asyncpg.Pool, timeout_seconds: float) -> bool:
    try:
        async with asyncio.timeout(timeout_seconds), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception:
        return False
    return True
