"""The connection pool, and the embedded PostgreSQL server used when no URL is configured.

    async with open_database(settings) as db:   # migrates by default
        async with db.pool.acquire() as conn: ...

With `EMAILLOG_DATABASE_URL` empty, a PostgreSQL server is started with `pgserver` under
`<data_dir>/pg` (or reused when another process already runs it) and database `emaillog`
is created in it. pgserver keeps a list of the processes using a data directory and stops the
server when the last of them lets go; within one process we count our own users, so nested
`open_database` calls share the server and only the outermost one releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from pipeline.config import DatabaseSettings
from pipeline.errors import ConfigError, DatabaseUnavailable
from pipeline.logs import get_logger
from pipeline.store.migrate import apply_migrations

log = get_logger(__name__)

EMBEDDED_DATABASE = "emaillog"

# Embedded servers this process holds, by data directory: [server handle, users].
_embedded: dict[Path, list[Any]] = {}
# A thread lock, not an asyncio one: it is taken in worker threads and must not be bound
# to one event loop (tests and the CLI run several loops in one process).
_embedded_lock = threading.Lock()


@dataclass(frozen=True)
class Database:
    pool: asyncpg.Pool
    url: str
    #: How long one connection attempt may take before the database counts as unreachable.
    connect_timeout_seconds: float = 10.0


@asynccontextmanager
async def open_database(
    settings: DatabaseSettings, *, migrate: bool = True
) -> AsyncIterator[Database]:
    """A pool on the configured (or embedded) database; migrations applied unless told not to."""
    async with _server_url(settings) as url:
        timeout = settings.connect_timeout_seconds
        pool = await create_pool(url, max_size=settings.pool_connections, timeout_seconds=timeout)
        try:
            if migrate:
                async with pool.acquire() as conn:
                    await apply_migrations(conn)
            yield Database(pool=pool, url=url, connect_timeout_seconds=timeout)
        finally:
            await pool.close()


async def create_pool(url: str, *, max_size: int, timeout_seconds: float) -> asyncpg.Pool:
    """An asyncpg pool; a bad URL is a ConfigError, an unreachable server DatabaseUnavailable."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, timeout=timeout_seconds, reset=_leave_as_is
        )
    except BaseException as exc:
        raise _connect_error(url, exc, timeout_seconds) from exc
    assert pool is not None  # create_pool returns None only when awaited twice
    return pool


async def _leave_as_is(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own (it rolls back an open
    transaction and drops listeners). asyncpg's default also sends "RESET ALL; UNLISTEN *;
    CLOSE ALL; ..." to the server: one more round trip per transaction, on the hot path.
    No code of ours leaves session state on a
    pooled connection: no SET (only SET LOCAL), no LISTEN (the directory watcher has its
    own connection), no advisory locks, no cursors outside a transaction."""


async def connect(url: str, *, timeout_seconds: float) -> asyncpg.Connection:
    """One connection outside the pool (LISTEN needs its own), with the same error mapping."""
    try:
        return await asyncpg.connect(url, timeout=timeout_seconds)
    except BaseException as exc:
        raise _connect_error(url, exc, timeout_seconds) from exc


def describe_url(url: str) -> str:
    """host:port/database of a URL, without user or password (for messages and logs)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "local socket"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path or '/'}"
    except ValueError:
        return "(unparseable URL)"


def _connect_error(url: str, exc: BaseException, timeout_seconds: float) -> BaseException:
    where = describe_url(url)
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return exc
    if isinstance(exc, ValueError | asyncpg.ClientConfigurationError):
        return ConfigError([f"EMAILLOG_DATABASE_URL: not a usable PostgreSQL URL: {exc}"])
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # incl. bad password
        return ConfigError([f"EMAILLOG_DATABASE_URL: {where} refused the login: {exc}"])
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return ConfigError([f"EMAILLOG_DATABASE_URL: {exc} (server {where})"])
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {where}: no answer in {timeout_seconds:g} s"
        )
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return DatabaseUnavailable(f"cannot connect to PostgreSQL at {where}: {reason}")


@asynccontextmanager
async def _server_url(settings: DatabaseSettings) -> AsyncIterator[str]:
    if settings.url:
        yield settings.url
        return
    pgdata = (settings.data_dir / "pg").expanduser().resolve()
    server = await _acquire_embedded(pgdata)
    try:
        url = server.get_uri(EMBEDDED_DATABASE)
        await _ensure_database(
            server.get_uri("postgres"), EMBEDDED_DATABASE, settings.connect_timeout_seconds
        )
        yield url
    finally:
        await _release_embedded(pgdata)


async def _acquire_embedded(pgdata: Path) -> Any:
    # get_server is blocking (initdb, pg_ctl start -w): run it in a thread, off the event loop.
    try:
        server = await asyncio.to_thread(_acquire_embedded_sync, pgdata)
    except Exception as exc:
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc} "
            f"(its log: {pgdata / 'log'}; or set EMAILLOG_DATABASE_URL)"
        ) from exc
    log.info("embedded PostgreSQL ready in %s", pgdata)
    return server


def _acquire_embedded_sync(pgdata: Path) -> Any:
    with _embedded_lock:
        held = _embedded.get(pgdata)
        if held is not None:
            held[1] += 1
            return held[0]
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers): harmless.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server  # lazily: only embedded mode needs it

        server = get_server(pgdata, cleanup_mode="stop")
        _embedded[pgdata] = [server, 1]
        return server


async def _release_embedded(pgdata: Path) -> None:
    await asyncio.to_thread(_release_embedded_sync, pgdata)


def _release_embedded_sync(pgdata: Path) -> None:
    with _embedded_lock:
        held = _embedded[pgdata]
        held[1] -= 1
        if held[1] > 0:
            return
        del _embedded[pgdata]
        # Stops the server only if no other process still uses it (pgserver's pid list).
        held[0].cleanup()


async def _ensure_database(maintenance_url: str, name: str, timeout_seconds: float) -> None:
    conn = await connect(maintenance_url, timeout_seconds=timeout_seconds)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another process may create it at the same moment.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
