"""The harsh faults (issue 11): each through the Simulator API and the sideband, each
surfacing in exchangelib as Exchange's would. Every response is schema-validated by the
`sim` fixture at teardown."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from exchangelib import Account
from exchangelib.errors import (
    ErrorExceededConnectionCount,
    ErrorExceededSubscriptionCount,
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
    ErrorMailboxStoreUnavailable,
    ErrorNoPublicFolderReplicaAvailable,
    ErrorServerBusy,
)

from exchange_sim import SimulatorThread

from .conftest import MAILBOX, QUEUE, message
from .test_workflow import EVENTS, queue_of


def test_server_busy_inside_http_200_carries_back_off_ms(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    sim.fail_requests("ErrorServerBusy", ops=("FindItem",), back_off_ms=30000)
    raw = requests.post(
        sim.ews_url,
        data=_find_item(queue.id),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )
    assert raw.status_code == 200
    assert b"<m:ResponseCode>ErrorServerBusy</m:ResponseCode>" in raw.content
    assert b'<t:Value Name="BackOffMilliseconds">30000</t:Value>' in raw.content
    assert list(queue.all().only("id")) == []  # only once


def test_response_message_errors_reach_exchangelib(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sim.deliver(MAILBOX, QUEUE, message())
    sim.fail_requests("ErrorServerBusy", ops=("GetFolder",), back_off_ms=700)
    with pytest.raises(ErrorServerBusy):
        queue.refresh()
    sim.fail_requests("ErrorInvalidSyncStateData", ops=("SyncFolderItems",))
    with pytest.raises(ErrorInvalidSyncStateData):
        list(queue.sync_items(sync_state="garbage"))
    sim.fail_requests("ErrorMailboxStoreUnavailable", ops=("*",))
    with pytest.raises(ErrorMailboxStoreUnavailable):
        queue.refresh()
    [item] = list(queue.all().only("id"))
    sim.fail_requests("ErrorMailboxStoreUnavailable", ops=("GetItem",))
    with pytest.raises(ErrorMailboxStoreUnavailable):
        list(account.fetch(ids=[item], only_fields=["subject"]))
    assert len(list(account.fetch(ids=[item], only_fields=["subject"]))) == 1


def test_http_503_with_retry_after(sim: SimulatorThread) -> None:
    sim.set_http_error(503, count=2, retry_after_seconds=7)
    first = requests.post(sim.ews_url, data=b"<x/>", timeout=10)
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "7"
    assert requests.post(sim.ews_url, data=b"<x/>", timeout=10).status_code == 503
    assert requests.post(sim.ews_url, data=b"<x/>", timeout=10).status_code == 500  # bad SOAP
    sim.set_http_error(429, count=1)
    response = requests.post(sim.ews_url, data=b"<x/>", timeout=10)
    assert response.status_code == 429 and "Retry-After" not in response.headers


def test_subscription_limit_counts_subscriptions_never_unsubscribed(
    sim: SimulatorThread, account: Account
) -> None:
    queue = queue_of(account)
    sim.set_subscription_limit(3)
    held = [queue.subscribe_to_streaming(event_types=EVENTS) for _ in range(3)]
    with pytest.raises(ErrorExceededSubscriptionCount):
        queue.subscribe_to_streaming(event_types=EVENTS)
    queue.unsubscribe(held[0])
    assert queue.subscribe_to_streaming(event_types=EVENTS)
    sim.set_subscription_limit(None)
    assert queue.subscribe_to_streaming(event_types=EVENTS)


def test_half_open_stream_sends_one_ok_then_nothing(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)
    sim.set_half_open_streams(1)
    notifications: list[object] = []
    done = threading.Event()

    def follow() -> None:
        try:
            for n in queue.get_streaming_events(sub_id, connection_timeout=1):
                notifications.append(n)
        except Exception:
            pass
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    deadline = time.monotonic() + 10
    while not sim.snapshot().open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    sim.deliver(MAILBOX, QUEUE, message())
    # minute_seconds is short in these tests: a healthy stream would have closed by now.
    assert not done.wait(3.0)
    assert notifications == []
    assert sim.drop_streams() == 1
    assert done.wait(10)


def test_sideband_arms_every_harsh_fault(sim: SimulatorThread) -> None:
    base = sim.base_url + "/_sim/faults/"
    arms = [
        ("fail-requests?code=ErrorServerBusy&op=GetItem&back_off_ms=30000&times=", 200),
        ("http-error?status=503&count=2&retry_after=5", 200),
        ("half-open-streams?count=1", 200),
        ("subscription-limit?limit=20", 200),
        ("public-routing?required=true", 200),
        ("stream-limit?limit=10", 200),
        ("fail-get-items?id=I-1&times=1", 200),
        ("http-error?status=500", 400),
        ("fail-requests?code=oops", 400),
    ]
    for path, status in arms:
        assert requests.post(base + path, timeout=10).status_code == status, path
    armed = requests.get(sim.base_url + "/_sim/faults", timeout=10).json()
    assert armed["request_faults"] == {"GetItem": ["ErrorServerBusy", None]}
    assert (armed["http_error_status"], armed["http_error_remaining"]) == (503, 2)
    assert armed["half_open_streams"] == 1
    assert armed["subscription_limit"] == 20
    assert armed["require_public_routing"] is True
    assert armed["stream_limit"] == 10
    assert armed["item_failures"] == {"GetItem": ["I-1"]}
    requests.post(base + "reset", timeout=10)
    armed = requests.get(sim.base_url + "/_sim/faults", timeout=10).json()
    assert armed["request_faults"] == {} and armed["subscription_limit"] is None


def _find_item(folder_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        '<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body>'
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        f'</m:ItemShape><m:ParentFolderIds><t:FolderId Id="{folder_id}"/></m:ParentFolderIds>'
        "</m:FindItem></s:Body></s:Envelope>"
    ).encode()


def test_public_content_needs_routing_headers(sim: SimulatorThread, account: Account) -> None:
    sim.create_folder("public:/Routed")
    folder = account.public_folders_root // "Routed"
    sim.deliver(MAILBOX, "public:/Routed", message())
    sim.require_public_routing()
    with pytest.raises(ErrorNoPublicFolderReplicaAvailable):
        list(folder.all().only("id"))
    folder.refresh()  # a hierarchy request (GetFolder) needs no routing
    guid = sim.call(lambda: sim.sim.public_content_mailbox_guid)
    body = _find_item(folder.id)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    refused = requests.post(sim.ews_url, data=body, headers=headers, timeout=10)
    assert b"ErrorNoPublicFolderReplicaAvailable" in refused.content
    routed = {"X-AnchorMailbox": f"{guid}@example.com", "X-PublicFolderMailbox": f"{guid}@x"}
    answered = requests.post(sim.ews_url, data=body, headers=headers | routed, timeout=10)
    assert b"NoError" in answered.content
    sim.require_public_routing(False)
    assert len(list(folder.all().only("id"))) == 1


def test_stream_limit_refuses_one_stream_too_many(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sim.set_stream_limit(0)
    sub_id = queue.subscribe_to_streaming(event_types=EVENTS)
    with pytest.raises(ErrorExceededConnectionCount):
        for _ in queue.get_streaming_events(sub_id, connection_timeout=1):
            pass
    assert sim.fault_status().stream_limit == 0


def test_get_item_fails_per_item(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    ids = [sim.deliver(MAILBOX, QUEUE, message(n)) for n in (1, 2)]
    sim.fail_items([ids[1]], ops=("GetItem",), times=1)
    first, second = account.fetch(ids=[(i, None) for i in ids], only_fields=["subject"])
    assert not isinstance(first, Exception)
    assert isinstance(second, ErrorItemNotFound)
    assert len(list(account.fetch(ids=[(ids[1], None)], only_fields=["subject"]))) == 1
    assert queue.total_count is not None
