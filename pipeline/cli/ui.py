"""`emaillog ui`: the web UI and REST API on their own, until SIGTERM or SIGINT.

For readers scaled apart from the ingester: it reads the database and asks the mail
source only to fetch a stored message (Download .eml). So it never subscribes to the
queue (`arrivals()` is never called), takes no mail, and does not migrate: the schema
belongs to `emaillog run` / `emaillog migrate`, and a UI started against an older schema
says so and exits instead of changing it under the ingester.
"""

from __future__ import annotations

import argparse
import asyncio

from pipeline import __version__, logs
from pipeline.cli.common import Subparsers, until_signalled
from pipeline.config import Settings
from pipeline.errors import ConfigError, EmailLogError, Retryable, describe
from pipeline.logs import get_logger
from pipeline.sources import MailSource, NoEvents, UsesDatabase
from pipeline.sources.factory import build_source
from pipeline.store.db import open_database
from pipeline.store.migrate import pending_migrations
from pipeline.web.app import serve_web
from pipeline.web.deps import WebDeps
from pipeline.web.mime import mime_fetcher

log = get_logger(__name__)


class SchemaBehind(EmailLogError):
    """The database lacks migrations this version needs (the UI never applies them)."""


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="serve only the web UI and REST API (no intake)",
        description="Serve the interaction log's web UI and REST API on EMAILLOG_UI_HOST:"
        "EMAILLOG_UI_PORT, reading the database; the mail source is asked only for stored "
        "messages. Needs a current schema (emaillog migrate). Stops on SIGTERM or SIGINT.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    check(settings)  # a ConfigError: cli.main prints each problem and exits 2
    logs.configure(settings.log.level, settings.log.format)
    log.info(
        "starting ui", extra={"fields": {"version": __version__, "config": settings.redacted()}}
    )
    try:
        asyncio.run(_serve(settings))
    except ExceptionGroup as group:  # the web server failed (its port taken, ...)
        for exc in group.exceptions:
            log.error("ui failed", exc_info=exc)
        return 1
    return 0


def check(settings: Settings) -> None:
    """The source must be usable (it fetches stored messages) and the UI safe to expose."""
    if settings.ui.port == 0:
        raise ConfigError(["EMAILLOG_UI_PORT=0 turns the UI off; `emaillog ui` needs a port"])
    problems = settings.source.problems() + settings.ui.problems()
    if problems:
        raise ConfigError(problems)


async def _serve(settings: Settings) -> None:
    async with open_database(settings.database, migrate=False) as db:
        async with db.pool.acquire() as conn:
            pending = await pending_migrations(conn)
        if pending:
            raise SchemaBehind(
                f"the database schema is behind this version (missing {', '.join(pending)}): "
                "run `emaillog migrate` (or start `emaillog run`, which migrates) first"
            )
        # No metrics: this process does no intake; its source only fetches stored messages.
        source = OnDemandSource(build_source(settings, NoEvents()))
        if isinstance(source.source, UsesDatabase):
            source.source.use_database(db.pool)
        await source.open_or_wait()
        try:
            deps = WebDeps(db.pool, settings, source.fetch_mime, source_status=None)
            async with until_signalled() as stop, asyncio.TaskGroup() as tasks:
                web = tasks.create_task(serve_web(deps))
                await stop.wait()
                web.cancel()
        finally:
            await source.close()


class OnDemandSource:
    """The UI's mail source: opened at start, or, while the mail server cannot be reached,
    at the next download. The lists need only the database, so an Exchange outage must not
    keep the UI down; a missing folder (a configuration error) still stops it at start."""

    def __init__(self, source: MailSource) -> None:
        self.source = source
        self._fetch = mime_fetcher(source)
        self._opened = False
        self._lock = asyncio.Lock()

    async def open_or_wait(self) -> None:
        try:
            await self._open()
        except Retryable as exc:
            log.warning(
                "mail source unavailable; downloads of stored messages retry it",
                extra={"fields": {"error": describe(exc)}},
            )

    async def _open(self) -> None:
        async with self._lock:
            if self._opened:
                return
            try:
                await self.source.open()
            except BaseException:
                await self.source.close()  # a half-open source holds threads, sessions
                raise
            self._opened = True

    async def fetch_mime(self, item_id: str | None, message_id: str | None) -> bytes:
        await self._open()
        return await self._fetch(item_id, message_id)

    async def close(self) -> None:
        if self._opened:
            await self.source.close()
