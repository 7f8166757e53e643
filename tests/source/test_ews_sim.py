"""EwsSource end to end: exchangelib against exchange_sim (no mocks between them)."""

from __future__ import annotations

import asyncio

import pytest
from _pytest.monkeypatch import MonkeyPatch

from exchange_sim import Simulator
from pipeline.errors import FolderNotFound, ItemGone, SourceUnavailable, Throttled
from pipeline.model import Address, MailRef, Sensitivity
from pipeline.sources import Disposal, Fetched, Stored
from pipeline.sources.ews import EwsSource
from pipeline.web.mime import mime_fetcher
from tests.source.conftest import (
    AUDIT,
    MAILBOX,
    PUBLIC_QUEUE,
    PUBLIC_STORAGE,
    QUEUE,
    STORAGE,
    WAIT_SECONDS,
    Recorder,
    mime,
    next_ref,
    settings_for,
    take,
)


async def wait_streaming(sim: Simulator, source: EwsSource) -> None:
    """Until the source has subscribed, caught up and opened GetStreamingEvents: from then
    on only the stream can report a delivery."""
    async with asyncio.timeout(WAIT_SECONDS):
        while not (source.connected and sim.snapshot().open_streams):
            await asyncio.sleep(0.01)


def queue_ids(sim: Simulator, folder: str = QUEUE) -> set[str]:
    return {item["id"] for item in sim.list_items(MAILBOX, folder)}


async def open_source(sim: Simulator, events: Recorder, **overrides: object) -> EwsSource:
    source = EwsSource(settings_for(sim, **overrides), events)
    await source.open()
    return source


# --- arrivals ---


async def test_catch_up_reports_mail_delivered_before_open(
    sim: Simulator, source: EwsSource
) -> None:
    delivered = [sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(3)]
    refs = await take(source.arrivals(), 3)
    assert sorted(r.item_id for r in refs) == sorted(delivered)
    assert all(r.received_at is not None for r in refs)


async def test_catch_up_of_a_public_folder_queue(sim: Simulator, events: Recorder) -> None:
    delivered = [sim.deliver(MAILBOX, PUBLIC_QUEUE, mime()) for _ in range(3)]
    source = await open_source(
        sim, events, queue_folder=PUBLIC_QUEUE, storage_folder=PUBLIC_STORAGE
    )
    try:
        arrivals = source.arrivals()
        refs = await take(arrivals, 3)
        # Public folders have no SyncFolderItems: FindItem sorted by received time.
        assert [r.item_id for r in refs] == delivered
    finally:
        await source.close()


async def test_public_folder_queue_streams_new_mail(sim: Simulator, events: Recorder) -> None:
    # Streaming on a public folder is opt-in (it polls by default: test_ews_intake.py).
    source = await open_source(
        sim,
        events,
        queue_folder=PUBLIC_QUEUE,
        storage_folder=PUBLIC_STORAGE,
        ews_public_folder_streaming=True,
    )
    try:
        arrivals = source.arrivals()
        first = asyncio.ensure_future(next_ref(arrivals))
        await wait_streaming(sim, source)
        item_id = sim.deliver(MAILBOX, PUBLIC_QUEUE, mime())
        assert (await first).item_id == item_id
    finally:
        await source.close()


async def test_streaming_reports_new_mail_once(
    sim: Simulator, source: EwsSource, events: Recorder
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_streaming(sim, source)
    one = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await first).item_id == one
    # Delivery fires CreatedEvent and NewMailEvent for the same item; the second must not
    # come out: the next ref is the next message.
    two = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await next_ref(arrivals)).item_id == two
    assert events.connected == [True]
    assert events.reconnects == 0


async def test_mail_outside_the_queue_is_not_reported(sim: Simulator, source: EwsSource) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_streaming(sim, source)
    sim.deliver(MAILBOX, "Inbox", mime())
    sim.deliver(MAILBOX, STORAGE, mime())
    wanted = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await first).item_id == wanted


