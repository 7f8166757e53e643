"""The Graph source's own details (the shared contract is test_contract.py): settings,
the factory, PidTagSensitivity, $batch limits and throttled parts, outages, tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from exchange_sim import Simulator
from pipeline.config import SourceKind
from pipeline.errors import ConfigError, FolderNotFound, SourceUnavailable, Throttled
from pipeline.model import MailRef, Sensitivity
from pipeline.sources import Fetched, NoEvents
from pipeline.sources.factory import build_source
from pipeline.sources.graph import GraphSource
from pipeline.sources.graph_convert import retry_after, sensitivity, to_mail
from pipeline.sources.graph_delta import MemoryLinks
from tests.service.harness import free_port
from tests.settings import make_settings
from tests.sim_graph.conftest import GraphRecorder
from tests.source.conftest import FOLDERS, MAILBOX, QUEUE, WAIT_SECONDS, Recorder, mime, next_ref
from tests.source.graph_kit import APP_ID, APP_SECRET, graph_id, graph_settings


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    recorder = GraphRecorder()
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as simulator:
        simulator.graph.register_app(APP_ID, APP_SECRET)
        simulator.graph.record_responses(recorder)
        yield simulator
    assert recorder.invalid() == []


@pytest.fixture
async def source(sim: Simulator, events: Recorder) -> AsyncIterator[GraphSource]:
    opened = GraphSource(graph_settings(sim), events)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def test_settings_problems_factory_and_redaction() -> None:
    with pytest.raises(ConfigError) as raised:
        make_settings(source="graph", queue_folder="public:/Queue").check_service()
    text = str(raised.value)
    for name in ("GRAPH_MAILBOX", "GRAPH_TENANT_ID", "GRAPH_CLIENT_ID", "GRAPH_CLIENT_SECRET"):
        assert f"EMAILLOG_{name}" in text
    assert "no public: with graph" in text
    good = make_settings(
        source="graph",
        graph_mailbox=MAILBOX,
        graph_tenant_id="t",
        graph_client_id="c",
        graph_client_secret="s3cret",
    )
    assert good.source.kind is SourceKind.GRAPH and good.source.problems() == []
    assert isinstance(build_source(good, NoEvents()), GraphSource)
    assert good.redacted()["EMAILLOG_GRAPH_CLIENT_SECRET"] == "***"


def test_sensitivity_from_the_extended_property() -> None:
    def with_value(pid: str, value: str) -> dict[str, object]:
        return {"singleValueExtendedProperties": [{"id": pid, "value": value}]}

    assert sensitivity({}) is Sensitivity.NORMAL
    assert sensitivity(with_value("Integer 0x36", "2")) is Sensitivity.PRIVATE
    assert sensitivity(with_value("Integer 0x0036", "1")) is Sensitivity.PERSONAL
    assert sensitivity(with_value("Integer 0x36", "7")) is Sensitivity.CONFIDENTIAL
    assert sensitivity(with_value("String 0x37", "3")) is Sensitivity.NORMAL
    assert retry_after({"Retry-After": "2.128"}) == 2.128
    assert retry_after({}) is None
    mail = to_mail({"sender": None, "from": {"emailAddress": {"address": "a@b.test"}}})
    assert mail.sender is not None and mail.sender.email == "a@b.test"


async def test_fetch_of_many_uses_batches_within_the_limits(
    source: GraphSource, sim: Simulator
) -> None:
    sim.graph.set_latency(20)
    ids = [graph_id(sim.deliver(MAILBOX, QUEUE, mime())) for _ in range(65)]
    results = await source.fetch([MailRef(i) for i in ids])
    assert [r.ref.item_id for r in results if isinstance(r, Fetched)] == ids
    assert sim.graph.counters()["throttled"] == 0  # never over 4 concurrent requests


async def test_a_throttled_batch_part_throttles_the_call(
    source: GraphSource, sim: Simulator, events: Recorder
) -> None:
    ids = [graph_id(sim.deliver(MAILBOX, QUEUE, mime())) for _ in range(3)]
    sim.graph.throttle(1, retry_after_seconds=0.25)
    with pytest.raises(Throttled) as raised:
        await source.fetch([MailRef(i) for i in ids])
    assert raised.value.retry_after == 0.25 and events.throttled == [0.25]
    sim.graph.throttle(1, retry_after_seconds=None, status=503)
    with pytest.raises(SourceUnavailable):
        await source.backlog()
    assert await source.backlog() == 3


async def test_open_refuses_bad_credentials_and_missing_folders(sim: Simulator) -> None:
    wrong = GraphSource(graph_settings(sim, graph_client_secret="wrong"))
    with pytest.raises(SourceUnavailable):
        await wrong.open()
    await wrong.close()
    missing = GraphSource(graph_settings(sim, queue_folder="Email Logging/Nowhere"))
    with pytest.raises(FolderNotFound):
        await missing.open()
    await missing.close()


def notifying(sim: Simulator, poll_seconds: float) -> GraphSource:
    port = free_port()
    settings = graph_settings(
        sim,
        graph_notification_url=f"http://127.0.0.1:{port}/graph/notify",
        graph_notification_listen=f"127.0.0.1:{port}",
        graph_poll_seconds=poll_seconds,
    )
    return GraphSource(settings, Recorder())


async def test_change_notifications_wake_the_delta_query(sim: Simulator) -> None:
    source = notifying(sim, poll_seconds=60)  # a poll would come far too late
    await source.open()
    try:
        arrivals = source.arrivals()
        first = graph_id(sim.deliver(MAILBOX, QUEUE, mime()))
        assert (await next_ref(arrivals)).item_id == first  # the first round
        assert sim.graph.counters()["subscriptions"] == 1  # subscribed before it
        second = graph_id(sim.deliver(MAILBOX, QUEUE, mime()))
        assert (await next_ref(arrivals)).item_id == second  # woken by the notification
        assert isinstance(source.events, Recorder) and "streaming" in source.events.modes
        # Removed by the server: subscribed again (lifecycle event), and still woken.
        assert sim.graph.remove_subscriptions() == 1
        pending = asyncio.ensure_future(next_ref(arrivals))
        async with asyncio.timeout(WAIT_SECONDS):
            while sim.graph.counters()["subscriptions"] == 0:
                await asyncio.sleep(0.02)
        third = graph_id(sim.deliver(MAILBOX, QUEUE, mime()))
        assert (await pending).item_id == third
    finally:
        await source.close()
    assert sim.graph.counters()["subscriptions"] == 0  # deleted at close


async def test_a_dropped_or_forged_notification_is_closed_by_delta(sim: Simulator) -> None:
    source = notifying(sim, poll_seconds=0.5)
    await source.open()
    try:
        arrivals = source.arrivals()
        first = asyncio.ensure_future(next_ref(arrivals))
        async with asyncio.timeout(WAIT_SECONDS):
            while sim.graph.counters()["subscriptions"] == 0:
                await asyncio.sleep(0.02)
        sim.graph.drop_notifications(1)
        lost = graph_id(sim.deliver(MAILBOX, QUEUE, mime()))
        assert (await first).item_id == lost  # the next delta round found it
        assert source.notifications is not None
        url = source.graph.notification_url
        async with aiohttp.ClientSession() as http:
            forged = {"value": [{"clientState": "guess", "changeType": "created"}]}
            async with http.post(url, json=forged) as answer:
                assert answer.status == 202
        assert source.notifications.forged == 1
    finally:
        await source.close()


async def test_resuming_a_kept_delta_link_still_reports_what_is_left_in_the_queue(
    sim: Simulator,
) -> None:
    links = MemoryLinks()
    first = GraphSource(graph_settings(sim))
    first.links = links
    await first.open()
    left = graph_id(sim.deliver(MAILBOX, QUEUE, mime()))
    assert (await next_ref(first.arrivals())).item_id == left  # reported, never handled
    await first.close()
    assert links.links  # the round's delta link was kept
    second = GraphSource(graph_settings(sim))
    second.links = links
    await second.open()
    try:
        assert (await next_ref(second.arrivals())).item_id == left
    finally:
        await second.close()
