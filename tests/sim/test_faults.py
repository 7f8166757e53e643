"""Each injected fault surfaces in exchangelib as the exception Exchange would cause."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from exchangelib import Account
from exchangelib.errors import (
    ErrorExceededConnectionCount,
    ErrorInvalidSubscription,
    ErrorItemNotFound,
    ErrorMoveCopyFailed,
    ErrorServerBusy,
    ErrorSubscriptionNotFound,
)
from exchangelib.items import HARD_DELETE

from exchange_sim import SimulatorThread
from exchange_sim.faults import Faults

from .conftest import MAILBOX, QUEUE, STORAGE, message
from .test_workflow import EVENTS, queue_of, storage_of


def wait_for_open_stream(sim: SimulatorThread) -> None:
    deadline = time.monotonic() + 10
    while not sim.snapshot().open_streams:
        if time.monotonic() > deadline:
            raise AssertionError("no stream opened")
        time.sleep(0.01)


def test_server_busy_carries_back_off(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sim.set_busy(count=1, back_off_ms=1500)
    with pytest.raises(ErrorServerBusy) as caught:
        queue.refresh()
    assert caught.value.back_off == 1.5
    queue.refresh()  # only the next request was refused


def test_dropped_stream_raises_chunked_encoding_error(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)

    def drop_when_open() -> None:
        wait_for_open_stream(sim)
        sim.drop_streams()

    dropper = threading.Thread(target=drop_when_open)
    dropper.start()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for _ in queue.get_streaming_events(sub_id, connection_timeout=30):
            pass
    dropper.join()
    # The subscription survives a dropped connection: reconnecting works.
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    events = [e for n in queue.get_streaming_events(sub_id, connection_timeout=1) for e in n.events]
    assert {e.item_id.id for e in events} == {item_id}


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        ("ErrorSubscriptionNotFound", ErrorSubscriptionNotFound),
        ("ErrorInvalidSubscription", ErrorInvalidSubscription),
    ],
)
def test_expired_subscription(
    sim: SimulatorThread, account: Account, code: str, exception: type[Exception]
) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)
    assert sim.expire_subscriptions(code=code) == [sub_id]
    with pytest.raises(exception):
        list(queue.get_streaming_events(sub_id, connection_timeout=1))


def test_subscription_expiring_mid_stream_ends_it_with_the_error(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)

    def expire_when_open() -> None:
        wait_for_open_stream(sim)
        sim.expire_subscriptions(code="ErrorSubscriptionNotFound")

    expirer = threading.Thread(target=expire_when_open)
    expirer.start()
    with pytest.raises(ErrorSubscriptionNotFound):
        list(queue.get_streaming_events(sub_id, connection_timeout=30))
    expirer.join()


def test_connection_limit_raises_exceeded_connection_count(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    sim.set_max_connections(0)  # refuse every request
    # exchangelib shrinks its pool (3 -> 1) and retries before giving up.
    with pytest.raises(ErrorExceededConnectionCount):
        queue.refresh()
    sim.set_max_connections(None)
    queue.refresh()


def test_connection_limit_counts_open_streams(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)
    sim.set_max_connections(1)
    stream_body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>'
        f"<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{sub_id}</t:SubscriptionId>"
        "</m:SubscriptionIds><m:ConnectionTimeout>30</m:ConnectionTimeout></m:GetStreamingEvents>"
        "</s:Body></s:Envelope>"
    )
    with requests.post(sim.ews_url, data=stream_body, stream=True, timeout=30) as held:
        assert held.status_code == 200
        wait_for_open_stream(sim)
        refused = requests.post(sim.ews_url, data=stream_body, timeout=30)
        assert b"<m:ResponseCode>ErrorExceededConnectionCount</m:ResponseCode>" in refused.content
        sim.drop_streams()


def test_move_fails_for_chosen_items_then_recovers(sim: SimulatorThread, account: Account) -> None:
    storage = storage_of(account)
    ok_id = sim.deliver(MAILBOX, QUEUE, message(1))
    bad_id = sim.deliver(MAILBOX, QUEUE, message(2))
    sim.fail_items([bad_id], ops=("MoveItem",), times=1)
    results = account.bulk_move(ids=[(ok_id, None), (bad_id, None)], to_folder=storage)
    assert isinstance(results[1], ErrorItemNotFound)
    assert isinstance(results[0], tuple)
    [retried] = account.bulk_move(ids=[(bad_id, None)], to_folder=storage)
    assert isinstance(retried, tuple)
    assert len(sim.list_items(MAILBOX, STORAGE)) == 2


def test_delete_fails_until_reset(sim: SimulatorThread, account: Account) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    sim.fail_items([item_id], ops=("DeleteItem",))
    for _ in range(2):
        [result] = account.bulk_delete(ids=[(item_id, None)], delete_type=HARD_DELETE)
        assert isinstance(result, ErrorItemNotFound)
    sim.reset_faults()
    assert account.bulk_delete(ids=[(item_id, None)], delete_type=HARD_DELETE) == [True]


def test_failure_code_is_configurable(sim: SimulatorThread, account: Account) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    sim.fail_items([item_id], ops=("MoveItem",), code="ErrorMoveCopyFailed")
    # Not an error exchangelib returns inline: it raises, as for a real server.
    with pytest.raises(ErrorMoveCopyFailed):
        account.bulk_move(ids=[(item_id, None)], to_folder=storage_of(account))


def test_latency_draws_within_the_configured_range() -> None:
    faults = Faults(latency_min_ms=10, latency_max_ms=20)
    draws = [faults.latency_seconds() for _ in range(200)]
    assert all(0.010 <= d <= 0.020 for d in draws)
    fixed = Faults(latency_min_ms=5, latency_max_ms=5)
    assert fixed.latency_seconds() == 0.005
    assert Faults().latency_seconds() == 0.0


def test_requests_succeed_under_random_latency(sim: SimulatorThread, account: Account) -> None:
    sim.set_latency(30, 60)
    queue_of(account).refresh()
    sim.set_latency(0)
    status = sim.fault_status()
    assert (status.latency_min_ms, status.latency_max_ms) == (0.0, 0.0)
