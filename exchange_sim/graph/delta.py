"""messages/delta on one mail folder: pages end in a nextLink ($skiptoken) until the round
is done, then a deltaLink ($deltatoken).

The token carries the position in the folder's change journal (the one SyncFolderItems
reads), the query options of the first request (Graph encodes them into the token) and the
epoch it was issued in: `GraphControl.expire_delta_tokens()` moves the epoch on, and an
older token gets 410 Gone / SyncStateNotFound, as Exchange Online answers when its token
cache dropped the state. Messages that left the folder come back as `@removed` entries.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from exchange_sim.graph.folders import folder, mailbox
from exchange_sim.graph.query import parse_query
from exchange_sim.graph.render import MESSAGE_TYPE, ODATA, graph_id, message_json
from exchange_sim.graph.router import GraphError, GraphRequest, GraphResponse
from exchange_sim.state import SimState

#: Graph's page size for message delta unless Prefer: odata.maxpagesize says otherwise.
DEFAULT_PAGE_SIZE = 10
EXPIRED = (
    410,
    "SyncStateNotFound",
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again.",
)


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def _decode(token: str, epoch: int, instance: str, folder_id: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise GraphError(400, "BadRequest", "The delta token is malformed.") from None
    if not isinstance(state, dict) or state.get("f") != folder_id:
        raise GraphError(400, "BadRequest", "The delta token does not belong to this folder.")
    if state.get("e") != epoch or state.get("i") != instance:
        raise GraphError(*EXPIRED)
    return state


def _start(request: GraphRequest, folder_id: str, epoch: int, instance: str) -> dict[str, Any]:
    parse_query(request.query)  # reject bad options on the first request
    return {
        "f": folder_id,
        "e": epoch,
        "i": instance,
        "s": 0,
        "q": request.query.get("$select"),
        "x": request.query.get("$expand"),
        "c": request.query.get("changeType"),
        "p": request.page_size(DEFAULT_PAGE_SIZE),
    }


def delta(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    box = mailbox(sim, args[0])
    target = folder(sim, box, args[1])
    epoch = sim.graph.delta_epoch
    token = request.query.get("$skiptoken") or request.query.get("$deltatoken")
    instance = sim.graph.instance
    if token:
        state = _decode(token, epoch, instance, target.id)
    else:
        state = _start(request, target.id, epoch, instance)
    options = {k: state[v] for k, v in (("$select", "q"), ("$expand", "x")) if state[v]}
    query = parse_query(options)
    size = request.page_size(int(state["p"]))
    changes, last_seq, done = sim.store.sync_changes(target, int(state["s"]), size)
    rows: list[dict[str, Any]] = []
    for _kind, item_id, item in changes:
        if item is not None and state["c"] in (None, "created"):
            row = {"@odata.type": MESSAGE_TYPE}
            rows.append(row | message_json(item, query.select, query.expand_tags))
        elif item is None and state["c"] in (None, "deleted"):
            rows.append(
                {
                    "@odata.type": MESSAGE_TYPE,
                    "id": graph_id(item_id),
                    "@removed": {"reason": "deleted"},
                }
            )
    link = f"{request.base}/users/{quote(args[0])}/mailFolders/{quote(args[1])}/messages/delta"
    token = _encode(state | {"s": last_seq})
    body: dict[str, Any] = {"@odata.context": f"{ODATA}#Collection(message)", "value": rows}
    if done:
        body["@odata.deltaLink"] = f"{link}?$deltatoken={token}"
    else:
        body["@odata.nextLink"] = f"{link}?$skiptoken={token}"
    return GraphResponse(200, body, "Collection(message)")
