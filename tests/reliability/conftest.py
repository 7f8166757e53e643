"""Fixtures for the reliability suite: a simulator thread, a prepared database and a
`Scenario` (see scenario.py); on failure, the tail of every service process's log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange_sim import SimulatorThread
from tests.reliability import invariants
from tests.reliability.scenario import Scenario, kept, prepare
from tests.service.harness import FOLDERS, MAILBOX

#: One EWS "minute" of the simulator, in seconds: streams are renewed every few seconds.
SIM_MINUTE_SECONDS = 3.0


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(
        folders=FOLDERS,
        mailboxes=[MAILBOX],
        minute_seconds=SIM_MINUTE_SECONDS,
        keepalive_seconds=1.0,
    ) as simulator:
        yield simulator


@pytest.fixture
def db(database_url: str) -> str:
    invariants.run(prepare(database_url))
    return database_url


@pytest.fixture
def scenario(
    sim: SimulatorThread, db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Scenario]:
    with kept(Scenario(sim, db, tmp_path), request) as s:
        yield s


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
