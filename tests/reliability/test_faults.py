"""Dependency faults: the mail server misbehaving in every way exchange_sim can, and the
database going away mid-run. Each scenario waits until the fault has demonstrably hit the
service (a metric or /readyz says so), clears it, and ends with the invariants check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exchange_sim import SimulatorThread
from pipeline.model import Outcome
from tests.reliability.mail import mixed_batch
from tests.reliability.pgctl import RestartablePostgres
from tests.reliability.process import ServiceProcess, wait_for
from tests.reliability.scenario import Scenario


def total(service: ServiceProcess, prefix: str) -> float:
    """Sum of every sample whose name starts with `prefix` (all label values)."""
    return sum(v for k, v in service.metrics().items() if k.startswith(prefix))


def wait_for_increase(service: ServiceProcess, prefix: str, before: float, what: str) -> None:
    wait_for(lambda: total(service, prefix) > before, what)


Fault = Callable[[Scenario, ServiceProcess], None]


def server_busy_storm(scenario: Scenario, service: ServiceProcess) -> None:
    """ErrorServerBusy for the next 25 requests, with BackOffMilliseconds the service obeys."""
    before = total(service, "emaillog_upstream_throttled_total")
    scenario.sim.set_busy(25, back_off_ms=150)
    scenario.deliver(mixed_batch())
    wait_for_increase(service, "emaillog_upstream_throttled_total", before, "throttling")


def stream_dropped_mid_body(scenario: Scenario, service: ServiceProcess) -> None:
    for _ in range(3):
        before = total(service, "emaillog_source_reconnects_total")
        # After a resubscribe the new stream opens only once catch-up is done: drop the
        # stream as soon as there is one.
        wait_for(lambda: scenario.sim.drop_streams() >= 1, "an open stream to drop")
        scenario.deliver(mixed_batch(copies=2))
        wait_for_increase(service, "emaillog_source_reconnects_total", before, "a resubscribe")


def subscription_expired(scenario: Scenario, service: ServiceProcess) -> None:
    for code in ("ErrorSubscriptionNotFound", "ErrorInvalidSubscription"):
        wait_for(service.ready, "a live subscription")
        before = total(service, "emaillog_source_reconnects_total")
        assert scenario.sim.expire_subscriptions(code)
        scenario.deliver(mixed_batch(copies=2))
        wait_for_increase(service, "emaillog_source_reconnects_total", before, "a resubscribe")


def move_and_delete_fail_then_succeed(scenario: Scenario, service: ServiceProcess) -> None:
    """Some MoveItem/DeleteItem calls fail per item: transiently (retried by the pipeline)
    and as 'not found' for a move (left 'moving', finished by the reconciler)."""
    sim = scenario.sim
    sim.set_latency(200)  # so the faults are armed before the items are taken in
    batch = {d.name: d for d in scenario.deliver(mixed_batch())}
    sim.fail_items(
        [batch["outbound"].item_id], ops=("MoveItem",), times=2, code="ErrorInternalServerError"
    )
    sim.fail_items([batch["inbound"].item_id], ops=("MoveItem",), times=1)  # ErrorItemNotFound
    sim.fail_items(
        [batch["unregistered"].item_id],
        ops=("DeleteItem",),
        times=2,
        code="ErrorInternalServerError",
    )
    sim.set_latency(0)
    wait_for(lambda: not any(sim.fault_status().item_failures.values()), "every item fault used")


def connection_limit(scenario: Scenario, service: ServiceProcess) -> None:
    """ErrorExceededConnectionCount beyond one concurrent request (the stream holds one)."""
    before = total(service, "emaillog_retries_total")
    scenario.sim.set_max_connections(1)
    scenario.deliver(mixed_batch())
    wait_for_increase(service, "emaillog_retries_total", before, "refused requests retried")
    scenario.sim.set_max_connections(None)


def slow_responses(scenario: Scenario, service: ServiceProcess) -> None:
    """Every response slower than EMAILLOG_EWS_TIMEOUT_SECONDS for a while."""
    before = total(service, "emaillog_retries_total")
    scenario.sim.set_latency(1500)
    scenario.deliver(mixed_batch())
    wait_for_increase(service, "emaillog_retries_total", before, "timed-out requests retried")
    scenario.sim.set_latency(0)


@pytest.mark.parametrize(
    ("fault", "overrides"),
    [
        (server_busy_storm, {}),
        (stream_dropped_mid_body, {}),
        (subscription_expired, {}),
        (move_and_delete_fail_then_succeed, {"batch_wait_ms": 100}),
        (connection_limit, {}),
        (slow_responses, {"ews_timeout_seconds": 1.0}),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_mail_server_faults(scenario: Scenario, fault: Fault, overrides: dict[str, object]) -> None:
    service = scenario.start(**overrides)
    scenario.deliver(mixed_batch())  # before the fault, through the stream
    fault(scenario, service)
    scenario.sim.reset_faults()
    scenario.deliver(mixed_batch(copies=1))  # after it: the service still takes mail in
    outcomes = scenario.finish(service)
    assert "failed" not in outcomes.by_item.values()
    copies = [d for d in scenario.delivered if d.name.startswith("copy")]
    assert outcomes.of(copies).count(Outcome.LOGGED.value) == sum(
        1 for d in scenario.delivered if d.name == "outbound"
    )  # one logged copy per batch


def test_server_busy_while_starting(scenario: Scenario) -> None:
    """Regression: ErrorServerBusy while the source opened (FindFolder) made `emaillog run`
    exit 1 at start-up. Found by the property-based scenario."""
    scenario.deliver(mixed_batch())  # waiting in the queue before start
    scenario.sim.set_busy(4, back_off_ms=100)  # the first requests are the folder lookups
    service = scenario.start()
    assert scenario.sim.fault_status().busy_remaining == 0
    outcomes = scenario.finish(service)
    assert "failed" not in outcomes.by_item.values()


def test_poison_message_is_failed_left_in_the_queue_and_finished_after_a_restart(
    scenario: Scenario,
) -> None:
    """DeleteItem always fails for one message: after bounded retries it is recorded
    'failed' and stays in the queue (by design), the rest go through. Once the server
    accepts it again, the next run disposes of it as first decided."""
    service = scenario.start()
    scenario.sim.set_latency(200)  # so the fault is armed before the item is taken in
    [poison] = scenario.deliver([item for item in mixed_batch() if item.name == "unregistered"])
    scenario.sim.fail_items([poison.item_id], ops=("DeleteItem",), code="ErrorInternalServerError")
    scenario.sim.set_latency(0)
    scenario.deliver(mixed_batch())
    outcomes = scenario.finish(service, allowed_failed={poison.item_id})
    assert outcomes.by_item[poison.item_id] == "failed"
    assert list(outcomes.by_item.values()).count("failed") == 1

    scenario.sim.reset_faults()
    outcomes = scenario.finish(scenario.start())
    assert outcomes.by_item[poison.item_id] == Outcome.UNREGISTERED.value


@pytest.fixture(scope="module")
def restartable_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartablePostgres]:
    server = RestartablePostgres(tmp_path_factory.mktemp("pg-outage"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def outage_scenario(
    sim: SimulatorThread, restartable_pg: RestartablePostgres, tmp_path: Path
) -> Iterator[Scenario]:
    scenario = Scenario(sim, restartable_pg.new_database(), tmp_path)
    try:
        yield scenario
    finally:
        scenario.kill_all()
        restartable_pg.start()


def test_database_outage_mid_run(
    outage_scenario: Scenario, restartable_pg: RestartablePostgres
) -> None:
    """PostgreSQL stopped (immediate shutdown, i.e. a crash) with messages in flight and mail
    arriving, for about ten seconds, then started again: the service pauses and resumes."""
    scenario = outage_scenario
    service = scenario.start()
    scenario.deliver(mixed_batch())
    restartable_pg.stop()
    scenario.deliver(mixed_batch())
    wait_for(lambda: not service.readiness()["checks"]["database"], "/readyz to see the outage")
    restartable_pg.pause(10.0)  # the outage itself (a sleep by design, not a measurement)
    scenario.deliver(mixed_batch())
    restartable_pg.start()
    outcomes = scenario.finish(service)
    assert "failed" not in outcomes.by_item.values()
