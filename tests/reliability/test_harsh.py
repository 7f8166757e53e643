"""The harsh simulator (issue 11): each fault Exchange produces, while mail keeps arriving,
against `emaillog run` as a process. Each scenario ends with the invariants check (every
message accounted for once, queue empty, nothing failed) and the no-stall check (no gap
over 60 s with mail waiting and nothing disposed of: gaps.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from pipeline.model import Outcome
from tests.reliability.gaps import GapMonitor
from tests.reliability.mail import mixed_batch
from tests.reliability.process import ServiceProcess, wait_for
from tests.reliability.scenario import Scenario
from tests.service.harness import PUBLIC_QUEUE, PUBLIC_STORAGE

#: Intake settings for these scenarios: poll often, notice a silent stream soon.
HARSH: dict[str, object] = {"poll_interval_seconds": 2.0, "stream_silence_seconds": 3.0}
#: How long the all-at-once run lasts (EMAILLOG_TEST_HARSH_SECONDS to change it).
ALL_AT_ONCE_SECONDS = float(os.environ.get("EMAILLOG_TEST_HARSH_SECONDS", "180"))
OUTAGE_CODES = (
    "ErrorExceededConnectionCount",
    "ErrorMailboxMoveInProgress",
    "ErrorMailboxStoreUnavailable",
)


def metric(service: ServiceProcess, name: str) -> float:
    return service.metrics().get(name, 0.0)


def feed(scenario: Scenario, seconds: float, every: float = 1.0) -> None:
    """Mail keeps arriving: a small mixed batch every `every` seconds for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        scenario.deliver(mixed_batch(copies=1))
        time.sleep(every)


POLLING = 'emaillog_source_mode{mode="polling"}'
STREAMING = 'emaillog_source_mode{mode="streaming"}'


def subscribe_refused(scenario: Scenario, service: ServiceProcess) -> None:
    """ErrorExceededSubscriptionCount (the mailbox's 20 are used up): the service polls."""
    scenario.sim.set_subscription_limit(0)
    scenario.sim.expire_subscriptions()
    wait_for(lambda: metric(service, POLLING) == 1.0, "polling")
    feed(scenario, 6)
    scenario.sim.set_subscription_limit(None)
    wait_for(lambda: metric(service, STREAMING) == 1.0, "streaming again")


def subscribe_errors(scenario: Scenario, service: ServiceProcess) -> None:
    for code in ("ErrorInvalidSubscriptionRequest", "ErrorProxyRequestNotAllowed"):
        scenario.sim.fail_requests(code, ops=("Subscribe",), times=None)
        scenario.sim.expire_subscriptions()
        wait_for(lambda: metric(service, POLLING) == 1.0, "polling")
        feed(scenario, 3)
        scenario.sim.reset_faults()
        wait_for(lambda: metric(service, STREAMING) == 1.0, "streaming again")


def invalid_sync_state(scenario: Scenario, service: ServiceProcess) -> None:
    scenario.sim.fail_requests("ErrorInvalidSyncStateData", ops=("SyncFolderItems",), times=2)
    scenario.sim.drop_streams()  # the catch-up after the resubscribe meets the bad state
    feed(scenario, 4)
    wait_for(lambda: not scenario.sim.fault_status().request_faults, "the fault used up")


def busy_inside_http_200(scenario: Scenario, service: ServiceProcess) -> None:
    before = metric(service, "emaillog_upstream_throttled_total")
    scenario.sim.fail_requests("ErrorServerBusy", ops=("*",), times=15, back_off_ms=400)
    feed(scenario, 4)
    wait_for(lambda: metric(service, "emaillog_upstream_throttled_total") > before, "throttling")


def http_503_and_429(scenario: Scenario, service: ServiceProcess) -> None:
    scenario.sim.set_http_error(503, count=10, retry_after_seconds=1)
    feed(scenario, 3)
    scenario.sim.set_http_error(429, count=5, retry_after_seconds=1)
    feed(scenario, 3)
    scenario.sim.set_http_error(503, count=5)  # no Retry-After
    feed(scenario, 2)


def outages(scenario: Scenario, service: ServiceProcess) -> None:
    """More refusals than EMAILLOG_RETRY_MAX_ATTEMPTS: still nobody's fault, nothing failed."""
    for code in OUTAGE_CODES:
        scenario.sim.fail_requests(code, ops=("*",), times=12)
        feed(scenario, 2)
        wait_for(lambda: not scenario.sim.fault_status().request_faults, f"{code} used up")


def half_open_streams(scenario: Scenario, service: ServiceProcess) -> None:
    before = metric(service, "emaillog_source_reconnects_total")
    scenario.sim.set_half_open_streams(3)
    scenario.sim.drop_streams()
    feed(scenario, 10)
    wait_for(lambda: scenario.sim.fault_status().half_open_streams == 0, "three half-open")
    wait_for(
        lambda: metric(service, "emaillog_source_reconnects_total") >= before + 3,
        "the watchdog reopening them",
    )


def timeouts_and_stopped_batches(scenario: Scenario, service: ServiceProcess) -> None:
    scenario.sim.fail_requests("ErrorTimeoutExpired", ops=("GetItem", "MoveItem"), times=8)
    scenario.sim.fail_requests("ErrorBatchProcessingStopped", ops=("DeleteItem",), times=8)
    feed(scenario, 4)


def stream_limit(scenario: Scenario, service: ServiceProcess) -> None:
    """HangingConnectionLimit reached (streams of other clients): every stream refused."""
    scenario.sim.set_stream_limit(0)
    scenario.sim.drop_streams()
    feed(scenario, 6)
    scenario.sim.set_stream_limit(None)