async def test_items_moved_out_of_the_queue_do_not_come_back(
    sim: Simulator, source: EwsSource
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_streaming(sim, source)
    one = sim.deliver(MAILBOX, QUEUE, mime())
    ref = await first
    assert ref.item_id == one
    [stored] = await source.move_to_storage([ref])
    assert isinstance(stored, Stored)
    # The MovedEvent names the storage folder as parent: filtered out. Next is the next mail.
    two = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await next_ref(arrivals)).item_id == two


async def test_stream_renewed_when_the_server_closes_it(events: Recorder) -> None:
    # One EWS "minute" of 0.2 s: ConnectionTimeout=1 ends every stream with Closed quickly.
    async with Simulator(
        folders=[QUEUE, STORAGE], mailboxes=[MAILBOX], minute_seconds=0.2, keepalive_seconds=0.05
    ) as sim:
        source = await open_source(sim, events)
        try:
            arrivals = source.arrivals()
            first = asyncio.ensure_future(next_ref(arrivals))
            await wait_streaming(sim, source)
            streams_before = sim.snapshot().requests_served
            # Wait through several Closed -> GetStreamingEvents renewals.
            async with asyncio.timeout(WAIT_SECONDS):
                while sim.snapshot().requests_served < streams_before + 3:
                    await asyncio.sleep(0.05)
            item_id = sim.deliver(MAILBOX, QUEUE, mime())
            assert (await first).item_id == item_id
            # Renewing reuses the subscription: no reconnect, one subscription.
            assert events.reconnects == 0
            assert sim.snapshot().subscriptions == 1
        finally:
            await source.close()


async def test_safety_resync_finds_mail_whose_event_was_lost(events: Recorder) -> None:
    async with Simulator(
        folders=[QUEUE, STORAGE], mailboxes=[MAILBOX], minute_seconds=0.2, keepalive_seconds=0.05
    ) as sim:
        source = await open_source(sim, events, catch_up_interval_seconds=0.01)
        try:
            arrivals = source.arrivals()
            first = asyncio.ensure_future(next_ref(arrivals))
            await wait_streaming(sim, source)
            item_id = sim.deliver(MAILBOX, QUEUE, mime())
            # The server loses the events silently (the stream cannot run before we yield).
            sim.lose_events()
            assert (await first).item_id == item_id
            assert events.reconnects == 0
        finally:
            await source.close()


async def test_stream_dropped_mid_body_resubscribes_and_catches_up(
    sim: Simulator, source: EwsSource, events: Recorder
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_streaming(sim, source)
    before = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await first).item_id == before
    assert sim.drop_streams() == 1
    # Delivered while no stream is open: only the catch-up after resubscribing can see it.
    during = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await next_ref(arrivals)).item_id == during
    await events.wait_for(lambda: events.reconnects >= 1)
    await wait_streaming(sim, source)
    after = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await next_ref(arrivals)).item_id == after
    assert events.connected[:3] == [True, False, True]
    # The dropped subscription was unsubscribed, not left to count against the limit.
    assert sim.snapshot().subscriptions == 1


@pytest.mark.parametrize("code", ["ErrorSubscriptionNotFound", "ErrorInvalidSubscription"])
async def test_expired_subscription_resubscribes_and_catches_up(
    sim: Simulator, source: EwsSource, events: Recorder, code: str
) -> None:
    arrivals = source.arrivals()
    first = asyncio.ensure_future(next_ref(arrivals))
    await wait_streaming(sim, source)
    assert len(sim.expire_subscriptions(code)) == 1
    during = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await first).item_id == during
    await events.wait_for(lambda: events.reconnects == 1)
    await wait_streaming(sim, source)
    after = sim.deliver(MAILBOX, QUEUE, mime())
    assert (await next_ref(arrivals)).item_id == after


async def test_throttled_subscribe_backs_off_as_told(
    sim: Simulator, source: EwsSource, events: Recorder
) -> None:
    sim.deliver(MAILBOX, QUEUE, mime())
    sim.set_busy(1, back_off_ms=300)
    arrivals = source.arrivals()
    ref = await next_ref(arrivals)
    assert ref.item_id in queue_ids(sim)
    assert events.throttled == [0.3]


