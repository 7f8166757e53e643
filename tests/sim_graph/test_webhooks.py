"""Change notifications on the Graph face: the validation handshake, created/deleted
notifications with clientState, renewal, deletion, dropped notifications and lifecycle
events. The receiver is a small HTTP server in a thread, as a subscriber's endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from exchange_sim import SimulatorThread
from tests.sim_graph.conftest import MAILBOX, QUEUE, STORAGE, GraphClient, message


class Receiver:
    """Answers validation requests (unless `refuse`), records notification bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.validations = 0
        self.refuse = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                token = parse_qs(urlsplit(self.path).query).get("validationToken")
                if token:
                    receiver.validations += 1
                    answer = b"no" if receiver.refuse else token[0].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                receiver.bodies.append(json.loads(raw))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notifications(self) -> list[dict[str, Any]]:
        return [n for body in self.bodies for n in body["value"]]

    def wait(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(self.notifications()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.notifications()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


def subscribe(graph: GraphClient, receiver: Receiver, **extra: Any) -> Any:
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "changeType": "created,deleted",
        "notificationUrl": receiver.url,
        "resource": f"users/{MAILBOX}/mailFolders('{graph.folder_id(QUEUE)}')/messages",
        "expirationDateTime": expires,
        "clientState": "s3cret-state",
    } | extra
    return graph.http.post(f"{graph.graph_url}/subscriptions", json=body, timeout=20)


def test_subscribe_notify_renew_delete(
    graph: GraphClient, sim: SimulatorThread, receiver: Receiver
) -> None:
    created = subscribe(graph, receiver)
    assert created.status_code == 201, created.text
    subscription = created.json()
    assert receiver.validations == 1 and subscription["clientState"] == "s3cret-state"
    item = sim.deliver(MAILBOX, QUEUE, message(1)).replace("/", "-").replace("+", "_")
    graph.post(f"messages/{item}/move", {"destinationId": graph.folder_id(STORAGE)})
    sim.deliver(MAILBOX, STORAGE, message(2))  # another folder: no notification
    got = receiver.wait(2)
    assert [(n["changeType"], n["resourceData"]["id"]) for n in got] == [
        ("created", item),
        ("deleted", item),
    ]
    assert {n["clientState"] for n in got} == {"s3cret-state"}
    url = f"{graph.graph_url}/subscriptions/{subscription['id']}"
    later = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    renewed = graph.http.patch(url, json={"expirationDateTime": later}, timeout=10)
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] == later
    assert graph.http.delete(url, timeout=10).status_code == 204
    assert graph.http.get(url, timeout=10).status_code == 404


def test_refused_validation_and_bad_requests(graph: GraphClient, receiver: Receiver) -> None:
    receiver.refuse = True
    assert subscribe(graph, receiver).status_code == 400
    receiver.refuse = False
    too_long = (datetime.now(UTC) + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert subscribe(graph, receiver, expirationDateTime=too_long).status_code == 400
    assert subscribe(graph, receiver, resource="users/x/events").status_code == 400


def test_dropped_notifications_and_removed_subscriptions(
    graph: GraphClient, sim: SimulatorThread, receiver: Receiver
) -> None:
    assert subscribe(graph, receiver, lifecycleNotificationUrl=receiver.url).status_code == 201
    assert receiver.validations == 2  # both URLs are validated
    sim.graph.drop_notifications(1)
    sim.deliver(MAILBOX, QUEUE, message(1))
    sim.deliver(MAILBOX, QUEUE, message(2))
    assert len(receiver.wait(1)) == 1
    assert sim.graph.remove_subscriptions() == 1
    got = receiver.wait(2)
    assert got[-1]["lifecycleEvent"] == "subscriptionRemoved"
    sim.deliver(MAILBOX, QUEUE, message(3))
    time.sleep(0.2)
    assert len(receiver.notifications()) == 2
