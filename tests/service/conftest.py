"""Fixtures for the service tests: a migrated database (with or without the small test
directory), an asyncpg pool on it, and the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import exchangelib
import pytest

from exchange_sim import Simulator
from pipeline.store.migrate import apply_migrations
from tests.service.harness import FOLDERS, MAILBOX, prepare_database


@pytest.fixture(autouse=True)
def _fresh_exchangelib() -> Iterator[None]:
    # exchangelib caches Protocol objects (pools, retry policy) per endpoint + credentials.
    exchangelib.close_connections()
    yield
    exchangelib.close_connections()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a migrated, empty database."""
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as simulator:
        yield simulator


@pytest.fixture
async def db(database_url: str) -> str:
    """The URL of a migrated database holding the test directory."""
    await prepare_database(database_url)
    return database_url
