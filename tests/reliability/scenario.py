"""`Scenario`: the `emaillog run` processes, deliveries and the final invariants check of
one reliability scenario; `prepare` loads the test directory into a database."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from exchange_sim import SimulatorThread
from tests.reliability import invariants
from tests.reliability.mail import CONTACT_80, CONTACT_IDN, CONTACT_UTF8, Delivered, Letter, deliver
from tests.reliability.process import ServiceProcess, reliability_settings, wait_for
from tests.service.harness import MAILBOX, QUEUE, STORAGE, prepare_database


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
        settings = reliability_settings(self.sim, self.database_url, **overrides)
        self.storage = str(overrides.get("storage_folder", STORAGE))
        self.queue = str(overrides.get("queue_folder", QUEUE))
        log_path = self.logs / f"run{len(self.processes) + 1}.log"
        service = ServiceProcess(settings, log_path, crash_at)
        self.processes.append(service)
        if crash_at is None:
            service.wait_ready()
        return service

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

    def kill_all(self) -> None:
        for service in self.processes:
            service.kill()