async def test_close_stops_the_stream_thread_and_unsubscribes(
    sim: Simulator, events: Recorder
) -> None:
    # stream_timeout_minutes=30 (and EWS minutes of 60 s): only a real interrupt ends the
    # blocked read within close()'s bounded wait.
    source = await open_source(sim, events, stream_timeout_minutes=30)
    arrivals = source.arrivals()
    pending = asyncio.ensure_future(next_ref(arrivals))
    await wait_streaming(sim, source)
    thread = source._thread
    assert thread is not None and thread.is_alive()
    await source.close()
    assert not thread.is_alive()
    assert not source.connected
    assert events.connected == [True, False]
    assert sim.snapshot().subscriptions == 0
    pending.cancel()


async def test_a_backlog_of_several_sync_pages_comes_out_once(
    sim: Simulator, source: EwsSource
) -> None:
    # More items than one SyncFolderItems page (fetch_batch_messages=50): every item comes
    # out exactly once. (That a full arrivals queue blocks the thread: test_ews_units.py.)
    delivered = {sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(120)}
    refs = await take(source.arrivals(), 120)
    assert {r.item_id for r in refs} == delivered
    assert len(refs) == len({r.item_id for r in refs})


# --- fetch ---


async def test_fetch_returns_the_properties_the_rules_need(
    sim: Simulator, source: EwsSource
) -> None:
    ids = [
        sim.deliver(
            MAILBOX,
            QUEUE,
            mime(
                "Offer",
                sender="Sales Person <sales@ours.test>",
                to="Buyer <buyer@theirs.test>, other@theirs.test",
                cc="Boss <boss@theirs.test>",
                message_id="<offer-1@ours.test>",
            ),
        ),
        sim.deliver(MAILBOX, QUEUE, mime("Secret", sensitivity="Private")),
        sim.deliver(MAILBOX, QUEUE, mime("Conf", sensitivity="Company-Confidential")),
        sim.deliver(MAILBOX, QUEUE, mime("Mine", sensitivity="Personal")),
    ]
    results = await source.fetch([MailRef(i) for i in ids])
    assert all(isinstance(r, Fetched) for r in results)
    fetched = [r for r in results if isinstance(r, Fetched)]
    assert [f.ref.item_id for f in fetched] == ids
    offer = fetched[0].mail
    assert offer.message_id == "<offer-1@ours.test>"
    assert offer.subject.startswith("Offer")
    assert offer.sender == Address("sales@ours.test", "Sales Person")
    assert [a.email for a in offer.to] == ["buyer@theirs.test", "other@theirs.test"]
    assert [a.email for a in offer.cc] == ["boss@theirs.test"]
    assert offer.sensitivity is Sensitivity.NORMAL
    assert offer.is_draft is False
    assert offer.sent_at is not None and offer.sent_at.year == 2024
    assert offer.received_at is not None
    assert [f.mail.sensitivity for f in fetched[1:]] == [
        Sensitivity.PRIVATE,
        Sensitivity.CONFIDENTIAL,
        Sensitivity.PERSONAL,
    ]


async def test_fetch_reports_drafts(sim: Simulator, source: EwsSource) -> None:
    # CreateItem (SaveOnly) through exchangelib saves a draft and fires CreatedEvent only.
    from exchangelib import Message

    account = source._account
    queue = source._queue

    def save_draft() -> str:
        message = Message(account=account, folder=queue, mime_content=mime("Draft"))
        message.save()
        return str(message.id)

    draft_id = await asyncio.to_thread(save_draft)
    [result] = await source.fetch([MailRef(draft_id)])
    assert isinstance(result, Fetched)
    assert result.mail.is_draft is True


async def test_fetch_reports_vanished_items_inline_in_input_order(
    sim: Simulator, source: EwsSource
) -> None:
    keep = sim.deliver(MAILBOX, QUEUE, mime())
    gone = sim.deliver(MAILBOX, QUEUE, mime())
    assert await source.dispose([MailRef(gone)], Disposal.HARD_DELETE) == [None]
    results = await source.fetch([MailRef(gone), MailRef(keep)])
    assert isinstance(results[0], ItemGone)
    assert isinstance(results[1], Fetched) and results[1].ref.item_id == keep


