"""Fixtures for the simulator's tests.

Pattern: the simulator runs on its own event loop in a background thread
(`SimulatorThread`), so tests can call blocking exchangelib directly. Every response document
the simulator sends during a test is recorded and, at teardown, validated against
Microsoft's EWS schema (streaming envelopes in wire mode).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import exchangelib
import pytest
from exchangelib import DELEGATE, Account, Build, Configuration, FailFast, Version
from exchangelib.transport import NOAUTH

from exchange_sim import SimConfig, SimulatorThread
from tests.conftest import SHARED

sys.path.insert(0, str(SHARED / "ews-conformance"))
import validate_ews

MAILBOX = "queue@example.com"
QUEUE = "Email Logging/Queue"
STORAGE = "Email Logging/Storage"
PUBLIC_QUEUE = "public:/Queue"
PUBLIC_STORAGE = "public:/Storage"


def message(n: int = 1, **headers: str) -> bytes:
    """A small RFC 5322 message; keyword arguments add or replace headers."""
    fields = {
        "From": "Alice Contact <alice@contoso.com>",
        "To": "Sam Sales <sam@example.com>",
        "Subject": f"Quote {n}",
        "Message-ID": f"<msg-{n}@contoso.com>",
        "Date": "Mon, 01 Jan 2024 10:00:00 +0000",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    return (head + "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello.\r\n").encode()


class Recorder:
    """Collects (operation, body) of every response; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.responses: list[tuple[str, bytes]] = []

    def __call__(self, op: str, body: bytes) -> None:
        with self.lock:
            self.responses.append((op, body))

    def ops(self) -> set[str]:
        with self.lock:
            return {op for op, _ in self.responses}

    def invalid(self) -> list[tuple[str, list[str]]]:
        found = []
        with self.lock:
            responses = list(self.responses)
        for op, body in responses:
            for result in validate_ews.validate_stream(body, wire=True):
                if not result.ok:
                    found.append((op, result.errors[:3]))
        return found


def sim_config(**overrides: object) -> SimConfig:
    options: dict[str, object] = {
        "mailboxes": [MAILBOX, "other@example.com"],
        "folders": [QUEUE, STORAGE, PUBLIC_QUEUE, PUBLIC_STORAGE],
        "minute_seconds": 1.0,
        "keepalive_seconds": 0.25,
    }
    options.update(overrides)
    return SimConfig(**options)  # type: ignore[arg-type]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def sim(recorder: Recorder) -> Iterator[SimulatorThread]:
    """A running simulator; at teardown every response it sent must be schema-valid."""
    with SimulatorThread(sim_config()) as running:
        running.record_responses(recorder)
        yield running
    exchangelib.close_connections()
    assert recorder.invalid() == []


def make_account(ews_url: str, max_connections: int = 3) -> Account:
    config = Configuration(
        service_endpoint=ews_url,
        auth_type=NOAUTH,
        version=Version(build=Build(15, 1)),
        max_connections=max_connections,
        retry_policy=FailFast(),
    )
    return Account(MAILBOX, config=config, access_type=DELEGATE)


@pytest.fixture
def account(sim: SimulatorThread) -> Iterator[Account]:
    yield make_account(sim.ews_url)
    exchangelib.close_connections()
