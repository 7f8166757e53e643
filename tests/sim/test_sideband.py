"""The /_sim/ side channel over HTTP, the async `Simulator` API, and the CLI process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import exchangelib
import requests
from exchangelib import Account
from exchangelib.errors import ErrorItemNotFound, ErrorServerBusy

from exchange_sim import FaultStatus, Simulator, SimulatorThread
from tests.conftest import REPO

from .conftest import MAILBOX, QUEUE, STORAGE, make_account, message
from .test_workflow import FIELDS, queue_of, storage_of


def test_deliver_and_list_over_http(sim: SimulatorThread, account: Account) -> None:
    url = f"{sim.base_url}/_sim/deliver"
    answer = requests.post(url, params={"mailbox": MAILBOX, "folder": QUEUE}, data=message(3))
    assert answer.status_code == 200
    item_id = answer.json()["item_id"]
    listing = requests.get(
        f"{sim.base_url}/_sim/items", params={"mailbox": MAILBOX, "folder": QUEUE}
    )
    [entry] = listing.json()["items"]
    assert entry["id"] == item_id
    assert entry["message_id"] == "<msg-3@contoso.com>"
    assert entry["subject"] == "Quote 3"
    assert entry["is_draft"] is False
    [item] = account.fetch(ids=[(item_id, None)], only_fields=FIELDS)
    assert item.subject == "Quote 3"


def test_save_draft_is_a_draft_exchangelib_sees(sim: SimulatorThread, account: Account) -> None:
    item_id = sim.save_draft(MAILBOX, QUEUE, message(4))
    [entry] = sim.list_items(MAILBOX, QUEUE)
    assert entry["id"] == item_id and entry["is_draft"] is True
    [item] = account.fetch(ids=[(item_id, None)], only_fields=["is_draft", "subject"])
    assert item.is_draft is True and item.subject == "Quote 4"


def test_deliver_to_unknown_folder_is_404(sim: SimulatorThread) -> None:
    answer = requests.post(
        f"{sim.base_url}/_sim/deliver",
        params={"mailbox": MAILBOX, "folder": "Nope"},
        data=message(1),
    )
    assert answer.status_code == 404


def test_create_folders_over_http(sim: SimulatorThread, account: Account) -> None:
    answer = requests.post(f"{sim.base_url}/_sim/folders", params={"path": "public:/Later/Deeper"})
    [folder_id] = answer.json()["folder_ids"]
    assert (account.public_folders_root // "Later").name == "Later"
    assert sim.folder_id(MAILBOX, "public:/Later/Deeper") == folder_id
    answer = requests.post(f"{sim.base_url}/_sim/folders", params={"path": "Runtime"})
    assert len(answer.json()["folder_ids"]) == 2  # one per mailbox


def test_faults_over_http(sim: SimulatorThread, account: Account) -> None:
    base = f"{sim.base_url}/_sim/faults"
    queue, storage = queue_of(account), storage_of(account)
    requests.post(f"{base}/busy", params={"count": 1, "back_off_ms": 700}).raise_for_status()
    try:
        queue.refresh()
        raise AssertionError("expected ErrorServerBusy")
    except ErrorServerBusy as e:
        assert e.back_off == 0.7
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    requests.post(f"{base}/fail-items", params={"id": item_id, "op": "MoveItem", "times": 1})
    [failed] = account.bulk_move(ids=[(item_id, None)], to_folder=storage)
    assert isinstance(failed, ErrorItemNotFound)
    requests.post(f"{base}/latency", params={"ms": 1}).raise_for_status()
    requests.post(f"{base}/max-connections", params={"limit": 5}).raise_for_status()
    assert requests.get(base).json()["max_connections"] == 5
    sub_id = queue.subscribe_to_streaming(event_types=["NewMailEvent"])
    expired = requests.post(
        f"{base}/expire-subscriptions", params={"code": "ErrorInvalidSubscription"}
    ).json()
    assert expired == {"expired": [sub_id]}
    assert requests.post(f"{base}/drop-streams").json() == {"dropped": 0}
    assert requests.post(f"{base}/lose-events").json() == {"lost": 0}
    requests.post(f"{base}/reset").raise_for_status()
    armed = requests.get(base).json()
    assert (armed["latency_min_ms"], armed["latency_max_ms"]) == (0.0, 0.0)
    assert armed["max_connections"] is None
    assert len(account.bulk_move(ids=[(item_id, None)], to_folder=storage)) == 1
    state = requests.get(f"{sim.base_url}/_sim/state").json()
    assert state["items"] == 1 and state["subscriptions"] == 0


def test_snapshot_counts_what_the_simulator_holds(sim: SimulatorThread, account: Account) -> None:
    before = sim.snapshot()
    assert before.mailboxes == (MAILBOX, "other@example.com")
    sim.deliver(MAILBOX, QUEUE, message(1))
    queue_of(account).refresh()
    after = sim.snapshot()
    assert after.items == before.items + 1
    assert after.requests_served > before.requests_served
    assert (after.in_flight, after.open_streams, after.subscriptions) == (0, 0, 0)
    over_http = requests.get(f"{sim.base_url}/_sim/state").json()
    assert over_http["items"] == after.items and over_http["mailboxes"] == list(after.mailboxes)


def test_fault_status_shows_what_is_armed(sim: SimulatorThread) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    sim.set_busy(2, back_off_ms=100)
    sim.set_latency(5, 10)
    sim.set_max_connections(3)
    sim.fail_items([item_id], ops=("MoveItem",), times=1)
    assert sim.fault_status() == FaultStatus(
        busy_remaining=2,
        busy_back_off_ms=100,
        latency_min_ms=5,
        latency_max_ms=10,
        max_connections=3,
        item_failures={"MoveItem": (item_id,)},
    )
    assert requests.get(f"{sim.base_url}/_sim/faults").json()["item_failures"] == {
        "MoveItem": [item_id]
    }
    sim.reset_faults()
    assert sim.fault_status() == FaultStatus(0, 1500, 0.0, 0.0, None, {})


def test_create_item_is_not_a_delivery(sim: SimulatorThread, account: Account) -> None:
    item_id = sim.create_item(MAILBOX, QUEUE, message(5, Message_ID=""), is_read=False)
    [entry] = sim.list_items(MAILBOX, QUEUE)
    assert entry["id"] == item_id
    assert entry["message_id"] is None and entry["is_draft"] is False  # no Message-ID added
    [item] = account.fetch(ids=[(item_id, None)], only_fields=["is_read", "is_draft"])
    assert item.is_read is False and item.is_draft is False


def test_lost_events_never_reach_the_subscription(sim: SimulatorThread, account: Account) -> None:
    queue = queue_of(account)
    sub_id, watermark = queue.subscribe_to_pull(event_types=["NewMailEvent"])
    sim.deliver(MAILBOX, QUEUE, message(1))
    assert sim.lose_events() == 1
    [idle] = list(queue.get_events(sub_id, watermark))
    assert [type(e).__name__ for e in idle.events] == ["StatusEvent"]
    later = sim.deliver(MAILBOX, QUEUE, message(2))  # the subscription still works
    events = [e for n in queue.get_events(sub_id, idle.events[-1].watermark) for e in n.events]
    assert [e.item_id.id for e in events] == [later]
    queue.unsubscribe(sub_id)


def test_bad_side_channel_parameters_are_400(sim: SimulatorThread) -> None:
    base = f"{sim.base_url}/_sim/faults"
    assert requests.post(f"{base}/busy", params={"count": "many"}).status_code == 400
    assert requests.post(f"{base}/fail-items", params={"op": "MoveItem"}).status_code == 400
    assert (
        requests.post(f"{base}/fail-items", params={"id": "x", "op": "GetItem"}).status_code == 400
    )
    bad_code = requests.post(f"{base}/expire-subscriptions", params={"code": "ErrorBogus"})
    assert bad_code.status_code == 400


async def test_async_simulator_with_exchangelib_in_threads() -> None:
    async with Simulator(folders=[QUEUE, STORAGE]) as sim:
        assert sim.ews_url.startswith("http://127.0.0.1:")
        item_id = sim.deliver(MAILBOX, QUEUE, message(1))
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{sim.base_url}/_sim/deliver",
                params={"mailbox": MAILBOX, "folder": QUEUE},
                data=message(2),
            ) as answer,
        ):
            second = (await answer.json())["item_id"]
        account = await asyncio.to_thread(make_account, sim.ews_url)
        fetched = await asyncio.to_thread(
            lambda: list(account.fetch(ids=[(item_id, None), (second, None)], only_fields=FIELDS))
        )
        assert [m.subject for m in fetched] == ["Quote 1", "Quote 2"]
        assert [i["id"] for i in sim.list_items(MAILBOX, QUEUE)] == [item_id, second]
        exchangelib.close_connections()


def test_cli_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange_sim", "--port", "0", "--folder", QUEUE],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("exchange-sim: EWS at http://127.0.0.1:")
        ews_url = first.split(" at ", 1)[1].strip()
        account = make_account(ews_url)
        assert (account.msg_folder_root // "Email Logging" // "Queue").name == "Queue"
        exchangelib.close_connections()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