async def test_empty_batches_make_no_request(sim: Simulator, source: EwsSource) -> None:
    served = sim.snapshot().requests_served
    assert await source.fetch([]) == []
    assert await source.move_to_storage([]) == []
    assert await source.dispose([], Disposal.HARD_DELETE) == []
    assert sim.snapshot().requests_served == served


# --- move and dispose ---


async def test_move_to_storage_returns_new_ids(sim: Simulator, source: EwsSource) -> None:
    ids = [sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(3)]
    results = await source.move_to_storage([MailRef(i) for i in ids])
    assert all(isinstance(r, Stored) and r.item_id for r in results)
    new_ids = [r.item_id for r in results if isinstance(r, Stored)]
    assert set(new_ids) == queue_ids(sim, STORAGE)
    assert not set(new_ids) & set(ids)
    assert queue_ids(sim) == set()


async def test_move_reports_per_item_failures_in_input_order(
    sim: Simulator, source: EwsSource
) -> None:
    ids = [sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(3)]
    sim.fail_items([ids[1]], ops=("MoveItem",))
    results = await source.move_to_storage([MailRef(i) for i in ids])
    assert isinstance(results[0], Stored) and results[0].item_id
    assert isinstance(results[1], ItemGone)
    assert isinstance(results[2], Stored) and results[2].item_id
    assert queue_ids(sim) == {ids[1]}


async def test_move_into_a_public_folder_has_no_new_id(sim: Simulator, events: Recorder) -> None:
    source = await open_source(sim, events, storage_folder=PUBLIC_STORAGE)
    try:
        ids = [sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(3)]
        sim.fail_items([ids[1]], ops=("MoveItem",))
        results = await source.move_to_storage([MailRef(i) for i in ids])
        # MoveItem returns no id for these (and exchangelib alone would drop them from the
        # list): each result still belongs to its input, and (issue 11) the stored copy is
        # found again by its Message-ID, with its link.
        stored = {
            item["message_id"]: item["id"] for item in sim.list_items(MAILBOX, PUBLIC_STORAGE)
        }
        assert len(stored) == 2
        assert isinstance(results[1], ItemGone)
        for result in (results[0], results[2]):
            assert isinstance(result, Stored)
            assert result.item_id in stored.values()
            assert result.web_link and result.item_id in result.web_link
        assert results[0] != results[2]
    finally:
        await source.close()


async def test_stored_mime_from_a_public_folder_storage(sim: Simulator, events: Recorder) -> None:
    source = await open_source(sim, events, storage_folder=PUBLIC_STORAGE)
    try:
        raw = mime(message_id="<public-kept@ours.test>")
        [stored] = await source.move_to_storage([MailRef(sim.deliver(MAILBOX, QUEUE, raw))])
        assert isinstance(stored, Stored) and stored.item_id is not None
        assert await source.fetch_stored_mime(stored.item_id) == raw
        # A journal row without a storage item id (the lookup after the move failed): the
        # UI's fetcher finds the copy by its Message-ID.
        assert await mime_fetcher(source)(None, "<public-kept@ours.test>") == raw
    finally:
        await source.close()


async def test_dispose_hard_delete(sim: Simulator, source: EwsSource) -> None:
    ids = [sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(2)]
    assert await source.dispose([MailRef(i) for i in ids], Disposal.HARD_DELETE) == [None, None]
    assert queue_ids(sim) == set()
    assert sim.list_items(MAILBOX, "Deleted Items") == []


async def test_dispose_to_trash(sim: Simulator, source: EwsSource) -> None:
    ids = [sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(2)]
    assert await source.dispose([MailRef(i) for i in ids], Disposal.TRASH) == [None, None]
    assert queue_ids(sim) == set()
    assert len(sim.list_items(MAILBOX, "Deleted Items")) == 2


