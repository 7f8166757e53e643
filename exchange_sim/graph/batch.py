"""JSON batching: POST /v1.0/$batch with at most 20 requests.

The batch is 200 whenever it parses (400 when it does not: no requests, more than 20, a
duplicate id, a missing method or url); each part gets its own status. A batch without
`dependsOn` runs its parts in parallel, 4 at a time (as Outlook does); with it, in order, a
part waiting for its `dependsOn` and failing with 424 Failed Dependency when one failed.
Each part goes through `run_one` (web.py): faults and limits apply per part, as Graph counts
every part against the mailbox's limits (so two parallel batches can exceed the 4).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from multidict import CIMultiDict

from exchange_sim.graph.router import GraphError, GraphRequest, GraphResponse, error_response
from exchange_sim.graph.routes import normalise_path

MAX_REQUESTS = 20
VERSION_PREFIX = "/v1.0"
#: Outlook runs at most 4 requests of a batch in parallel (json-batching.md).
PARALLEL_PARTS = 4
RunOne = Callable[[GraphRequest], Awaitable[GraphResponse]]


def _parts(outer: GraphRequest) -> list[dict[str, Any]]:
    requests = outer.json().get("requests")
    if not isinstance(requests, list) or not requests:
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    if len(requests) > MAX_REQUESTS:
        text = f"Number of batch request steps exceeds the maximum value of {MAX_REQUESTS}."
        raise GraphError(400, "BadRequest", text)
    seen: set[str] = set()
    for part in requests:
        if not isinstance(part, dict) or not all(
            isinstance(part.get(k), str) and part.get(k) for k in ("id", "method", "url")
        ):
            raise GraphError(400, "BadRequest", "Each batch request needs id, method and url.")
        if part["id"].lower() in seen:
            raise GraphError(400, "BadRequest", f"Batch request id {part['id']} is duplicated.")
        seen.add(part["id"].lower())
    return requests


def _request(outer: GraphRequest, part: Mapping[str, Any]) -> GraphRequest:
    url = urlsplit(part["url"])
    # Relative ("/users/...") as documented; an absolute URL (msgraph-sdk sends one) is
    # taken for its path below the version.
    path = url.path.removeprefix(VERSION_PREFIX)
    body = part.get("body")
    raw = json.dumps(body).encode() if isinstance(body, dict | list) else b""
    headers = CIMultiDict((str(k), str(v)) for k, v in (part.get("headers") or {}).items())
    return GraphRequest(
        method=part["method"].upper(),
        path=normalise_path(path),
        query=dict(parse_qsl(url.query, keep_blank_values=True)),
        headers=headers,
        body=raw,
        base=outer.base,
        client=outer.client,
    )


def _answer(part_id: str, response: GraphResponse) -> dict[str, Any]:
    headers = dict(response.headers)
    body = response.body
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode("ascii")
    elif body is not None:
        headers.setdefault("Content-Type", "application/json")
    answer: dict[str, Any] = {"id": part_id, "status": response.status, "headers": headers}
    if body is not None:
        answer["body"] = body
    return answer


async def run_batch(outer: GraphRequest, run_one: RunOne) -> GraphResponse:
    try:
        parts = _parts(outer)
    except GraphError as e:
        return error_response(e)
    if not any(part.get("dependsOn") for part in parts):
        # Fully parallel: Outlook runs at most 4 parts of a batch at once.
        slots = asyncio.Semaphore(PARALLEL_PARTS)

        async def one(part: dict[str, Any]) -> GraphResponse:
            async with slots:
                return await run_one(_request(outer, part))

        responses = await asyncio.gather(*(one(part) for part in parts))
        answers = [_answer(p["id"], r) for p, r in zip(parts, responses, strict=True)]
        return GraphResponse(200, {"responses": answers}, "batch-response")
    status: dict[str, int] = {}
    answers = []
    for part in parts:  # sequential, in order: a part waits for its dependsOn
        depends = part.get("dependsOn") or []
        failed = [d for d in depends if status.get(str(d).lower(), 424) >= 400]
        if failed:
            error = GraphError(424, "FailedDependency", "A request it depends on failed.")
            response = error_response(error)
        else:
            response = await run_one(_request(outer, part))
        status[part["id"].lower()] = response.status
        answers.append(_answer(part["id"], response))
    return GraphResponse(200, {"responses": answers}, "batch-response")
