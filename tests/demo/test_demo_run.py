"""`emaillog demo --exit-when-drained` end to end, as a user (or CI) runs it: a subprocess
with its own data directory and HTTP port, run twice in the same directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.cli.demo.data import SAMPLES, expected_counts, expected_entries
from pipeline.store.db import open_database
from tests.settings import make_settings

#: A safety net so a hung demo fails the test instead of blocking the suite; not a measurement.
RUN_LIMIT_SECONDS = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_demo(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAILLOG_")}
    env |= {"EMAILLOG_DATA_DIR": str(data_dir), "EMAILLOG_HTTP_PORT": str(_free_port())}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "demo", "--exit-when-drained"],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_SECONDS,
        check=False,
    )


def _check_run(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[-1]) == expected_counts()
    logged = expected_counts()["logged"]
    storage = re.search(r"Storage folder: (\d+) messages; journal: (\d+) stored", result.stdout)
    assert storage is not None, result.stdout
    assert (int(storage[1]), int(storage[2])) == (logged, logged)


async def test_demo_twice_in_one_data_dir_gives_the_expected_counts() -> None:
    # Not pytest's tmp_path: concurrent pytest sessions on one machine prune each other's
    # old numbered base directories, which pulled the data directory from under initdb.
    with tempfile.TemporaryDirectory(prefix="emaillog-demo-test-") as folder:
        await _demo_twice(Path(folder))


async def _demo_twice(tmp_path: Path) -> None:
    first = await asyncio.to_thread(_run_demo, tmp_path)
    _check_run(first)
    second = await asyncio.to_thread(_run_demo, tmp_path)
    _check_run(second)
    assert json.loads(first.stdout.splitlines()[-1]) == json.loads(second.stdout.splitlines()[-1])

    # What the second run left in its database agrees with the demo data.
    settings = make_settings(data_dir=tmp_path / "demo")
    async with open_database(settings.database) as db, db.pool.acquire() as conn:
        disposed = await conn.fetchval("SELECT count(*) FROM disposal_log")
        stored = await conn.fetch("SELECT state, storage_item_id FROM stored_message")
        entries = await conn.fetchval("SELECT count(*) FROM interaction_log_entry")
        linked = await conn.fetchval(
            "SELECT count(DISTINCT stored_message_id) FROM interaction_log_entry"
        )
    assert disposed == len(SAMPLES)
    assert len(stored) == expected_counts()["logged"]
    assert all(row["state"] == "stored" and row["storage_item_id"] for row in stored)
    assert entries == expected_entries()
    assert linked == len(stored)
