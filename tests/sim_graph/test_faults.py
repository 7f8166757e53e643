"""Graph's faults on the simulator: 429/503 with Retry-After, expired delta tokens, the
4-concurrent-requests limit, app-only authentication and JSON batching."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from exchange_sim import SimulatorThread
from tests.sim_graph.conftest import MAILBOX, QUEUE, STORAGE, GraphClient, message


def test_throttle_429_and_503_with_retry_after(graph: GraphClient, sim: SimulatorThread) -> None:
    sim.graph.throttle(1, retry_after_seconds=2.128)
    sim.graph.throttle(1, retry_after_seconds=3, status=503)
    first = graph.get("mailFolders")
    assert first.status_code == 429 and first.headers["Retry-After"] == "2.128"
    assert first.json()["error"]["code"] == "TooManyRequests"
    second = graph.get("mailFolders")
    assert second.status_code == 503 and second.headers["Retry-After"] == "3"
    assert graph.get("mailFolders").status_code == 200
    assert sim.graph.counters()["throttled"] == 2


def test_expired_delta_token_gets_410(graph: GraphClient, sim: SimulatorThread) -> None:
    sim.deliver(MAILBOX, QUEUE, message(1))
    first = f"mailFolders/{graph.folder_id(QUEUE)}/messages/delta"
    _, delta_link = graph.delta_round(first)
    sim.graph.expire_delta_tokens()
    expired = graph.get(delta_link)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "SyncStateNotFound"
    entries, _ = graph.delta_round(first)  # a fresh round sees the folder again
    assert [e["internetMessageId"] for e in entries] == ["<msg-1@contoso.com>"]


def test_four_concurrent_requests_per_mailbox(graph: GraphClient, sim: SimulatorThread) -> None:
    sim.graph.set_latency(300)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: graph.get("mailFolders").status_code, range(8)))
    assert statuses.count(200) >= 4 and 429 in statuses
    sim.graph.set_concurrency_limit(None)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: graph.get("mailFolders").status_code, range(8)))
    assert statuses == [200] * 8


def test_app_only_tokens(sim: SimulatorThread) -> None:
    graph = GraphClient(sim)
    sim.graph.register_app("app-1", "s3cret")
    assert graph.get("mailFolders").status_code == 401
    token_url = f"{sim.base_url}/tenant-1/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": "app-1",
        "client_secret": "s3cret",
        "scope": "https://graph.microsoft.com/.default",
    }
    wrong = requests.post(token_url, data=form | {"client_secret": "no"}, timeout=10)
    assert wrong.status_code == 401
    token = requests.post(token_url, data=form, timeout=10).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    graph.http.headers["Authorization"] = f"Bearer {token['access_token']}"
    assert graph.get("mailFolders").status_code == 200


def test_batch_parts_depends_on_and_limits(graph: GraphClient, sim: SimulatorThread) -> None:
    item = sim.deliver(MAILBOX, QUEUE, message(1)).replace("/", "-").replace("+", "_")
    storage = graph.folder_id(STORAGE)
    base = f"/users/{MAILBOX}/messages/{item}"
    requests_ = [
        {"id": "1", "method": "GET", "url": base + "?$select=subject"},
        {
            "id": "2",
            "method": "POST",
            "url": base + "/move",
            "dependsOn": ["1"],
            "headers": {"Content-Type": "application/json"},
            "body": {"destinationId": storage},
        },
        {"id": "3", "method": "GET", "url": base, "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": "/users/x@example.com/mailFolders"},
        {"id": "5", "method": "GET", "url": f"/users/{MAILBOX}/mailFolders", "dependsOn": ["4"]},
    ]
    answer = requests.post(f"{graph.graph_url}/$batch", json={"requests": requests_}, timeout=10)
    assert answer.status_code == 200
    status = {r["id"]: r["status"] for r in answer.json()["responses"]}
    assert status == {"1": 200, "2": 201, "3": 404, "4": 404, "5": 424}
    too_many = [{"id": str(n), "method": "GET", "url": base} for n in range(21)]
    over = requests.post(f"{graph.graph_url}/$batch", json={"requests": too_many}, timeout=10)
    assert over.status_code == 400
    twice = [{"id": "a", "method": "GET", "url": base}, {"id": "A", "method": "GET", "url": base}]
    dup = requests.post(f"{graph.graph_url}/$batch", json={"requests": twice}, timeout=10)
    assert dup.status_code == 400


def test_batch_part_throttled_alone(graph: GraphClient, sim: SimulatorThread) -> None:
    sim.graph.throttle(1, retry_after_seconds=1)
    parts = [
        {"id": str(n), "method": "GET", "url": f"/users/{MAILBOX}/mailFolders"} for n in range(3)
    ]
    answer = requests.post(f"{graph.graph_url}/$batch", json={"requests": parts}, timeout=10)
    responses = sorted(answer.json()["responses"], key=lambda r: r["id"])
    assert [r["status"] for r in responses] == [429, 200, 200]
    assert responses[0]["headers"]["Retry-After"] == "1"


def test_exchange_sim_app_option() -> None:
    from exchange_sim.__main__ import config_from_args, parse_args

    config = config_from_args(parse_args(["--app", "client-1:s3cret", "--app", "c2:x:y"]))
    assert config.apps == {"client-1": "s3cret", "c2": "x:y"}


def test_graph_side_channel(graph: GraphClient, sim: SimulatorThread) -> None:
    side = f"{sim.base_url}/_sim/graph"
    assert requests.post(f"{side}/throttle?count=1&retry_after=3", timeout=10).ok
    assert graph.get("mailFolders").status_code == 429
    assert requests.get(f"{side}/state", timeout=10).json()["result"]["throttled"] == 1
    assert requests.post(f"{side}/apps?client_id=a&secret=b", timeout=10).ok
    assert graph.get("mailFolders").status_code == 401  # an app is registered now
    assert requests.post(f"{side}/throttle?count=x", timeout=10).status_code == 400


def test_batch_takes_absolute_urls_too(graph: GraphClient, sim: SimulatorThread) -> None:
    item = sim.deliver(MAILBOX, QUEUE, message(1)).replace("/", "-").replace("+", "_")
    parts = [{"id": "1", "method": "GET", "url": f"{graph.root}/messages/{item}"}]
    answer = requests.post(f"{graph.graph_url}/$batch", json={"requests": parts}, timeout=10)
    assert [r["status"] for r in answer.json()["responses"]] == [200]
