"""Crash at every step: `emaillog run` is SIGKILLed at each step boundary in turn (through
EMAILLOG_TEST_CRASH_AT, pipeline/crashpoints.py), restarted without it, and the invariants
must hold: every message logged exactly once or disposed of, nothing lost, nothing twice."""

from __future__ import annotations

import pytest

from pipeline.model import Outcome
from tests.reliability import invariants
from tests.reliability.mail import letter, mixed_batch
from tests.reliability.process import wait_for
from tests.reliability.scenario import CRASH_POINTS, Scenario


@pytest.mark.parametrize(("crash_at", "overrides"), CRASH_POINTS)
def test_crash_at_each_step_then_restart(
    scenario: Scenario, crash_at: str, overrides: dict[str, object]
) -> None:
    batch = mixed_batch()
    scenario.deliver(batch[::2])  # waiting before start: taken in by catch-up
    doomed = scenario.start(crash_at=crash_at, **overrides)
    doomed.wait_ready_or_gone()
    scenario.deliver(batch[1::2])  # arriving while it runs (or after it died)
    doomed.wait_crashed()

    survivor = scenario.start(**overrides)
    outcomes = scenario.finish(survivor)
    scenario.check_copies(outcomes.by_item)


def test_crash_mid_move_batch_with_a_partial_move_failure(scenario: Scenario) -> None:
    """One MoveItem of several items, one of which the server refuses once; the process dies
    right after. The moved ones are found in storage, the refused one in the queue."""
    letters = [item for item in mixed_batch() if item.expect is Outcome.LOGGED]
    delivered = scenario.deliver(letters)
    scenario.sim.fail_items([delivered[0].item_id], ops=("MoveItem",), times=1)
    doomed = scenario.start(crash_at="after_move", move_batch_messages=20, batch_wait_ms=200)
    doomed.wait_crashed()
    assert not scenario.sim.fault_status().item_failures.get("MoveItem")  # it was refused once

    outcomes = scenario.finish(scenario.start())
    assert all(outcomes.by_item[d.item_id] == "logged" for d in delivered)


def test_crash_twice_in_a_row(scenario: Scenario) -> None:
    """Killed after a claim, then the restart killed after its first move: the third run's
    reconciler and pipeline meet work left half-done twice over."""
    scenario.deliver(mixed_batch())
    scenario.start(crash_at="after_claim").wait_crashed()
    scenario.deliver(mixed_batch())  # unclaimed logged mail, so the second run must move
    scenario.start(crash_at="after_move").wait_crashed()

    outcomes = scenario.finish(scenario.start())
    copies = [d for d in scenario.delivered if d.name.startswith("copy")]
    assert sorted(outcomes.of(copies)).count("logged") == 2  # one per batch's Message-ID


def test_crash_while_the_reconciler_finishes_a_claim(scenario: Scenario) -> None:
    """Killed after the claims; the restart's reconciler moves them and is killed before it
    records the first link; the third run finds that one in storage and moves the rest."""
    scenario.deliver(mixed_batch())
    scenario.start(crash_at="after_claim").wait_crashed()
    scenario.start(crash_at="reconciler_before_record").wait_crashed()

    outcomes = scenario.finish(scenario.start())
    scenario.check_copies(outcomes.by_item)


def test_crash_after_moving_a_message_without_message_id(scenario: Scenario) -> None:
    """Its queue item id is gone after the move: the reconciler finds it in storage by its
    journal key (the content hash), as no Message-ID can find it."""
    scenario.deliver([letter("no Message-ID", Outcome.LOGGED, 1, message_id=None, transport=False)])
    scenario.start(crash_at="after_move").wait_crashed()

    service = scenario.start()
    unresolved = "emaillog_reconcile_unresolved_total"
    wait_for(
        lambda: scenario.quiet(service) or service.metrics().get(unresolved, 0.0) >= 1,
        "the reconciler to finish the claim or give up on it",
    )
    invariants.check(
        scenario.sim,
        scenario.database_url,
        scenario.delivered,
        metrics=service.messages_total(),
        run_from_id=scenario.run_from_id,
    )