async def test_dispose_by_moving_to_the_configured_folder(sim: Simulator, events: Recorder) -> None:
    source = await open_source(sim, events, disposal=f"move:{AUDIT}")
    try:
        ids = [sim.deliver(MAILBOX, QUEUE, mime()) for _ in range(2)]
        gone = sim.deliver(MAILBOX, QUEUE, mime())
        sim.fail_items([gone], ops=("MoveItem",))
        refs = [MailRef(i) for i in [*ids, gone]]
        results = await source.dispose(refs, Disposal.MOVE)
        assert results[:2] == [None, None]
        assert isinstance(results[2], ItemGone)
        assert len(sim.list_items(MAILBOX, AUDIT)) == 2
    finally:
        await source.close()


async def test_dispose_of_a_vanished_item_is_item_gone(sim: Simulator, source: EwsSource) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, mime())
    assert await source.dispose([MailRef(item_id)], Disposal.HARD_DELETE) == [None]
    [again] = await source.dispose([MailRef(item_id)], Disposal.HARD_DELETE)
    assert isinstance(again, ItemGone)


# --- reconciler lookups, backlog, throttling, folders ---


async def test_find_by_message_id_in_queue_and_storage(sim: Simulator, source: EwsSource) -> None:
    in_queue = sim.deliver(MAILBOX, QUEUE, mime(message_id="<wanted@ours.test>"))
    sim.deliver(MAILBOX, QUEUE, mime(message_id="<other@ours.test>"))
    to_store = sim.deliver(MAILBOX, QUEUE, mime(message_id="<stored@ours.test>"))
    [stored] = await source.move_to_storage([MailRef(to_store)])
    assert isinstance(stored, Stored)

    found = await source.find_in_queue("<wanted@ours.test>")
    assert [r.item_id for r in found] == [in_queue]
    assert await source.find_in_queue("<stored@ours.test>") == []
    assert await source.find_in_storage("<stored@ours.test>") == [stored]
    assert await source.find_in_storage("<wanted@ours.test>") == []


def create(sim: Simulator, folder: str, raw: bytes) -> str:
    """CreateItem, as a client saves a sent message: a missing Message-ID stays missing."""
    return sim.create_item(MAILBOX, folder, raw, is_draft=False, is_read=True)


async def keys_of(source: EwsSource, item_ids: list[str]) -> list[str]:
    """The dedupe keys the pipeline computes for these queue items (through `fetch`)."""
    fetched = await source.fetch([MailRef(i) for i in item_ids])
    return [f.mail.dedupe_key for f in fetched if isinstance(f, Fetched)]


async def test_find_by_key_in_the_queue_matches_only_messages_without_message_id(
    sim: Simulator, source: EwsSource
) -> None:
    raw = mime(message_id=None)
    wanted, copy = create(sim, QUEUE, raw), create(sim, QUEUE, raw)  # same content, same key
    other = create(sim, QUEUE, mime(message_id=None))
    with_mid = sim.deliver(MAILBOX, QUEUE, mime(message_id="<has-one@ours.test>"))
    key, other_key, mid_key = await keys_of(source, [wanted, other, with_mid])
    assert key.startswith("sha256:") and other_key.startswith("sha256:") and key != other_key
    assert mid_key == "<has-one@ours.test>"

    found = await source.find_in_queue_by_key(key)
    assert sorted(r.item_id for r in found) == sorted([wanted, copy])
    assert all(r.changekey and r.received_at for r in found)
    assert [r.item_id for r in await source.find_in_queue_by_key(other_key)] == [other]
    assert await source.find_in_queue_by_key(mid_key) == []  # that one: find_in_queue
    assert await source.find_in_storage_by_key(key) == []


async def test_find_by_key_in_storage_after_the_move(sim: Simulator, source: EwsSource) -> None:
    # More items without a Message-ID than one FindItem page (100) or GetItem chunk holds.
    for _ in range(120):
        create(sim, STORAGE, mime(message_id=None))
    queued = create(sim, QUEUE, mime(message_id=None))
    [key] = await keys_of(source, [queued])

    [stored] = await source.move_to_storage([MailRef(queued)])
    assert isinstance(stored, Stored) and stored.item_id is not None
    assert await source.find_in_storage_by_key(key) == [stored]
    assert await source.find_in_queue_by_key(key) == []


