"""`Scenario`: the `emaillog run` processes, deliveries and the final invariants check of
one reliability scenario; `prepare` loads the test directory into a database."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from exchange_sim import SimulatorThread
from pipeline.config import Settings
from tests.reliability import invariants
from tests.reliability.mail import CONTACT_80, CONTACT_IDN, CONTACT_UTF8, Delivered, Letter, deliver
from tests.reliability.process import ServiceProcess, reliability_settings, wait_for
from tests.service.harness import MAILBOX, QUEUE, STORAGE, prepare_database

#: Every step boundary a service is killed at, with the settings that reach it (every
#: source's reliability suite runs these).
CRASH_POINTS: list[tuple[str, dict[str, object]]] = [
    ("after_fetch", {}),
    ("after_claim", {}),
    ("after_move", {}),
    ("after_store", {}),
    ("after_dispose", {}),
    # Mid-batch: one message per move; killed after the second logged message moved, so
    # some are stored, one is moved but unrecorded, the rest claimed but not moved.
    ("after_move:2", {"move_batch_messages": 1}),
    # Mid-batch within the stores: two store transactions committed, the rest not.
    ("after_store:2", {"store_batch_messages": 1}),
]

S = TypeVar("S", bound="Scenario")


async def prepare(url: str) -> None:
    """The service harness's directory, plus contacts for the odd-address cases."""
    await prepare_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO contact (no, name, type, company_no, email) VALUES ($1, $1, 'person', "
            "'CO1', $2)",
            [("C80", CONTACT_80), ("CUTF8", CONTACT_UTF8), ("CIDN", CONTACT_IDN)],
        )
    finally:
        await conn.close()


class Scenario:
    """Processes, deliveries and the final check of one scenario."""

    def __init__(self, sim: SimulatorThread, database_url: str, logs: Path) -> None:
        self.sim = sim
        self.database_url = database_url
        self.logs = logs
        self.delivered: list[Delivered] = []
        self.processes: list[ServiceProcess] = []
        self.run_from_id = 0
        self.storage = STORAGE  # the storage and queue folders of the last start()
        self.queue = QUEUE

    def start(self, crash_at: str | None = None, **overrides: Any) -> ServiceProcess:
        """Start `emaillog run` (waits for /readyz unless it is meant to crash early)."""
        self.run_from_id = invariants.last_disposal_id(self.database_url)
        settings = self.settings(**overrides)
        self.storage = str(overrides.get("storage_folder", STORAGE))
        self.queue = str(overrides.get("queue_folder", QUEUE))
        log_path = self.logs / f"run{len(self.processes) + 1}.log"
        service = ServiceProcess(settings, log_path, crash_at)
        self.processes.append(service)
        if crash_at is None:
            service.wait_ready()
        return service

    def settings(self, **overrides: Any) -> Settings:
        """The settings of the next `emaillog run` (a source's scenario overrides this)."""
        return reliability_settings(self.sim, self.database_url, **overrides)

    def deliver(self, letters: Sequence[Letter]) -> list[Delivered]:
        batch = [deliver(self.sim, item, self.queue) for item in letters]
        self.delivered += batch
        return batch

    def queue_ids(self) -> set[str]:
        return {i["id"] for i in self.sim.list_items(MAILBOX, self.queue)}

    def quiet(self, service: ServiceProcess, allowed_failed: Collection[str] = ()) -> bool:
        """Queue drained (but for allowed failures), nothing 'moving', nothing in flight."""
        return (
            self.queue_ids() <= set(allowed_failed)
            and invariants.moving_rows(self.database_url) == 0
            and invariants.unlinked_rows(self.database_url) == 0
            and service.in_flight() == 0
        )

    def finish(
        self, service: ServiceProcess, allowed_failed: Collection[str] = ()
    ) -> invariants.Outcomes:
        """Wait until the service is quiet, check every invariant (with this run's metrics),
        stop it with SIGTERM (exit 0) and check again."""
        try:
            wait_for(lambda: self.quiet(service, allowed_failed), "the service to finish")
        except AssertionError:
            # Say what is wrong rather than only that it took too long.
            invariants.check(
                self.sim,
                self.database_url,
                self.delivered,
                allowed_failed=allowed_failed,
                storage=self.storage,
                queue=self.queue,
            )
            raise
        outcomes = invariants.check(
            self.sim,
            self.database_url,
            self.delivered,
            allowed_failed=allowed_failed,
            metrics=service.messages_total(),
            run_from_id=self.run_from_id,
            storage=self.storage,
            queue=self.queue,
        )
        service.stop()
        invariants.check(
            self.sim,
            self.database_url,
            self.delivered,
            allowed_failed=allowed_failed,
            storage=self.storage,
            queue=self.queue,
        )
        return outcomes

    def check_copies(self, outcomes_by_item: dict[str, str]) -> None:
        """The copies of one message: exactly one logged, the rest duplicates."""
        copies = [d for d in self.delivered if d.name.startswith("copy")]
        assert sorted(outcomes_by_item[d.item_id] for d in copies) == (
            ["duplicate"] * (len(copies) - 1) + ["logged"]
        )

    def kill_all(self) -> None:
        for service in self.processes:
            service.kill()


@contextmanager
def kept(scenario: S, request: pytest.FixtureRequest) -> Iterator[S]:
    """A fixture's scenario: every process killed at the end and, when the test failed, the
    tail of each one's log printed."""
    try:
        yield scenario
    finally:
        scenario.kill_all()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for service in scenario.processes:
                print(f"--- {service.log_path.name} (crash_at={service.crash_at}) ---")
                print("\n".join(service.log_text().splitlines()[-40:]))
