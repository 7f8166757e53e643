"""The source contract: what every `MailSource` must do, run against every kit (kits.py).

The pipeline relies on these and nothing else a source does, so a source that passes them
can replace another. Per-source details (EWS pages, public folders, authentication) stay
in that source's own tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

import pytest

from pipeline.errors import ItemGone, SourceUnavailable, Throttled
from pipeline.mailparse import parse_mime
from pipeline.model import Address, Mail, MailRef
from pipeline.sources import Disposal, Fetched, MailSource, Stored
from tests.source.conftest import MAILBOX, WAIT_SECONDS, Recorder, mime, next_ref, take
from tests.source.kits import KITS, Folder, SourceKit


@pytest.fixture(params=sorted(KITS))
async def kit(request: pytest.FixtureRequest, events: Recorder) -> AsyncIterator[SourceKit]:
    async with KITS[request.param](events) as opened:
        yield opened


@pytest.fixture
async def source(kit: SourceKit) -> MailSource:
    return await kit.open_source()


async def wait_connected(source: MailSource) -> None:
    """Until the source is subscribed: from then on no delivery can be missed."""
    async with asyncio.timeout(WAIT_SECONDS):
        while not source.connected:
            await asyncio.sleep(0.01)


async def collect(arrivals: AsyncIterator[MailRef], wanted: Iterable[str]) -> list[str]:
    """Item ids from `arrivals` until every wanted one came (a source may repeat one)."""
    missing, got = set(wanted), []
    while missing:
        ref = await next_ref(arrivals)
        got.append(ref.item_id)
        missing.discard(ref.item_id)
    return got


def rules_view(mail: Mail) -> tuple[object, ...]:
    """What the rules read of a message (received_at is the queue's: compared apart).
    Addresses by their bare address: display names differ between sources (Exchange names
    a mailbox written without one by its address) and the rules never read them."""
    return (
        mail.message_id,
        mail.content_hash,
        mail.subject,
        mail.sender.email if mail.sender else None,
        [a.email for a in mail.to],
        [a.email for a in mail.cc],
        mail.sensitivity,
        mail.is_draft,
        mail.sent_at,
    )


def refs(item_ids: Iterable[str]) -> list[MailRef]:
    return [MailRef(item_id) for item_id in item_ids]


# --- identity and arrivals ---


async def test_mailbox_and_no_subscription_before_arrivals(
    source: MailSource, events: Recorder
) -> None:
    assert source.mailbox == MAILBOX
    assert not source.connected
    assert events.connected == []


async def test_catch_up_reports_what_was_queued_before_open(
    kit: SourceKit, events: Recorder
) -> None:
    delivered = [kit.deliver(mime()) for _ in range(3)]
    source = await kit.open_source()
    arrived = await take(source.arrivals(), 3)
    assert sorted(r.item_id for r in arrived) == sorted(delivered)
    assert events.connected == [True]
    # A ref's received_at is the queue arrival time, and fetch agrees with it.
    fetched = await source.fetch(arrived)
    assert all(isinstance(f, Fetched) for f in fetched)
    for ref, f in zip(arrived, fetched, strict=True):
        assert isinstance(f, Fetched)
        assert ref.received_at is not None
        assert f.mail.received_at == ref.received_at


async def test_new_deliveries_arrive_and_moved_items_do_not(
    source: MailSource, kit: SourceKit, events: Recorder
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_connected(source)
    one = kit.deliver(mime())
    ref = await first
    assert ref.item_id == one
    [stored] = await source.move_to_storage([ref])
    assert isinstance(stored, Stored)
    # Leaving the queue is not an arrival: what comes next is the next delivery.
    two, three = kit.deliver(mime()), kit.deliver(mime())
    assert set(await collect(arrivals, [two, three])) == {two, three}
    assert events.connected == [True]
    assert events.reconnects == 0


async def test_lost_connection_reconnects_and_catches_up(
    source: MailSource, kit: SourceKit, events: Recorder
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_connected(source)
    before = kit.deliver(mime())
    assert (await first).item_id == before
    kit.drop_connection()
    # Delivered while the subscription is gone: only the catch-up after it can report it.
    during = kit.deliver(mime())
    assert await collect(arrivals, [during]) == [during]
    await events.wait_for(lambda: events.reconnects >= 1)
    await wait_connected(source)
    after = kit.deliver(mime())
    assert await collect(arrivals, [after]) == [after]
    assert events.connected[:3] == [True, False, True]


async def test_close_stops_arrivals_and_later_calls_fail(
    source: MailSource, kit: SourceKit, events: Recorder
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_connected(source)
    one = kit.deliver(mime())
    assert (await first).item_id == one
    pending = asyncio.ensure_future(next_ref(arrivals))
    await source.close()
    assert not source.connected
    assert events.connected == [True, False]
    # The iterator does not end by itself at close (by contract): its consumer cancels it.
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    with pytest.raises(SourceUnavailable):
        await source.fetch([MailRef(one)])
    with pytest.raises(SourceUnavailable):
        await source.backlog()
    await source.close()  # closing twice is harmless


# --- fetch ---


async def test_fetch_gives_what_the_rules_need(source: MailSource, kit: SourceKit) -> None:
    raws = [
        mime(
            "Offer",
            sender="Sales Person <sales@ours.test>",
            to="Buyer <buyer@theirs.test>, other@theirs.test",
            cc="Boss <boss@theirs.test>",
            message_id="<offer-1@ours.test>",
        ),
        mime("Secret", sensitivity="Private"),
        mime("Conf", sensitivity="Company-Confidential"),
        mime("Mine", sensitivity="Personal"),
    ]
    ids = [kit.deliver(raw) for raw in raws]
    results = await source.fetch(refs(ids))
    assert [r.ref.item_id for r in results if isinstance(r, Fetched)] == ids
    for raw, result in zip(raws, results, strict=True):
        assert isinstance(result, Fetched)
        assert rules_view(result.mail) == rules_view(parse_mime(raw))
        assert result.mail.received_at is not None
    offer = results[0]
    assert isinstance(offer, Fetched)
    assert offer.mail.sender == Address("sales@ours.test", "Sales Person")


async def test_fetch_reports_drafts_and_keys_mail_without_message_id(
    source: MailSource, kit: SourceKit
) -> None:
    raw = mime("Draft", message_id=None)
    draft, sent = kit.save_draft(raw), kit.deliver(mime())
    fetched_draft, fetched_sent = await source.fetch(refs([draft, sent]))
    assert isinstance(fetched_draft, Fetched) and isinstance(fetched_sent, Fetched)
    assert fetched_draft.mail.is_draft is True
    assert fetched_sent.mail.is_draft is False
    assert fetched_draft.mail.message_id is None
    # The content key every path computes alike (`emaillog explain` reads the .eml).
    assert fetched_draft.mail.dedupe_key == parse_mime(raw).dedupe_key
    assert fetched_draft.mail.dedupe_key.startswith("sha256:")


async def test_empty_batches_are_empty_results(source: MailSource) -> None:
    assert await source.fetch([]) == []
    assert await source.move_to_storage([]) == []
    assert await source.dispose([], Disposal.HARD_DELETE) == []


async def test_throttled_call_raises_with_retry_after(
    source: MailSource, kit: SourceKit, events: Recorder
) -> None:
    item_id = kit.deliver(mime())
    kit.throttle_next_fetch(1.5)
    with pytest.raises(Throttled) as raised:
        await source.fetch([MailRef(item_id)])
    assert raised.value.retry_after == 1.5
    assert events.throttled == [1.5]
    [result] = await source.fetch([MailRef(item_id)])  # the source does not retry by itself
    assert isinstance(result, Fetched)


# --- move and dispose ---


async def test_move_to_storage(source: MailSource, kit: SourceKit) -> None:
    ids = [kit.deliver(mime()) for _ in range(3)]
    results = await source.move_to_storage(refs(ids))
    stored = [r for r in results if isinstance(r, Stored)]
    assert len(stored) == 3 and all(s.item_id for s in stored)
    assert {s.item_id for s in stored} == kit.ids(Folder.STORAGE)
    assert not {s.item_id for s in stored} & set(ids)
    assert kit.ids(Folder.QUEUE) == set()


@pytest.mark.parametrize("how", list(Disposal))
async def test_dispose(source: MailSource, kit: SourceKit, how: Disposal) -> None:
    ids = [kit.deliver(mime()) for _ in range(2)]
    assert await source.dispose(refs(ids), how) == [None, None]
    assert kit.ids(Folder.QUEUE) == set()
    assert len(kit.ids(Folder.TRASH)) == (2 if how is Disposal.TRASH else 0)
    assert len(kit.ids(Folder.DISPOSAL)) == (2 if how is Disposal.MOVE else 0)
    assert kit.ids(Folder.STORAGE) == set()


Operation = Callable[[MailSource, list[MailRef]], Awaitable[Sequence[object]]]


def disposing(how: Disposal) -> Operation:
    return lambda source, batch: source.dispose(batch, how)


OPERATIONS: dict[str, Operation] = {
    "fetch": lambda source, batch: source.fetch(batch),
    "move": lambda source, batch: source.move_to_storage(batch),
    **{f"dispose-{how.value}": disposing(how) for how in Disposal},
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_a_vanished_item_is_item_gone_in_place(
    source: MailSource, kit: SourceKit, operation: str
) -> None:
    gone, keep = kit.deliver(mime()), kit.deliver(mime())
    await kit.remove(gone)
    results = await OPERATIONS[operation](source, refs([gone, keep]))
    assert isinstance(results[0], ItemGone)
    assert not isinstance(results[1], Exception)
    assert kit.ids(Folder.QUEUE) == (set() if operation != "fetch" else {keep})


# --- reconciler lookups and backlog ---


async def test_find_by_message_id_in_queue_and_storage(source: MailSource, kit: SourceKit) -> None:
    in_queue = kit.deliver(mime(message_id="<wanted@ours.test>"))
    kit.deliver(mime(message_id="<other@ours.test>"))
    to_store = kit.deliver(mime(message_id="<stored@ours.test>"))
    [stored] = await source.move_to_storage([MailRef(to_store)])
    assert isinstance(stored, Stored)

    found = await source.find_in_queue("<wanted@ours.test>")
    assert [r.item_id for r in found] == [in_queue]
    assert all(r.received_at is not None for r in found)
    assert await source.find_in_queue("<stored@ours.test>") == []
    assert await source.find_in_storage("<stored@ours.test>") == [stored]
    assert await source.find_in_storage("<wanted@ours.test>") == []


async def test_find_by_key_only_matches_mail_without_message_id(
    source: MailSource, kit: SourceKit
) -> None:
    raw = mime(message_id=None)
    wanted, copy = kit.create(raw), kit.create(raw)  # same content, same key
    other = kit.create(mime(message_id=None))
    with_mid = kit.deliver(mime(message_id="<has-one@ours.test>"))
    fetched = await source.fetch(refs([wanted, other, with_mid]))
    key, other_key, mid_key = [f.mail.dedupe_key for f in fetched if isinstance(f, Fetched)]
    assert key != other_key and mid_key == "<has-one@ours.test>"

    found = await source.find_in_queue_by_key(key)
    assert sorted(r.item_id for r in found) == sorted([wanted, copy])
    assert all(r.received_at is not None for r in found)
    assert [r.item_id for r in await source.find_in_queue_by_key(other_key)] == [other]
    assert await source.find_in_queue_by_key(mid_key) == []  # that one: find_in_queue
    assert await source.find_in_storage_by_key(key) == []

    [stored] = await source.move_to_storage([MailRef(wanted)])
    assert isinstance(stored, Stored)
    assert await source.find_in_storage_by_key(key) == [stored]
    assert [r.item_id for r in await source.find_in_queue_by_key(key)] == [copy]


async def test_backlog_counts_the_queue(source: MailSource, kit: SourceKit) -> None:
    assert await source.backlog() == 0
    ids = [kit.deliver(mime()) for _ in range(3)]
    assert await source.backlog() == 3
    await source.move_to_storage([MailRef(ids[0])])
    assert await source.backlog() == 2


# --- stored messages (the UI's Download .eml) ---


async def test_fetch_stored_mime_is_the_delivered_message(
    source: MailSource, kit: SourceKit
) -> None:
    raw = mime("Kept", message_id="<kept@ours.test>", cc="Boss <boss@theirs.test>")
    [stored] = await source.move_to_storage([MailRef(kit.deliver(raw))])
    assert isinstance(stored, Stored) and stored.item_id is not None
    assert await source.fetch_stored_mime(stored.item_id) == raw
    assert await source.fetch_stored_mime(stored.item_id) == raw  # reading leaves it there


async def test_fetch_stored_mime_of_any_other_item_is_item_gone(
    source: MailSource, kit: SourceKit
) -> None:
    moved, waiting = kit.deliver(mime()), kit.deliver(mime())
    [stored] = await source.move_to_storage([MailRef(moved)])
    assert isinstance(stored, Stored)
    # The id the message had in the queue, and a message still in the queue: neither is a
    # storage item, so neither can be read through here (only logged mail can).
    for item_id in (moved, waiting):
        with pytest.raises(ItemGone):
            await source.fetch_stored_mime(item_id)
