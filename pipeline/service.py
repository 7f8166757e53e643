"""The service: the flow, the reconciler and the HTTP server in one TaskGroup.

    await serve(settings, shutdown=stop_event.wait)

What happens to a queue item is declared in `flow.py` (the topology, top-down) and how it
ends is accounted for in `ledger.py`; this module starts and stops them:

    serve ─ open the database (migrations) and the source
      └─ one TaskGroup:  HTTP (/metrics /livez /readyz) · the web UI and REST API
                         (EMAILLOG_UI_PORT, unless 0) · directory watcher · backlog poll
                         · every stage's workers · phase one: reconcile once, then intake
                           and the periodic reconciler

Memory stays bounded whatever the backlog: intake admits at most
EMAILLOG_MAX_IN_FLIGHT_MESSAGES items and every stage's inbox holds at most
EMAILLOG_STAGE_QUEUE_MESSAGES, so a slow database or mail server makes intake wait.

No mail is taken while the directory lacks the e-mail interaction template
(`setup_check.SetupGate`): /readyz says why, and intake resumes once it is imported.

Shutdown (hypercorn's pattern, arq's drain): when `shutdown()` returns, /readyz turns 503
and phase one (intake and the reconciler) is cancelled; in-flight messages get
EMAILLOG_DRAIN_TIMEOUT_SECONDS to finish; then every task is cancelled. Whatever was cut
short is safe: it is still in the queue, or claimed in state 'moving' for the reconciler.
A task that crashes cancels the rest and `serve()` raises, so the process exits non-zero
and the orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from pipeline.config import Settings
from pipeline.directory import Directory
from pipeline.flow import Deps, Flow, topology
from pipeline.http import build_app, serve_http
from pipeline.ledger import Ledger
from pipeline.logs import get_logger
from pipeline.metrics import Metrics, SourceMetrics
from pipeline.reconciler import Reconciler
from pipeline.rules import Policy
from pipeline.runner import RetryPolicy
from pipeline.setup_check import SetupGate
from pipeline.sources import MailSource, UsesDatabase
from pipeline.sources.factory import build_source
from pipeline.store.db import open_database
from pipeline.store.directory_repo import DirectoryWatcher
from pipeline.web.app import serve_web
from pipeline.web.deps import SourceStatus, WebDeps
from pipeline.web.mime import mime_fetcher

log = get_logger(__name__)


async def serve(
    settings: Settings,
    *,
    shutdown: Callable[[], Awaitable[object]],
    source: MailSource | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Run until `shutdown()` returns, then drain and return.

    `source` defaults to the one EMAILLOG_SOURCE names (with metrics hooks); `serve` opens
    and closes whichever source it runs. `metrics` lets a caller read the counters.
    Migrations are applied at start.
    """
    metrics = metrics if metrics is not None else Metrics()
    events = SourceMetrics(metrics)
    if source is None:
        source = build_source(settings, events)
    async with open_database(settings.database) as db:
        if isinstance(source, UsesDatabase):  # the Graph source keeps its delta link there
            source.use_database(db.pool)
        await source.open()
        try:
            setup = SetupGate(settings.rules.email_template_code, metrics)

            def on_reload(directory: Directory) -> None:
                metrics.directory_reloads.inc()
                setup.on_reload(directory)

            watcher = DirectoryWatcher(db, on_reload=on_reload)
            service = _Service(settings, db.pool, source, watcher, metrics, setup, events)
            await service.run(shutdown)
        finally:
            await source.close()


class _Stop(Exception):
    """Raised in the TaskGroup's body after the drain, to cancel every remaining task."""


