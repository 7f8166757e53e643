"""What every benchmark run sets up: an embedded PostgreSQL with the directory imported,
and the environment `emaillog run` gets for a simulator."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench import db, phases
from bench.corpus import NEVER_LOG, Directory
from bench.procs import SimProcess, free_port
from pipeline.config import Settings
from pipeline.store.db import open_database
from pipeline.store.directory_repo import load_directory

MAILBOX = "queue@ourco.example"


def run_env(
    data_dir: Path, database_url: str, source: dict[str, str]
) -> tuple[dict[str, str], int]:
    """The environment of one `emaillog run` of any source (`source`: its variables), and the
    fresh HTTP port it serves /readyz and /metrics on. Nothing EMAILLOG_* leaks in from the
    caller's environment."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMAILLOG_")}
    return base | {
        "EMAILLOG_DATA_DIR": str(data_dir),
        "EMAILLOG_DATABASE_URL": database_url,
        "EMAILLOG_NEVER_LOG": ",".join(NEVER_LOG),
        "EMAILLOG_HTTP_HOST": "127.0.0.1",
        "EMAILLOG_HTTP_PORT": str(port),
        "EMAILLOG_UI_PORT": "0",  # the benchmark measures intake, not the UI
    } | source, port


def service_env(data_dir: Path, database_url: str) -> phases.EnvFor:
    """The environment of `emaillog run` for one simulator (and a fresh HTTP port)."""

    def env_for(sim: SimProcess) -> tuple[dict[str, str], int]:
        return run_env(
            data_dir,
            database_url,
            {
                "EMAILLOG_EWS_URL": sim.ews_url,
                "EMAILLOG_EWS_MAILBOX": MAILBOX,
                "EMAILLOG_EWS_AUTH": "none",
            },
        )

    return env_for


@asynccontextmanager
async def bench_context(
    args: argparse.Namespace, tmp: Path
) -> AsyncIterator[tuple[phases.Context, Directory]]:
    """An embedded PostgreSQL with the directory imported, and what the phases need."""
    logs = tmp / "logs"
    logs.mkdir()
    data_dir = tmp / "data"
    setup_started = time.perf_counter()
    people = Directory(args.seed, args.salespersons, args.contacts)
    settings = Settings.from_env(
        {
            "EMAILLOG_DATA_DIR": str(data_dir),
            "EMAILLOG_EWS_MAILBOX": MAILBOX,
            "EMAILLOG_NEVER_LOG": ",".join(NEVER_LOG),
        }
    )
    async with open_database(settings.database) as database:
        imported = await db.import_directory(database.pool, people.write_csv(tmp / "directory"))
        async with database.pool.acquire() as conn:
            directory = await load_directory(conn)
        ctx = phases.Context(
            settings=settings,
            pool=database.pool,
            directory=directory,
            env_for=service_env(data_dir, database.url),
            latency_ms=args.latency_ms,
            logs=logs,
        )
        setup_seconds = time.perf_counter() - setup_started
        progress(f"set-up {setup_seconds:.1f} s: directory {imported}; temp dir {tmp}")
        yield ctx, people


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)