async def test_find_by_key_in_public_folder_storage(sim: Simulator, events: Recorder) -> None:
    source = await open_source(
        sim, events, queue_folder=PUBLIC_QUEUE, storage_folder=PUBLIC_STORAGE
    )
    try:
        queued = create(sim, PUBLIC_QUEUE, mime(message_id=None))
        [key] = await keys_of(source, [queued])
        assert [r.item_id for r in await source.find_in_queue_by_key(key)] == [queued]
        # A move into a public folder returns no id; the lookup finds the stored item's.
        assert await source.move_to_storage([MailRef(queued)]) == [Stored(item_id=None)]
        [stored] = await source.find_in_storage_by_key(key)
        assert stored.item_id == sim.list_items(MAILBOX, PUBLIC_STORAGE)[0]["id"]
    finally:
        await source.close()


async def test_backlog_counts_the_queue(sim: Simulator, source: EwsSource) -> None:
    assert await source.backlog() == 0
    for _ in range(4):
        sim.deliver(MAILBOX, QUEUE, mime())
    assert await source.backlog() == 4


async def test_server_busy_raises_throttled_with_retry_after(
    sim: Simulator, source: EwsSource, events: Recorder
) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, mime())
    sim.set_busy(1, back_off_ms=1500)
    with pytest.raises(Throttled) as raised:
        await source.fetch([MailRef(item_id)])
    assert raised.value.retry_after == 1.5
    assert events.throttled == [1.5]
    # The next call goes through: we do the retrying, exchangelib does not sleep for us.
    [result] = await source.fetch([MailRef(item_id)])
    assert isinstance(result, Fetched)


async def test_missing_folder_is_folder_not_found(sim: Simulator, events: Recorder) -> None:
    source = EwsSource(settings_for(sim, queue_folder="Email Logging/Nope"), events)
    with pytest.raises(FolderNotFound):
        await source.open()
    await source.close()


async def test_mailbox_is_the_configured_address_for_public_queues_too(
    sim: Simulator, events: Recorder
) -> None:
    source = EwsSource(settings_for(sim, queue_folder=PUBLIC_QUEUE), events)
    assert source.mailbox == MAILBOX


# --- authentication ---


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
async def test_password_auth(auth: str, events: Recorder) -> None:
    async with Simulator(
        folders=[QUEUE, STORAGE], mailboxes=[MAILBOX], auth_mode=auth, users={"svc": "s3cret"}
    ) as sim:
        item_id = sim.deliver(MAILBOX, QUEUE, mime())
        source = await open_source(
            sim, events, ews_auth=auth, ews_username="svc", ews_password="s3cret"
        )
        try:
            [result] = await source.fetch([MailRef(item_id)])
            assert isinstance(result, Fetched)
        finally:
            await source.close()


async def test_oauth2_client_credentials(events: Recorder, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the simulator speaks plain http
    async with Simulator(
        folders=[QUEUE, STORAGE], mailboxes=[MAILBOX], auth_mode="oauth2", users={"app": "key"}
    ) as sim:
        item_id = sim.deliver(MAILBOX, QUEUE, mime())
        source = await open_source(
            sim,
            events,
            ews_auth="oauth2",
            ews_client_id="app",
            ews_client_secret="key",
            ews_tenant_id="tenant",
            ews_token_url=f"{sim.base_url}/tenant/oauth2/v2.0/token",
        )
        try:
            arrivals = source.arrivals()
            assert (await next_ref(arrivals)).item_id == item_id
            [result] = await source.fetch([MailRef(item_id)])
            assert isinstance(result, Fetched)
        finally:
            await source.close()


async def test_wrong_password_is_source_unavailable(events: Recorder) -> None:
    async with Simulator(
        folders=[QUEUE, STORAGE], mailboxes=[MAILBOX], auth_mode="basic", users={"svc": "right"}
    ) as sim:
        source = EwsSource(
            settings_for(sim, ews_auth="basic", ews_username="svc", ews_password="wrong"), events
        )
        with pytest.raises(SourceUnavailable):
            await source.open()
        await source.close()