@dataclass
class _Service:
    settings: Settings
    pool: asyncpg.Pool
    source: MailSource
    watcher: DirectoryWatcher
    metrics: Metrics
    #: Open while the directory has what logging needs (the e-mail template).
    setup: SetupGate
    #: The source's hooks when `serve` built the source (its mode for the UI's status).
    events: SourceMetrics
    started: bool = False
    stopping: bool = False

    def __post_init__(self) -> None:
        limits = self.settings.limits
        self.ledger = Ledger(
            self.pool,
            mailbox=self.source.mailbox,
            metrics=self.metrics,
            max_in_flight_messages=limits.max_in_flight_messages,
            retry_max_wait_seconds=limits.retry_max_wait_seconds,
        )
        deps = Deps(
            source=self.source,
            ledger=self.ledger,
            directory=lambda: self.watcher.current,
            policy=Policy.from_settings(self.settings.rules),
            template_code=self.settings.rules.email_template_code,
            disposal=self.settings.source.disposal.how,
        )
        self.flow = Flow(
            topology(deps, self.settings),
            self.ledger,
            self.metrics,
            RetryPolicy(limits.retry_max_attempts, limits.retry_max_wait_seconds),
            inbox_messages=limits.stage_queue_messages,
            batch_wait_seconds=limits.batch_wait_ms / 1000,
        )
        self.reconciler = Reconciler(self.pool, self.source, self.ledger, self.metrics)
        source = self.source
        self.metrics.source_connected.set_function(lambda: 1.0 if source.connected else 0.0)

    async def run(self, shutdown: Callable[[], Awaitable[object]]) -> None:
        settings = self.settings
        try:
            async with asyncio.TaskGroup() as tg:
                app = build_app(self.metrics, self.readiness, lambda: self.setup.problems)
                tg.create_task(serve_http(app, host=settings.http.host, port=settings.http.port))
                if settings.ui.port != 0:
                    tg.create_task(serve_web(self.web_deps()))
                tg.create_task(self.watcher.run())
                tg.create_task(
                    _poll_backlog(self.source, self.metrics, settings.limits.backlog_poll_seconds)
                )
                for worker in self.flow.workers():
                    tg.create_task(worker)
                phase_one = tg.create_task(self.intake())

                await shutdown()
                self.stopping = True
                phase_one.cancel()
                await self.drain()
                raise _Stop
        except* _Stop:
            pass
        ledger = self.ledger
        log.info(
            "service stopped",
            extra={
                "fields": {
                    "disposed": ledger.disposed,
                    "failed": ledger.failed,
                    "cancelled_in_flight": len(ledger),
                }
            },
        )

    def web_deps(self) -> WebDeps:
        """What the web UI needs: the pool, the stored messages, the intake's state."""
        source, events, kind = self.source, self.events, self.settings.source.kind.value

        def status() -> SourceStatus:
            return SourceStatus(kind, source.mailbox, source.connected, events.mode)

        return WebDeps(self.pool, self.settings, mime_fetcher(source), source_status=status)

    async def intake(self) -> None:
        """Phase one, cancelled together at shutdown: the reconciler and intake."""
        await self.watcher.ready.wait()
        await self.setup.open.wait()  # no mail while the e-mail template is missing
        await self.reconciler.run_once_logged()  # finish half-done claims before new mail
        async with asyncio.TaskGroup() as phase_one:
            interval = self.settings.limits.reconcile_interval_seconds
            phase_one.create_task(self.reconciler.run(interval))
            self.started = True
            log.info("service started: taking mail from the queue")
            phase_one.create_task(self.flow.take_in(self.source, self.setup.open))

    async def drain(self) -> None:
        log.info(
            "shutdown: intake stopped, draining", extra={"fields": {"in_flight": len(self.ledger)}}
        )
        try:
            async with asyncio.timeout(self.settings.limits.drain_timeout_seconds):
                await self.ledger.wait_idle()
        except TimeoutError:
            log.warning(
                "drain timeout: cancelling the rest (it stays in the queue or 'moving')",
                extra={"fields": {"in_flight": len(self.ledger)}},
            )

    async def readiness(self) -> dict[str, bool]:
        timeout = self.settings.http.ready_timeout_seconds
        return {
            "database": await _database_reachable(self.pool, timeout),
            "source": self.source.connected,
            "started": self.started,
            "accepting": not self.stopping,
            "email_template": self.watcher.ready.is_set() and not self.setup.problems,
        }


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
