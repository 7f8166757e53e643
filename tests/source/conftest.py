"""Fixtures for the EWS source against exchange_sim, through the real exchangelib."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import exchangelib
import pytest

from exchange_sim import Simulator
from pipeline.config import Settings
from pipeline.model import MailRef
from pipeline.sources.ews import EwsSource
from tests.settings import make_settings

MAILBOX = "queue@example.com"
QUEUE = "Email Logging/Queue"
STORAGE = "Email Logging/Storage"
AUDIT = "Email Logging/Audit"
PUBLIC_QUEUE = "public:/Email Logging/Queue"
PUBLIC_STORAGE = "public:/Email Logging/Storage"
FOLDERS = [QUEUE, STORAGE, AUDIT, PUBLIC_QUEUE, PUBLIC_STORAGE]

#: A safety net so a broken adapter fails a test instead of hanging it; never a measurement.
WAIT_SECONDS = 20.0

_numbers = itertools.count(1)


def mime(
    subject: str = "Quote",
    *,
    sender: str = "Sales Person <sales@ours.test>",
    to: str = "Buyer <buyer@theirs.test>",
    cc: str | None = None,
    sensitivity: str | None = None,
    message_id: str | None = "",
) -> bytes:
    """A small RFC 5322 message; message_id "" means a fresh unique one, None none at all."""
    n = next(_numbers)
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject} {n}"]
    if cc:
        lines.append(f"Cc: {cc}")
    if sensitivity:
        lines.append(f"Sensitivity: {sensitivity}")
    if message_id is not None:
        lines.append(f"Message-ID: {message_id or f'<m{n}.{id(lines)}@ours.test>'}")
    lines += ["Date: Mon, 4 Mar 2024 10:00:00 +0000", "", "Body."]
    return "\r\n".join(lines).encode()


@dataclasses.dataclass
class Recorder:
    """A SourceEvents that records what the source reported."""

    connected: list[bool] = dataclasses.field(default_factory=list)
    reconnects: int = 0
    throttled: list[float] = dataclasses.field(default_factory=list)
    modes: list[str] = dataclasses.field(default_factory=list)
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def on_connected(self, connected: bool) -> None:
        self.connected.append(connected)
        self.changed.set()

    def on_reconnect(self) -> None:
        self.reconnects += 1
        self.changed.set()

    def on_throttled(self, seconds: float) -> None:
        self.throttled.append(seconds)
        self.changed.set()

    def on_mode(self, mode: str) -> None:
        self.modes.append(mode)
        self.changed.set()

    async def wait_for(self, predicate: Any) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(autouse=True)
def _fresh_exchangelib() -> Iterator[None]:
    # exchangelib caches Protocol objects (pools, retry policy) per endpoint + credentials.
    exchangelib.close_connections()
    yield
    exchangelib.close_connections()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as simulator:
        yield simulator


def settings_for(sim: Simulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ews_url": sim.ews_url,
        "ews_mailbox": MAILBOX,
        "ews_auth": "none",
        "queue_folder": QUEUE,
        "storage_folder": STORAGE,
        "stream_timeout_minutes": 1,
        "ews_worker_threads": 2,
        "ews_timeout_seconds": 30.0,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
async def source(sim: Simulator, events: Recorder) -> AsyncIterator[EwsSource]:
    src = EwsSource(settings_for(sim), events)
    await src.open()
    try:
        yield src
    finally:
        await src.close()


async def next_ref(arrivals: AsyncIterator[MailRef]) -> MailRef:
    async with asyncio.timeout(WAIT_SECONDS):
        return await anext(arrivals)


async def take(arrivals: AsyncIterator[MailRef], count: int) -> list[MailRef]:
    return [await next_ref(arrivals) for _ in range(count)]
