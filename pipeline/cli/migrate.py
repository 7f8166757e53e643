"""`emaillog migrate`: apply the database migrations (the service also does it at start)."""

from __future__ import annotations

import argparse
import asyncio

from pipeline.cli.common import Subparsers, configure_command_logging
from pipeline.config import Settings
from pipeline.store.db import open_database
from pipeline.store.migrate import apply_migrations


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Apply every migration not yet applied. Safe to run twice, and from "
        "several processes at once (they wait for each other).",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    configure_command_logging(settings)
    applied = asyncio.run(_migrate(settings))
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("the database is up to date")
    return 0


async def _migrate(settings: Settings) -> list[str]:
    async with open_database(settings.database, migrate=False) as db, db.pool.acquire() as conn:
        return await apply_migrations(conn)