def get_item_fails_per_item(scenario: Scenario, service: ServiceProcess) -> None:
    sim = scenario.sim
    sim.set_latency(200)  # so the faults are armed before the items are taken in
    batch = scenario.deliver(mixed_batch(copies=1))
    ids = [d.item_id for d in batch[:4]]
    sim.fail_items(ids, ops=("GetItem",), times=3, code="ErrorInternalServerTransientError")
    sim.set_latency(0)
    feed(scenario, 3)
    wait_for(lambda: not any(sim.fault_status().item_failures.values()), "item faults used")


Fault = Callable[[Scenario, ServiceProcess], None]


@pytest.mark.parametrize(
    "fault",
    [
        subscribe_refused,
        subscribe_errors,
        invalid_sync_state,
        busy_inside_http_200,
        http_503_and_429,
        outages,
        half_open_streams,
        timeouts_and_stopped_batches,
        stream_limit,
        get_item_fails_per_item,
    ],
    ids=lambda f: f.__name__,
)
def test_harsh_fault(scenario: Scenario, fault: Fault) -> None:
    service = scenario.start(**HARSH)
    with GapMonitor(scenario.sim, service) as gaps:
        scenario.deliver(mixed_batch(copies=1))
        fault(scenario, service)
        scenario.sim.reset_faults()
        scenario.deliver(mixed_batch(copies=1))
        outcomes = scenario.finish(service)
    gaps.check()
    assert "failed" not in outcomes.by_item.values()


def _arm_at_random(scenario: Scenario, step: int) -> None:
    sim = scenario.sim
    arms: list[Callable[[], object]] = [
        lambda: sim.set_subscription_limit(0),
        sim.expire_subscriptions,
        lambda: sim.fail_requests("ErrorServerBusy", ops=("*",), times=5, back_off_ms=300),
        lambda: sim.set_http_error(503, count=4, retry_after_seconds=1),
        lambda: sim.fail_requests(OUTAGE_CODES[step % 3], ops=("*",), times=8),
        lambda: sim.set_half_open_streams(1),
        sim.drop_streams,
        lambda: sim.fail_requests("ErrorInvalidSyncStateData", ops=("SyncFolderItems",)),
        lambda: sim.set_stream_limit(0 if step % 2 else None),
        lambda: sim.set_subscription_limit(None),
    ]
    arms[step % len(arms)]()


def test_all_faults_at_once_for_minutes(scenario: Scenario) -> None:
    service = scenario.start(**HARSH)
    end = time.monotonic() + ALL_AT_ONCE_SECONDS
    step = 0
    with GapMonitor(scenario.sim, service) as gaps:
        while time.monotonic() < end:
            _arm_at_random(scenario, step)
            step += 1
            feed(scenario, 2.0)
        scenario.sim.reset_faults()
        scenario.deliver(mixed_batch(copies=1))
        outcomes = scenario.finish(service)
    gaps.check()
    assert "failed" not in outcomes.by_item.values()


def test_public_folder_storage_records_id_and_link(scenario: Scenario) -> None:
    """Moves into a public folder return no id: the stored copy is found by Message-ID and
    its link recorded; lookups refused for a while are finished by the reconciler. The
    invariants check both for every logged message. Requests for the public folder's
    content must carry the routing headers throughout."""
    scenario.sim.require_public_routing()  # content requests need routing headers
    service = scenario.start(storage_folder=PUBLIC_STORAGE, **HARSH)
    with GapMonitor(scenario.sim, service) as gaps:
        scenario.deliver(mixed_batch(copies=1))
        scenario.sim.fail_requests("ErrorMailboxStoreUnavailable", ops=("FindItem",), times=6)
        feed(scenario, 4)
        wait_for(lambda: not scenario.sim.fault_status().request_faults, "the fault used up")
        feed(scenario, 2)
        outcomes = scenario.finish(service)
    gaps.check()
    assert "failed" not in outcomes.by_item.values()
    assert Outcome.LOGGED.value in outcomes.by_item.values()


def test_half_open_stream_with_the_default_watchdog(scenario: Scenario) -> None:
    """EMAILLOG_STREAM_SILENCE_SECONDS at its default (90 s): before the watchdog cuts the
    silent stream, polls keep mail moving (no 60 s gap)."""
    service = scenario.start(poll_interval_seconds=2.0)
    with GapMonitor(scenario.sim, service) as gaps:
        scenario.deliver(mixed_batch(copies=1))
        scenario.sim.set_half_open_streams(1)
        scenario.sim.drop_streams()
        wait_for(lambda: scenario.sim.fault_status().half_open_streams == 0, "a half-open stream")
        feed(scenario, 8)
        outcomes = scenario.finish(service)
    gaps.check()
    assert gaps.longest < 15
    assert "failed" not in outcomes.by_item.values()


def test_public_folder_queue_polls_routed_with_faults(scenario: Scenario) -> None:
    """A public-folder queue and storage: polled by default (no Subscribe at all), every
    content request routed to the content mailbox, through outages and busy replies."""
    scenario.sim.require_public_routing()
    service = scenario.start(queue_folder=PUBLIC_QUEUE, storage_folder=PUBLIC_STORAGE, **HARSH)
    with GapMonitor(scenario.sim, service, PUBLIC_QUEUE) as gaps:
        wait_for(lambda: metric(service, POLLING) == 1.0, "polling")
        scenario.deliver(mixed_batch(copies=1))
        scenario.sim.fail_requests("ErrorMailboxStoreUnavailable", ops=("FindItem",), times=4)
        scenario.sim.fail_requests("ErrorServerBusy", ops=("GetItem",), times=3, back_off_ms=300)
        feed(scenario, 6)
        outcomes = scenario.finish(service)
    gaps.check()
    assert "failed" not in outcomes.by_item.values()
    assert scenario.sim.snapshot().subscriptions == 0
