"""Random interleavings (hypothesis, stateful) of deliveries, duplicates, mail-server faults,
clean restarts, SIGKILLs and crash points; every example ends with the invariants check, and
what must hold at every moment is checked after every step. Bounded to stay quick."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from exchange_sim import SimulatorThread
from pipeline.model import Outcome
from tests.conftest import _create_database
from tests.reliability import invariants
from tests.reliability.conftest import SIM_MINUTE_SECONDS
from tests.reliability.mail import Letter, mixed_batch
from tests.reliability.process import ServiceProcess
from tests.reliability.scenario import Scenario, prepare
from tests.service.harness import FOLDERS, MAILBOX

KINDS = [item.name for item in mixed_batch(copies=1)]
FAULTS = ["busy", "drop_streams", "expire_subscription", "fail_one_move", "latency"]
CRASH_POINTS = ["after_fetch", "after_claim", "after_move", "after_store", "after_dispose"]
RESTARTS = ["sigterm", "sigkill", *CRASH_POINTS]


def test_random_interleavings_keep_the_invariants(pg_server_url: str, tmp_path: Path) -> None:
    examples = itertools.count(1)

    class Interleavings(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.sim = SimulatorThread(
                folders=FOLDERS,
                mailboxes=[MAILBOX],
                minute_seconds=SIM_MINUTE_SECONDS,
                keepalive_seconds=1.0,
            )
            self.sim.start()
            url: str = invariants.run(_create_database(pg_server_url))
            invariants.run(prepare(url))
            logs = tmp_path / f"example{next(examples)}"
            logs.mkdir()
            self.scenario = Scenario(self.sim, url, logs)
            self.service: ServiceProcess = self.scenario.start()
            self.sent: list[Letter] = []

        @rule(kind=st.sampled_from(KINDS), copies=st.integers(1, 3))
        def deliver(self, kind: str, copies: int) -> None:
            [item] = [i for i in mixed_batch(copies=1) if i.name == kind]
            if item.expect in (Outcome.LOGGED, None):
                # Which copy (or redelivery) is logged and which are duplicates is a race;
                # the invariants still demand exactly one logged.
                item = dataclasses.replace(item, expect=None, entries=None)
            self.scenario.deliver([item] * copies)
            self.sent.append(item)

        @precondition(lambda self: bool(self.sent))
        @rule(data=st.data())
        def redeliver(self, data: st.DataObject) -> None:
            """The same message again, maybe long after the first was logged."""
            item = data.draw(st.sampled_from(self.sent))
            self.scenario.deliver([dataclasses.replace(item, name=item.name + " again")])

        @rule(fault=st.sampled_from(FAULTS))
        def fault(self, fault: str) -> None:
            # Transient faults only: each ends by itself within the retry budget.
            sim = self.sim
            if fault == "busy":
                sim.set_busy(3, back_off_ms=100)
            elif fault == "drop_streams":
                sim.drop_streams()
            elif fault == "expire_subscription":
                sim.expire_subscriptions()
            elif fault == "latency":
                sim.set_latency(0, 300)
            elif queued := sorted(self.scenario.queue_ids()):
                sim.fail_items(queued[:1], ops=("MoveItem",), times=1)

        @rule(how=st.sampled_from(RESTARTS))
        def restart(self, how: str) -> None:
            """End the running process (SIGTERM or SIGKILL) and start the next one, which may
            carry a crash point it hits later (or never, if nothing reaches that step)."""
            if how == "sigterm" and self.service.crash_at is None and self.service.alive():
                self.service.stop()
            else:
                self.service.kill()
            crash_at = how if how in CRASH_POINTS else None
            self.service = self.scenario.start(crash_at=crash_at)
            if crash_at is not None:
                self.service.wait_ready_or_gone()

        @invariant()
        def never_twice_in_storage(self) -> None:
            snap = invariants.snapshot(self.sim, self.scenario.database_url)
            ids = [i["message_id"] for i in snap.storage.values() if i["message_id"]]
            assert len(ids) == len(set(ids)), "a Message-ID is in storage twice"
            for row in snap.stored.values():
                if row["state"] == "stored":
                    assert row["storage_item_id"] in snap.storage, "a link points at nothing"

        def teardown(self) -> None:
            try:
                self.sim.reset_faults()
                if self.service.crash_at is not None or not self.service.alive():
                    self.service.kill()
                    self.service = self.scenario.start()
                self.scenario.finish(self.service)
            finally:
                self.scenario.kill_all()
                self.sim.stop()

    run_state_machine_as_test(
        Interleavings,
        settings=settings(
            max_examples=5,
            stateful_step_count=8,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
            phases=[Phase.explicit, Phase.generate],  # no shrinking: each step costs seconds
        ),
    )
