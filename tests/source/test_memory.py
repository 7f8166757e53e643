"""MemorySource's own test hooks: fault injection, gates, drop/reconnect. (What it shares
with every source is in test_contract.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from pipeline.errors import ItemGone, Permanent, Retryable, SourceUnavailable, Throttled
from pipeline.model import MailRef
from pipeline.sources import Disposal, Fetched, Stored
from pipeline.sources.memory import MemorySource
from tests.source.conftest import MAILBOX, WAIT_SECONDS, Recorder, mime, next_ref


@pytest.fixture
async def source(events: Recorder) -> AsyncIterator[MemorySource]:
    src = MemorySource(MAILBOX, disposal_folder="Audit", events=events)
    await src.open()
    try:
        yield src
    finally:
        await src.close()


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while not predicate():
            await asyncio.sleep(0)


async def test_deliver_parses_the_bytes_and_keeps_the_arrival_time(source: MemorySource) -> None:
    at = datetime(2024, 3, 4, 10, 5, tzinfo=UTC)
    ref = source.deliver(mime("Offer", message_id="<x@ours.test>"), received_at=at)
    assert ref.received_at == at
    mail = source.queue()[ref.item_id]
    assert (mail.message_id, mail.received_at) == ("<x@ours.test>", at)
    assert mail.subject.startswith("Offer")
    later = source.deliver(mime())
    assert later.received_at is not None and later.received_at > ref.received_at


async def test_whole_call_failures_come_the_given_number_of_times(
    source: MemorySource, events: Recorder
) -> None:
    ref = source.deliver(mime())
    source.fail_next("fetch", Throttled("busy", retry_after=2.0), times=2)
    source.fail_next("move", SourceUnavailable("down"))
    for _ in range(2):
        with pytest.raises(Throttled):
            await source.fetch([ref])
    assert events.throttled == [2.0, 2.0]
    [fetched] = await source.fetch([ref])
    assert isinstance(fetched, Fetched)
    with pytest.raises(SourceUnavailable):
        await source.move_to_storage([ref])
    assert source.calls("fetch") == 3 and source.calls("move") == 1
    assert list(source.queue()) == [ref.item_id]  # a failed call changed nothing


async def test_a_poison_item_fails_in_place_for_ever(source: MemorySource) -> None:
    poison, fine = source.deliver(mime()), source.deliver(mime())
    source.fail_item(poison.item_id, "fetch", Permanent("unreadable"))
    for _ in range(3):
        results = await source.fetch([poison, fine])
        assert isinstance(results[0], Permanent) and isinstance(results[1], Fetched)


async def test_an_item_failing_k_times_then_succeeds(source: MemorySource) -> None:
    ref = source.deliver(mime())
    source.fail_item(ref.item_id, "move", Retryable("try again"), times=2)
    assert [type(r) for r in await source.move_to_storage([ref])] == [Retryable]
    assert [type(r) for r in await source.move_to_storage([ref])] == [Retryable]
    [stored] = await source.move_to_storage([ref])
    assert isinstance(stored, Stored) and stored.item_id in source.storage()
    assert stored.web_link
    source.clear_faults()


async def test_removed_items_are_gone_and_send_no_event(source: MemorySource) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await until(lambda: source.connected)
    removed = source.deliver(mime())
    assert (await first).item_id == removed.item_id
    source.remove(removed.item_id)
    [result] = await source.dispose([removed], Disposal.TRASH)
    assert isinstance(result, ItemGone)
    kept = source.deliver(mime())
    assert (await next_ref(arrivals)).item_id == kept.item_id
    with pytest.raises(KeyError):
        source.remove(removed.item_id)


async def test_dispose_puts_mail_where_asked(source: MemorySource) -> None:
    trash, away, delete = (source.deliver(mime()) for _ in range(3))
    assert await source.dispose([trash], Disposal.TRASH) == [None]
    assert await source.dispose([away], Disposal.MOVE) == [None]
    assert await source.dispose([delete], Disposal.HARD_DELETE) == [None]
    assert len(source.trash()) == 1 and len(source.folder("Audit")) == 1
    assert source.queue() == {} and source.storage() == {}


async def test_dispose_by_move_needs_a_disposal_folder(events: Recorder) -> None:
    source = MemorySource(MAILBOX, events=events)
    await source.open()
    with pytest.raises(RuntimeError):
        await source.dispose([source.deliver(mime())], Disposal.MOVE)


async def test_a_gate_holds_calls_until_released(source: MemorySource) -> None:
    ref = source.deliver(mime())
    source.hold("dispose")
    call = asyncio.ensure_future(source.dispose([ref], Disposal.HARD_DELETE))
    await until(lambda: source.held("dispose") == 1)
    assert ref.item_id in source.queue()  # held before it did anything
    source.release("dispose")
    assert await call == [None]
    assert source.held("dispose") == 0 and source.queue() == {}


async def test_drop_connection_reconnects_and_catches_up(
    source: MemorySource, events: Recorder
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await until(lambda: source.connected)
    before = source.deliver(mime())
    assert (await first).item_id == before.item_id
    # Keep it disconnected (a held resubscription) to look at the state in between.
    source.hold("subscribe")
    assert source.drop_connection() is True
    assert not source.connected and events.connected == [True, False]
    during = source.deliver(mime())
    pending = asyncio.ensure_future(next_ref(arrivals))
    await until(lambda: source.held("subscribe") == 1)
    assert not pending.done()
    source.release("subscribe")
    assert (await pending).item_id == during.item_id  # from the catch-up, not a push
    assert events.connected == [True, False, True] and events.reconnects == 1
    after = source.deliver(mime())
    assert (await next_ref(arrivals)).item_id == after.item_id
    assert source.drop_connection() is True and source.drop_connection() is False


async def test_a_failing_resubscription_is_retried(source: MemorySource, events: Recorder) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await until(lambda: source.connected)
    source.fail_next("subscribe", SourceUnavailable("down"), times=3)
    source.fail_next("subscribe", Throttled("busy", retry_after=0.01))
    source.drop_connection()
    during = source.deliver(mime())
    assert (await first).item_id == during.item_id
    assert source.calls("subscribe") == 6  # the first, four failures, the one that worked
    assert events.throttled == [0.01] and events.reconnects == 1


async def test_arrivals_need_open_and_allow_one_consumer(events: Recorder) -> None:
    source = MemorySource(MAILBOX, events=events)
    with pytest.raises(RuntimeError):
        await anext(source.arrivals())
    await source.open()
    source.deliver(mime())
    await next_ref(source.arrivals())
    with pytest.raises(RuntimeError):
        await anext(source.arrivals())
    await source.close()


async def test_a_failing_open_raises(events: Recorder) -> None:
    source = MemorySource(MAILBOX, events=events)
    source.fail_next("open", SourceUnavailable("no server"))
    with pytest.raises(SourceUnavailable):
        await source.open()
    with pytest.raises(SourceUnavailable):
        await source.backlog()
    await source.open()
    assert await source.backlog() == 0


async def test_find_counts_as_one_operation(source: MemorySource) -> None:
    source.fail_next("find", SourceUnavailable("down"))
    with pytest.raises(SourceUnavailable):
        await source.find_in_storage_by_key("sha256:x")
    assert await source.find_in_queue("<nothing@ours.test>") == []
    [unknown] = await source.fetch([MailRef("mem-unknown")])
    assert isinstance(unknown, ItemGone)


async def test_a_drop_during_catch_up_skips_nothing_and_repeats_nothing(
    source: MemorySource, events: Recorder
) -> None:
    queued = [source.deliver(mime()).item_id for _ in range(3)]
    arrivals = source.arrivals()
    assert (await next_ref(arrivals)).item_id == queued[0]
    source.drop_connection()
    rest = [(await next_ref(arrivals)).item_id for _ in range(2)]
    assert rest == queued[1:]
    assert events.connected == [True, False, True] and events.reconnects == 1
