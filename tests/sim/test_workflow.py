"""The queue workflow, driven only through unmodified exchangelib 5.6: resolve folders with
`//`, subscribe, receive events, fetch, sync, filter, copy, move, delete, create,
unsubscribe. Every response is schema-checked by the `sim` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from exchangelib import Account, ExtendedProperty, Message
from exchangelib.errors import (
    ErrorFolderNotFound,
    ErrorInvalidIdMalformed,
    ErrorInvalidOperation,
    ErrorInvalidSubscription,
    ErrorItemNotFound,
    ErrorSubscriptionNotFound,
)
from exchangelib.folders import Folder
from exchangelib.items import HARD_DELETE, MOVE_TO_DELETED_ITEMS, SOFT_DELETE
from exchangelib.properties import CopiedEvent, CreatedEvent, MovedEvent, NewMailEvent

from exchange_sim import SimulatorThread
from pipeline.errors import ItemGone
from pipeline.sources.ews_links import stored_mime

from .conftest import MAILBOX, QUEUE, STORAGE, Recorder, message

FIELDS = [
    "subject",
    "sensitivity",
    "message_id",
    "sender",
    "author",
    "to_recipients",
    "cc_recipients",
    "datetime_received",
    "datetime_sent",
    "size",
    "is_draft",
    "mime_content",
]
EVENTS = ["NewMailEvent", "CreatedEvent", "MovedEvent"]


def queue_of(account: Account) -> Folder:
    return account.root // "Top of Information Store" // "Email Logging" // "Queue"


def storage_of(account: Account) -> Folder:
    return account.msg_folder_root // "Email Logging" // "Storage"


def drain(folder: Folder, sub_id: str) -> list[object]:
    """Every event of one streaming connection (ends at ConnectionStatus Closed)."""
    return [
        ev for n in folder.get_streaming_events(sub_id, connection_timeout=1) for ev in n.events
    ]


def test_folders_resolve_with_floordiv(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    assert queue.id == sim.folder_id(MAILBOX, QUEUE)
    assert (account.msg_folder_root // "Email Logging" // "Queue").id == queue.id
    assert queue.name == "Queue"
    public_queue = account.public_folders_root // "Queue"
    assert public_queue.id == sim.folder_id(MAILBOX, "public:/Queue")
    with pytest.raises(ErrorFolderNotFound):
        _ = account.msg_folder_root // "No Such Folder"


def test_inbox_and_trash_are_distinguished_folders(account: Account) -> None:
    assert account.inbox.name == "Inbox"
    assert account.trash.name == "Deleted Items"


def test_streaming_delivery_fires_created_and_newmail(
    sim: SimulatorThread, account: Account, recorder: Recorder
) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    sim.deliver(MAILBOX, STORAGE, message(2))  # another folder: not reported
    events = drain(queue, sub_id)
    assert [type(e) for e in events] == [CreatedEvent, NewMailEvent]
    assert {e.item_id.id for e in events} == {item_id}
    assert all(e.parent_folder_id.id == queue.id for e in events)
    assert all(e.watermark is None for e in events)  # streaming events carry no watermark
    assert account.affinity_cookie  # set by Subscribe, echoed on later calls
    envelopes = [body for op, body in recorder.responses if op == "GetStreamingEvents"]
    assert b"<m:ConnectionStatus>OK</m:ConnectionStatus>" in envelopes[0]
    assert b"<m:ConnectionStatus>Closed</m:ConnectionStatus>" in envelopes[-1]
    keep_alives = [b for b in envelopes[1:-1] if b"<m:ConnectionStatus>OK<" in b]
    assert keep_alives  # the connection lasts four keep-alive intervals
    queue.unsubscribe(sub_id)


def test_streaming_caps_notifications_at_50_events(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=["NewMailEvent"])
    delivered = {sim.deliver(MAILBOX, QUEUE, message(n)) for n in range(120)}
    notifications = list(queue.get_streaming_events(sub_id, connection_timeout=1))
    sizes = [len(n.events) for n in notifications if n.events]
    assert max(sizes) == 50
    assert {e.item_id.id for n in notifications for e in n.events} == delivered


def test_all_folders_subscription_sees_every_folder(sim: SimulatorThread, account: Account) -> None:
    sub_id = account.subscribe_to_streaming(event_types=["NewMailEvent"])
    ids = {sim.deliver(MAILBOX, QUEUE, message(1)), sim.deliver(MAILBOX, "Inbox", message(2))}
    sim.deliver("other@example.com", QUEUE, message(3))  # another mailbox
    events = drain(queue_of(account), sub_id)
    assert {e.item_id.id for e in events} == ids


def test_fetch_returns_the_properties_exchange_parses(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    raw = message(
        7,
        Cc='"Carl" <carl@contoso.com>, dora@contoso.com',
        Sender="Assistant <assistant@contoso.com>",
        Sensitivity="Company-Confidential",
        Subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
    )
    item_id = sim.deliver(MAILBOX, QUEUE, raw)
    [item] = account.fetch(ids=[(item_id, None)], folder=queue, only_fields=FIELDS)
    assert item.subject == "Grüße"
    assert item.sensitivity == "Confidential"
    assert item.message_id == "<msg-7@contoso.com>"
    assert item.author.email_address == "alice@contoso.com"
    assert item.author.name == "Alice Contact"
    assert item.sender.email_address == "assistant@contoso.com"
    assert [r.email_address for r in item.to_recipients] == ["sam@example.com"]
    assert [r.email_address for r in item.cc_recipients] == ["carl@contoso.com", "dora@contoso.com"]
    assert item.size == len(raw)
    assert item.mime_content == raw
    assert item.is_draft is False
    assert item.datetime_sent.isoformat() == "2024-01-01T10:00:00+00:00"
    assert item.datetime_received is not None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Personal", "Personal"),
        ("private", "Private"),
        ("Company-Confidential", "Confidential"),
        ("Normal", "Normal"),
        ("", "Normal"),
    ],
)
def test_sensitivity_header_maps_like_exchange(
    sim: SimulatorThread, account: Account, header: str, expected: str
) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1, Sensitivity=header))
    [item] = account.fetch(ids=[(item_id, None)], only_fields=["sensitivity"])
    assert item.sensitivity == expected


def test_fetch_keeps_order_and_reports_errors_per_item(
    sim: SimulatorThread, account: Account
) -> None:
    first = sim.deliver(MAILBOX, QUEUE, message(1))
    second = sim.deliver(MAILBOX, QUEUE, message(2))
    account.bulk_delete(ids=[(first, None)], delete_type=HARD_DELETE)
    results = list(
        account.fetch(ids=[(second, None), (first, None), ("not-an-id", None)], only_fields=FIELDS)
    )
    assert results[0].id == second
    assert isinstance(results[1], ErrorItemNotFound)
    assert isinstance(results[2], ErrorInvalidIdMalformed)


def test_sync_items_reports_creates_and_deletes(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    first = sim.deliver(MAILBOX, QUEUE, message(1))
    second = sim.deliver(MAILBOX, QUEUE, message(2))
    third = sim.deliver(MAILBOX, QUEUE, message(3))
    changes = list(queue.sync_items(only_fields=["datetime_received"], max_changes_returned=2))
    assert [(kind, item.id) for kind, item in changes] == [
        ("create", first),
        ("create", second),
        ("create", third),
    ]
    state = queue.item_sync_state
    account.bulk_move(ids=[(first, None)], to_folder=storage_of(account))
    fourth = sim.deliver(MAILBOX, QUEUE, message(4))
    changes = list(queue.sync_items(sync_state=state, only_fields=["datetime_received"]))
    assert [(kind, getattr(item, "id", None)) for kind, item in changes] == [
        ("delete", first),
        ("create", fourth),
    ]
    assert list(queue.sync_items(sync_state=queue.item_sync_state)) == []


def test_sync_items_is_refused_on_public_folders(account: Account) -> None:
    public_queue = account.public_folders_root // "Queue"
    with pytest.raises(ErrorInvalidOperation):
        list(public_queue.sync_items())


def test_filter_by_received_time_with_order_and_paging(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    ids = [sim.deliver(MAILBOX, QUEUE, message(n)) for n in range(130)]
    found = list(
        queue.all().order_by("datetime_received").only("id", "message_id", "datetime_received")
    )
    assert [i.id for i in found] == ids  # 130 items: two FindItem pages of 100
    assert found[5].message_id == "<msg-5@contoso.com>"
    since = found[0].datetime_received
    assert queue.filter(datetime_received__gte=since).count() == 130
    assert queue.filter(datetime_received__lt=since).count() == 0
    newest_first = list(queue.all().order_by("-datetime_received").only("id"))
    assert [i.id for i in newest_first] == list(reversed(ids))
    assert [i.id for i in queue.filter(message_id="<msg-42@contoso.com>")] == [ids[42]]


def test_filter_on_message_id_exists(
    sim: SimulatorThread, account: Account, recorder: Recorder
) -> None:
    queue = queue_of(account)
    with_id = sim.deliver(MAILBOX, QUEUE, message(1))
    # CreateItem keeps a missing Message-ID missing (transport delivery would add one).
    without = [sim.save_draft(MAILBOX, QUEUE, message(n, Message_ID="")) for n in (2, 3)]
    missing = queue.filter(message_id__exists=False)  # <t:Not><t:Exists>
    assert sorted(i.id for i in missing.only("id")) == sorted(without)
    assert [i.id for i in queue.filter(message_id__exists=True).only("id")] == [with_id]
    # With properties FindItem cannot return, exchangelib follows up with GetItem.
    before = len(recorder.responses)
    [fetched, _] = missing.only("id", "subject", "to_recipients", "message_id")
    assert fetched.message_id is None and fetched.to_recipients
    assert [op for op, _ in recorder.responses[before:]] == ["FindItem", "GetItem"]


def test_public_folder_catch_up_with_find_item(sim: SimulatorThread, account: Account) -> None:
    public_queue = account.public_folders_root // "Queue"
    ids = [sim.deliver(MAILBOX, "public:/Queue", message(n)) for n in range(3)]
    found = public_queue.all().order_by("datetime_received").only("id", "message_id")
    assert [i.id for i in found] == ids


def test_copy_creates_a_new_item(sim: SimulatorThread, account: Account) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    storage = storage_of(account)
    [(copy_id, _changekey)] = account.bulk_copy(ids=[(item_id, None)], to_folder=storage)
    assert copy_id != item_id
    assert [i["id"] for i in sim.list_items(MAILBOX, STORAGE)] == [copy_id]
    assert [i["id"] for i in sim.list_items(MAILBOX, QUEUE)] == [item_id]


def test_move_gives_new_ids_and_moved_events_on_both_folders(
    sim: SimulatorThread, account: Account
) -> None:
    queue, storage = queue_of(account), storage_of(account)
    ids = [sim.deliver(MAILBOX, QUEUE, message(n)) for n in range(3)]
    sub_queue = queue.subscribe_to_streaming(event_types=EVENTS)
    sub_storage = storage.subscribe_to_streaming(event_types=EVENTS)
    moved = account.bulk_move(ids=[(i, None) for i in ids], to_folder=storage)
    new_ids = [new_id for new_id, _ in moved]
    assert len(set(new_ids)) == 3 and not set(new_ids) & set(ids)
    assert [i["id"] for i in sim.list_items(MAILBOX, STORAGE)] == new_ids
    for sub_id in (sub_queue, sub_storage):
        events = [
            ev
            for n in queue.get_streaming_events([sub_id], connection_timeout=1)
            for ev in n.events
        ]
        assert [type(e) for e in events] == [MovedEvent] * 3
        assert [(e.old_item_id.id, e.item_id.id) for e in events] == list(
            zip(ids, new_ids, strict=True)
        )
        assert {(e.old_parent_folder_id.id, e.parent_folder_id.id) for e in events} == {
            (queue.id, storage.id)
        }


def test_move_into_public_folder_returns_no_id(sim: SimulatorThread, account: Account) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    public_storage = account.public_folders_root // "Storage"
    assert account.bulk_move(ids=[(item_id, None)], to_folder=public_storage) == []
    assert len(sim.list_items(MAILBOX, "public:/Storage")) == 1
    assert sim.list_items(MAILBOX, QUEUE) == []


@pytest.mark.parametrize("delete_type", [HARD_DELETE, SOFT_DELETE, MOVE_TO_DELETED_ITEMS])
def test_delete_types(sim: SimulatorThread, account: Account, delete_type: str) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    assert account.bulk_delete(ids=[(item_id, None)], delete_type=delete_type) == [True]
    assert sim.list_items(MAILBOX, QUEUE) == []
    in_trash = [i["message_id"] for i in sim.list_items(MAILBOX, "Deleted Items")]
    expected = ["<msg-1@contoso.com>"] if delete_type == MOVE_TO_DELETED_ITEMS else []
    assert in_trash == expected
    [again] = account.bulk_delete(ids=[(item_id, None)], delete_type=delete_type)
    assert isinstance(again, ErrorItemNotFound)


class MessageFlags(ExtendedProperty):
    property_tag = 0x0E07
    property_type = "Integer"


@pytest.fixture
def message_flags() -> Iterator[None]:
    Message.register("message_flags", MessageFlags)
    yield
    Message.deregister("message_flags")


def test_create_item_saves_a_draft_and_fires_created_only(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)
    saved = Message(account=account, folder=queue, mime_content=message(5))
    saved.save()
    events = drain(queue, sub_id)
    assert [(type(e), e.item_id.id) for e in events] == [(CreatedEvent, saved.id)]
    [item] = account.fetch(ids=[saved], only_fields=FIELDS)
    assert item.is_draft is True
    assert item.subject == "Quote 5"
    assert item.mime_content == message(5)


def test_create_item_with_sent_flags_is_not_a_draft(
    sim: SimulatorThread, account: Account, message_flags: None
) -> None:
    queue = queue_of(account)
    saved = Message(account=account, folder=queue, mime_content=message(6), message_flags=1)
    saved.save()
    [item] = account.fetch(ids=[saved], only_fields=["is_draft", "subject"])
    assert item.is_draft is False


def test_copied_events_reach_the_target_folder(sim: SimulatorThread, account: Account) -> None:
    storage = storage_of(account)
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    sub_id = storage.subscribe_to_streaming(event_types=["CopiedEvent"])
    account.bulk_copy(ids=[(item_id, None)], to_folder=storage)
    events = drain(storage, sub_id)
    assert [(type(e), e.old_item_id.id) for e in events] == [(CopiedEvent, item_id)]


def test_unsubscribe_ends_the_subscription(account: Account) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)
    queue.unsubscribe(sub_id)
    with pytest.raises(ErrorSubscriptionNotFound):
        queue.unsubscribe(sub_id)
    with pytest.raises(ErrorSubscriptionNotFound):
        drain(queue, sub_id)


def test_unknown_streaming_subscription_is_invalid(account: Account) -> None:
    with pytest.raises(ErrorInvalidSubscription):
        drain(queue_of(account), "c2ltLWJvZ3VzLXN1YnNjcmlwdGlvbg==")


def test_pull_subscription_events_carry_watermarks(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sub_id, watermark = queue.subscribe_to_pull(event_types=["NewMailEvent"])
    ids = [sim.deliver(MAILBOX, QUEUE, message(n)) for n in range(60)]
    notifications = list(queue.get_events(sub_id, watermark))
    events = [e for n in notifications for e in n.events]
    assert [e.item_id.id for e in events] == ids
    assert len(notifications) == 2  # 50 + 10, MoreEvents in between
    assert all(e.watermark for e in events)
    [idle] = list(queue.get_events(sub_id, events[-1].watermark))
    assert [type(e).__name__ for e in idle.events] == ["StatusEvent"]
    queue.unsubscribe(sub_id)


def test_create_folder_then_resolve_it(sim: SimulatorThread, account: Account) -> None:
    parent = account.msg_folder_root // "Email Logging"
    created = Folder(parent=parent, name="Archive")
    created.save()
    assert (account.msg_folder_root // "Email Logging" // "Archive").id == created.id
    assert sim.folder_id(MAILBOX, "Email Logging/Archive") == created.id


def test_get_item_mime_content_of_a_stored_item(sim: SimulatorThread, account: Account) -> None:
    # The request EwsSource.fetch_stored_mime sends (the UI's Download .eml); the `sim`
    # fixture validates every response against the EWS schema at teardown.
    raw, waiting = message(1), sim.deliver(MAILBOX, QUEUE, message(2))
    storage = storage_of(account)
    [(stored_id, _)] = account.bulk_move(
        ids=[(sim.deliver(MAILBOX, QUEUE, raw), None)], to_folder=storage
    )
    assert stored_mime(account, storage, stored_id) == raw
    assert isinstance(stored_mime(account, storage, waiting), ItemGone)  # a queue item
    assert isinstance(stored_mime(account, storage, "AAMkAD-no-such-item"), ItemGone)
