"""The reliability suite with EMAILLOG_SOURCE=graph: SIGKILL at every step, 429/503 storms
(also on $batch parts), an expired delta token mid-run, dropped change notifications and a
removed subscription; the same invariants as EWS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_sim import SimulatorThread
from tests.reliability.graph_scenario import GraphScenario
from tests.reliability.mail import mixed_batch
from tests.reliability.process import wait_for
from tests.reliability.scenario import CRASH_POINTS, kept
from tests.service.harness import free_port


@pytest.fixture
def graph(
    sim: SimulatorThread, db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[GraphScenario]:
    with kept(GraphScenario(sim, db, tmp_path), request) as scenario:
        yield scenario
    assert scenario.recorder.invalid() == []  # every Graph answer matched the metadata


@pytest.mark.parametrize(("crash_at", "overrides"), CRASH_POINTS)
def test_crash_at_each_step_then_restart_on_graph(
    graph: GraphScenario, crash_at: str, overrides: dict[str, object]
) -> None:
    batch = mixed_batch()
    graph.deliver(batch[::2])
    doomed = graph.start(crash_at=crash_at, **overrides)
    doomed.wait_ready_or_gone()
    graph.deliver(batch[1::2])
    doomed.wait_crashed()
    graph.finish(graph.start(**overrides))


def test_throttling_storm_and_an_expired_delta_token(graph: GraphScenario) -> None:
    service = graph.start()
    graph.deliver(mixed_batch())
    graph.simulator.graph.throttle(15, retry_after_seconds=0.2)
    graph.simulator.graph.throttle(5, retry_after_seconds=0.1, status=503)
    graph.deliver(mixed_batch(copies=1))
    wait_for(lambda: graph.simulator.graph.counters()["throttled"] >= 20, "the storm")
    graph.simulator.graph.expire_delta_tokens()
    graph.deliver(mixed_batch(copies=1))
    outcomes = graph.finish(service)
    assert "failed" not in outcomes.by_item.values()


def test_dropped_and_removed_change_notifications(graph: GraphScenario) -> None:
    """With change notifications on, some lost and the subscription removed mid-run: delta
    still closes every gap."""
    port = free_port()
    service = graph.start(
        graph_notification_url=f"http://127.0.0.1:{port}/graph/notify",
        graph_notification_listen=f"127.0.0.1:{port}",
        graph_poll_seconds=1.0,
    )
    wait_for(lambda: graph.simulator.graph.counters()["subscriptions"] == 1, "a subscription")
    graph.simulator.graph.drop_notifications(5)
    graph.deliver(mixed_batch())
    assert graph.simulator.graph.remove_subscriptions() == 1
    graph.deliver(mixed_batch(copies=1))
    wait_for(lambda: graph.simulator.graph.counters()["subscriptions"] == 1, "resubscribed")
    graph.deliver(mixed_batch(copies=1))
    outcomes = graph.finish(service)
    assert "failed" not in outcomes.by_item.values()
