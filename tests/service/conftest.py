"""Fixtures for the service tests: a migrated database and an asyncpg pool on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

MIGRATIONS = Path(__file__).resolve().parents[2] / "pipeline" / "store" / "migrations"


async def apply_schema(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for path in sorted(MIGRATIONS.glob("*.sql")):
            await conn.execute(path.read_text())
    finally:
        await conn.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await apply_schema(database_url)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p
