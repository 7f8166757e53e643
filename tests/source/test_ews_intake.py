"""EwsSource intake under the harsh simulator (issue 11): polling when Subscribe fails and
back to streaming, public folders polled by default, sync-state recovery, the stream
watchdog, the shared back-off gate and outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from exchange_sim import Simulator
from pipeline.errors import SourceUnavailable, Throttled
from pipeline.model import MailRef
from pipeline.sources.ews import EwsSource
from pipeline.sources.ews_gate import gate_for
from tests.source.conftest import (
    MAILBOX,
    PUBLIC_QUEUE,
    PUBLIC_STORAGE,
    QUEUE,
    WAIT_SECONDS,
    Recorder,
    mime,
    next_ref,
    settings_for,
)

POLL = 0.3


async def open_source(sim: Simulator, events: Recorder, **overrides: object) -> EwsSource:
    values: dict[str, object] = {"poll_interval_seconds": POLL}
    values.update(overrides)
    source = EwsSource(settings_for(sim, **values), events)
    await source.open()
    return source


async def collect(arrivals: AsyncIterator[MailRef], wanted: set[str]) -> None:
    missing = set(wanted)
    while missing:
        missing.discard((await next_ref(arrivals)).item_id)


async def start(sim: Simulator, arrivals: AsyncIterator[MailRef]) -> None:
    """The arrivals thread starts at the first anext(): take one delivery through it."""
    await collect(arrivals, {sim.deliver(MAILBOX, QUEUE, mime())})


async def until(condition: object, what: str) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_subscribe_failing_polls_then_streams_again(sim: Simulator, events: Recorder) -> None:
    sim.set_subscription_limit(0)  # ErrorExceededSubscriptionCount for every Subscribe
    source = await open_source(sim, events)
    try:
        arrivals = source.arrivals()
        first = sim.deliver(MAILBOX, QUEUE, mime())
        assert (await next_ref(arrivals)).item_id == first  # the first poll
        later = {sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(3)}
        await collect(arrivals, later)  # later polls: nothing waits for a subscription
        assert events.modes == ["polling"]
        assert source.connected  # intake works
        assert sim.snapshot().subscriptions == 0
        sim.set_subscription_limit(None)
        await until(lambda: sim.snapshot().open_streams == 1, "a stream")
        assert events.modes == ["polling", "streaming"]
        streamed = sim.deliver(MAILBOX, QUEUE, mime())
        assert (await next_ref(arrivals)).item_id == streamed
    finally:
        await source.close()


async def test_subscribe_refused_by_other_errors_polls_too(
    sim: Simulator, events: Recorder
) -> None:
    for code in ("ErrorInvalidSubscriptionRequest", "ErrorProxyRequestNotAllowed"):
        sim.fail_requests(code, ops=("Subscribe",), times=None)
        source = await open_source(sim, events)
        try:
            arrivals = source.arrivals()
            item = sim.deliver(MAILBOX, QUEUE, mime())
            await collect(arrivals, {item})
            assert source._stream is not None and source._stream.mode == "polling"
        finally:
            await source.close()
            sim.reset_faults()


async def test_public_folder_queue_polls_by_default(sim: Simulator, events: Recorder) -> None:
    source = await open_source(
        sim, events, queue_folder=PUBLIC_QUEUE, storage_folder=PUBLIC_STORAGE
    )
    try:
        arrivals = source.arrivals()
        items = {sim.deliver(MAILBOX, PUBLIC_QUEUE, mime()) for _ in range(2)}
        await collect(arrivals, items)
        more = {sim.deliver(MAILBOX, PUBLIC_QUEUE, mime())}
        await collect(arrivals, more)
        assert events.modes == ["polling"]
        assert sim.snapshot().subscriptions == 0  # never tried
    finally:
        await source.close()


async def test_invalid_sync_state_resyncs_from_scratch(sim: Simulator, events: Recorder) -> None:
    source = await open_source(sim, events)
    try:
        arrivals = source.arrivals()
        await start(sim, arrivals)
        await until(lambda: sim.snapshot().open_streams == 1, "a stream")
        sim.fail_requests("ErrorInvalidSyncStateData", ops=("SyncFolderItems",), times=3)
        sim.drop_streams()  # the next catch-up replays the (now rejected) state
        item = sim.deliver(MAILBOX, QUEUE, mime())
        await collect(arrivals, {item})
        assert source._stream is not None and source._stream.resyncs >= 1
        await until(lambda: sim.snapshot().open_streams == 1, "streaming again")
        after = sim.deliver(MAILBOX, QUEUE, mime())
        await collect(arrivals, {after})
    finally:
        await source.close()


async def test_half_open_stream_is_cut_by_the_watchdog(sim: Simulator, events: Recorder) -> None:
    sim.set_half_open_streams(1)
    source = await open_source(sim, events, stream_silence_seconds=1.0)
    try:
        arrivals = source.arrivals()
        await start(sim, arrivals)  # caught up; the half-open stream opens after
        await until(lambda: sim.snapshot().open_streams == 1, "the half-open stream")
        item = sim.deliver(MAILBOX, QUEUE, mime())  # its events go nowhere
        started = time.monotonic()
        await collect(arrivals, {item})
        assert time.monotonic() - started < 10  # far below exchangelib's read timeout
        await events.wait_for(lambda: events.reconnects >= 1)  # cut and reopened
        await until(lambda: sim.snapshot().open_streams == 1, "a healthy stream")
        after = sim.deliver(MAILBOX, QUEUE, mime())
        await collect(arrivals, {after})
    finally:
        await source.close()


async def test_busy_inside_http_200_is_honoured_for_every_call(
    sim: Simulator, events: Recorder
) -> None:
    source = await open_source(sim, events)
    try:
        item = sim.deliver(MAILBOX, QUEUE, mime())
        sim.fail_requests("ErrorServerBusy", ops=("GetItem",), back_off_ms=1200)
        with pytest.raises(Throttled) as raised:
            await source.fetch([MailRef(item)])
        assert raised.value.retry_after == pytest.approx(1.2)  # not exchangelib's 10 s
        assert gate_for(sim.ews_url).remaining() > 0.5
        started = time.monotonic()
        await source.backlog()  # another call: it waits for the same gate
        assert time.monotonic() - started > 0.5
    finally:
        await source.close()


async def test_http_503_retry_after_holds_the_gate(sim: Simulator, events: Recorder) -> None:
    source = await open_source(sim, events)
    try:
        sim.set_http_error(503, count=1, retry_after_seconds=1)
        with pytest.raises(Throttled) as raised:
            await source.backlog()
        assert raised.value.retry_after == pytest.approx(1.0)
        started = time.monotonic()
        assert await source.backlog() == 0
        assert time.monotonic() - started > 0.5
        sim.set_http_error(503, count=1)  # no Retry-After: an outage
        with pytest.raises(SourceUnavailable):
            await source.backlog()
    finally:
        await source.close()


@pytest.mark.parametrize(
    "code",
    ["ErrorExceededConnectionCount", "ErrorMailboxMoveInProgress", "ErrorMailboxStoreUnavailable"],
)
async def test_outages_are_source_unavailable(sim: Simulator, events: Recorder, code: str) -> None:
    source = await open_source(sim, events)
    try:
        item = sim.deliver(MAILBOX, QUEUE, mime())
        sim.fail_requests(code, ops=("GetItem", "MoveItem"), times=2)
        with pytest.raises(SourceUnavailable):
            await source.fetch([MailRef(item)])
        with pytest.raises(SourceUnavailable):
            await source.move_to_storage([MailRef(item)])
    finally:
        await source.close()


async def test_public_folder_content_requests_carry_routing_headers(
    sim: Simulator, events: Recorder
) -> None:
    """With routing enforced (as Exchange Online does), every content request on public
    folders must name the content mailbox found through PR_REPLICA_LIST."""
    sim.require_public_routing()
    source = await open_source(
        sim, events, queue_folder=PUBLIC_QUEUE, storage_folder=PUBLIC_STORAGE
    )
    try:
        assert source._queue_route == f"{sim.public_content_mailbox_guid}@example.com"
        arrivals = source.arrivals()
        item = sim.deliver(MAILBOX, PUBLIC_QUEUE, mime())
        ref = await next_ref(arrivals)  # FindItem by the arrivals thread
        assert ref.item_id == item
        [fetched] = await source.fetch([ref])  # GetItem
        assert not isinstance(fetched, Exception)
        assert fetched.mail.message_id
        [stored] = await source.move_to_storage([ref])  # GetItem, MoveItem, FindItem
        assert not isinstance(stored, Exception)
        assert stored.item_id is not None and stored.web_link
        assert await source.find_in_storage(fetched.mail.message_id) == [stored]
        assert await source.backlog() == 0
    finally:
        await source.close()


async def test_streams_refused_again_and_again_mean_polling(
    sim: Simulator, events: Recorder
) -> None:
    """HangingConnectionLimit reached: Subscribe works, every stream is refused. After a
    few tries the source polls for an interval at a time, and mail still comes in."""
    sim.set_stream_limit(0)
    source = await open_source(sim, events)
    try:
        arrivals = source.arrivals()
        await start(sim, arrivals)
        await events.wait_for(lambda: "polling" in events.modes)
        later = {sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(2)}
        await collect(arrivals, later)
        sim.set_stream_limit(None)
        await until(lambda: sim.snapshot().open_streams == 1, "streaming again")
        assert events.modes[-1] == "streaming"
    finally:
        await source.close()


async def test_a_silent_stream_is_polled_meanwhile(sim: Simulator, events: Recorder) -> None:
    """Before the watchdog is sure (its limit is long), a stream silent for a poll interval
    is backed by polls: mail does not wait for the watchdog."""
    sim.set_half_open_streams(1)
    source = await open_source(sim, events, stream_silence_seconds=60.0)
    try:
        arrivals = source.arrivals()
        await start(sim, arrivals)
        await until(lambda: sim.snapshot().open_streams == 1, "the half-open stream")
        item = sim.deliver(MAILBOX, QUEUE, mime())
        started = time.monotonic()
        await collect(arrivals, {item})
        assert time.monotonic() - started < 10
        assert events.reconnects == 0  # the watchdog has not cut it (yet)
    finally:
        await source.close()
