"""End-to-end harness: exchange_sim + real PostgreSQL + `serve()` in-process.

`Service` runs `serve()` as a task with a test shutdown event; `until()` waits for a
condition with a generous deadline that only guards against hangs (never a measurement),
and fails at once if the service task died.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from exchange_sim import Simulator
from pipeline.config import Settings
from pipeline.metrics import Metrics
from pipeline.model import Outcome, hash_key
from pipeline.service import serve
from pipeline.store.migrate import apply_migrations
from tests.settings import make_settings

MAILBOX = "queue@example.com"
QUEUE = "Email Logging/Queue"
STORAGE = "Email Logging/Storage"
PUBLIC_QUEUE = "public:/Email Logging/Queue"
PUBLIC_STORAGE = "public:/Email Logging/Storage"
FOLDERS = [QUEUE, STORAGE, PUBLIC_QUEUE, PUBLIC_STORAGE]

#: A safety net so a broken service fails a test instead of hanging it; never a measurement.
WAIT_SECONDS = float(os.environ.get("E2E_WAIT_SECONDS", "60"))

SALES = "sales@ours.test"  # salesperson SP1
BOSS = "boss@ours.test"  # salesperson SP2
BUYER = "buyer@theirs.test"  # contact C1 (of company CO1)
OTHER = "other@theirs.test"  # contact C2
OTHER_HOME = "c2home@theirs.test"  # contact C2, alt. address HOME
STRANGER = "stranger@nowhere.test"

_numbers = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mime(
    *,
    sender: str = SALES,
    to: str | None = BUYER,
    cc: str | None = None,
    subject: str = "Quote",
    sensitivity: str | None = None,
    message_id: str | None = "",
) -> tuple[bytes, str | None]:
    """A small message and its Message-ID ("" = a fresh unique one, None = none at all)."""
    n = next(_numbers)
    if message_id == "":
        message_id = f"<e2e-{n}-{id(object())}@ours.test>"
    lines = [f"From: {sender}", f"Subject: {subject} {n}"]
    if to is not None:
        lines.append(f"To: {to}")
    if cc:
        lines.append(f"Cc: {cc}")
    if sensitivity:
        lines.append(f"Sensitivity: {sensitivity}")
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    lines += ["Date: Mon, 4 Mar 2024 10:00:00 +0000", "", "Body."]
    return "\r\n".join(lines).encode(), message_id


async def prepare_database(url: str) -> None:
    """Migrate and load a small directory (what `emaillog directory import` would do)."""
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
        await conn.execute(
            f"""
            INSERT INTO salesperson (code, name, email) VALUES
                ('SP1', 'Sales', '{SALES}'), ('SP2', 'Boss', '{BOSS}');
            INSERT INTO contact (no, name, type, company_no, email) VALUES
                ('CO1', 'Theirs Ltd', 'company', 'CO1', ''),
                ('C1', 'Buyer', 'person', 'CO1', '{BUYER}'),
                ('C2', 'Other', 'person', 'CO1', '{OTHER}');
            INSERT INTO contact_alt_address (contact_no, code, email) VALUES
                ('C2', 'HOME', '{OTHER_HOME}');
            INSERT INTO interaction_template
                (code, description, interaction_group_code, unit_cost, unit_duration_min)
                VALUES ('EMAIL', 'E-mail', 'MAIL', 1.50, 3);
            """
        )
    finally:
        await conn.close()


def service_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a `serve()` in a test: small batches, short waits, a free port."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "batch_wait_ms": 5.0,
        "fetch_batch_messages": 10,
        "move_batch_messages": 10,
        "store_batch_messages": 10,
        "retry_max_wait_seconds": 0.5,
        "drain_timeout_seconds": 20.0,
    }
    values.update(overrides)
    return make_settings(**values)


def settings_for(sim: Simulator, database_url: str, **overrides: Any) -> Settings:
    """`service_settings` pointed at the simulator's mailbox."""
    values: dict[str, Any] = {
        "ews_url": sim.ews_url,
        "ews_mailbox": MAILBOX,
        "ews_auth": "none",
        "queue_folder": QUEUE,
        "storage_folder": STORAGE,
        "stream_timeout_minutes": 1,
        "ews_worker_threads": 3,
        "ews_timeout_seconds": 30.0,
    }
    values.update(overrides)
    return service_settings(database_url, **values)


class Service:
    """A running `serve()` and what a test asks of it."""

    def __init__(self, task: asyncio.Task[None], metrics: Metrics, stop: asyncio.Event) -> None:
        self.task = task
        self.metrics = metrics
        self.stop = stop

    def count(self, outcome: Outcome) -> float:
        value = self.metrics.registry.get_sample_value(
            "emaillog_messages_total", {"outcome": outcome.value}
        )
        return value or 0.0

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def total(self) -> float:
        return sum(self.count(o) for o in Outcome)

    def settled(self, sim: Simulator, total: int, folder: str = QUEUE) -> bool:
        """`total` messages counted, the queue folder empty and nothing left in flight."""
        return (
            self.total() == total
            and queue_empty(sim, folder)
            and self.value("emaillog_in_flight_messages") == 0
        )

    async def until(self, condition: Callable[[], bool], what: str = "condition") -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while not condition():
                if self.task.done():
                    self.task.result()  # raises what killed the service
                    raise AssertionError(f"service stopped before {what}")
                await asyncio.sleep(0.02)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Service]:
    metrics = Metrics()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, shutdown=stop.wait, metrics=metrics))
    service = Service(task, metrics, stop)
    try:
        yield service
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_SECONDS):
            await task


def queue_empty(sim: Simulator, folder: str = QUEUE) -> bool:
    return not sim.list_items(MAILBOX, folder)


async def disposals(url: str) -> dict[str, list[str]]:
    """message_id_hash -> outcomes recorded in disposal_log (failed rows excluded)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT message_id_hash, outcome FROM disposal_log
               WHERE outcome <> 'failed' ORDER BY id"""
        )
    finally:
        await conn.close()
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["message_id_hash"], []).append(r["outcome"])
    return out


def hashed(message_id: str) -> str:
    return hash_key(message_id)
