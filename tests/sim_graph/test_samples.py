"""Microsoft's documented sample requests (../shared/graph-conformance/samples) sent to the
Graph face, with `/me` as the logging mailbox (app-only has no /me) and the sample's ids
replaced by real ones: each gets the documented status and a body of the documented shape
(the sample's property names, less the ones the simulator does not model)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from exchange_sim import SimulatorThread
from tests.conftest import SHARED
from tests.sim_graph.conftest import MAILBOX, QUEUE, STORAGE, GraphClient, message

SAMPLES = SHARED / "graph-conformance" / "samples"
#: Properties of Microsoft's samples the simulator does not produce.
#  (isSupported and filterQuery belong to mailSearchFolder, which the store has none of.)
NOT_MODELLED = {"conversationId", "@odata.id", "@odata.type", "isSupported", "filterQuery"}
#: Where the page's own text and its sample disagree, the text wins (samples/INDEX.md).
STATUS = {"message-copy": 201}
CASES = [
    "message-get-1",
    "message-get-2-internet-message-headers",
    "message-get-3-text-body",
    "message-get-4-mime-value",
    "message-get-5-extended-property",
    "message-move",
    "message-copy",
    "message-delete",
    "message-permanentdelete",
    "message-delta",
    "delta-query-messages-1a-first-page",
    "mailfolder-list-messages",
    "mailfolder-list-childfolders-1",
    "user-list-mailfolders-1",
]


def read_request(name: str) -> tuple[str, str, dict[str, str], Any]:
    lines = (SAMPLES / name / "request.http").read_text().splitlines()
    method, url = lines[0].split()[:2]
    headers: dict[str, str] = {}
    index = 1
    while index < len(lines) and lines[index].strip():
        key, _, value = lines[index].partition(":")
        headers[key.strip()] = value.strip()
        index += 1
    text = "\n".join(lines[index:]).strip()
    return method, url, headers, json.loads(text) if text else None


def documented(name: str) -> tuple[int, Any]:
    head = SAMPLES / name / "response.http"
    status = int(head.read_text().split()[1]) if head.exists() else 200
    path = SAMPLES / name / "response.json"
    return STATUS.get(name, status), json.loads(path.read_text()) if path.exists() else None


def localise(url: str, graph: GraphClient, ids: dict[str, str]) -> str:
    url = url.replace("https://graph.microsoft.com/v1.0", graph.graph_url)
    url = url.replace("/me/", f"/users/{MAILBOX}/").replace("{usersId}", MAILBOX)
    url = re.sub(r"(?i)/messages/(?!delta)[^/?]+", f"/messages/{ids['message']}", url)
    folder = ids["parent"] if url.endswith("childFolders") else ids["queue"]
    return re.sub(r"(?i)/mailFolders/(?!delta)[^/?]+", f"/mailFolders/{folder}", url)


def keys(body: Any) -> set[str]:
    if isinstance(body, dict) and isinstance(body.get("value"), list):
        return set().union(*(keys(v) for v in body["value"])) if body["value"] else set()
    return set(body) if isinstance(body, dict) else set()


@pytest.mark.parametrize("name", CASES)
def test_sample_request_gets_documented_shape(
    name: str, graph: GraphClient, sim: SimulatorThread
) -> None:
    for n in range(3):
        item = sim.deliver(MAILBOX, QUEUE, message(n, Sensitivity="Private"))
    ids = {
        "message": item.replace("/", "-").replace("+", "_"),
        "queue": graph.folder_id(QUEUE),
        "parent": graph.folder_id("Email Logging"),
    }
    method, url, headers, body = read_request(name)
    if isinstance(body, dict) and "destinationId" in body:
        body["destinationId"] = graph.folder_id(STORAGE)
    answer = graph.http.request(
        method, localise(url, graph, ids), headers=headers, json=body, timeout=10
    )
    status, sample = documented(name)
    assert answer.status_code == status, answer.text
    if sample is not None and answer.headers["Content-Type"].startswith("application/json"):
        missing = keys(sample) - keys(answer.json()) - NOT_MODELLED
        assert missing == set()
