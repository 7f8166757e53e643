"""The aiohttp side of the Graph face: one route for everything under /v1.0/.

Per request, in order: authentication (when apps are registered, a bearer token the
simulator's token endpoint issued to one of them), then for the request (or each part of a
$batch): injected faults (429/503 with Retry-After), the concurrency limit per app and
mailbox (Outlook's 4; over it: 429 ApplicationThrottled), latency (while holding the
slot), `routes.dispatch`. Every JSON body answered is shown to the recorder with the type
spec validate_graph.py checks it against.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from multidict import CIMultiDict

from exchange_sim.graph.batch import run_batch
from exchange_sim.graph.router import GraphError, GraphRequest, GraphResponse, error_response
from exchange_sim.graph.routes import dispatch, mailbox_of, normalise_path
from exchange_sim.oauth import bearer_client
from exchange_sim.state import STATE, SimState

GRAPH_PREFIX = "/v1.0"
_ARMED = {
    429: ("TooManyRequests", "Please retry again later."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Retry later."),
}
CONCURRENCY_RETRY_AFTER_SECONDS = 1


def add_graph_routes(app: web.Application) -> None:
    app.router.add_route("*", GRAPH_PREFIX + "/{tail:.*}", graph_handler)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _client(sim: SimState, request: web.Request) -> str | None:
    """The registered app the bearer token belongs to; "" when no apps are registered (the
    face is open); None: unauthorised."""
    if not sim.config.apps:
        return ""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    client = bearer_client(request, token.strip()) if scheme.lower() == "bearer" else None
    return client if client in sim.config.apps else None


async def run_one(sim: SimState, request: GraphRequest) -> GraphResponse:
    graph = sim.graph
    graph.requests_served += 1
    armed = graph.take_armed()
    if armed is not None:
        graph.throttled += 1
        code, text = _ARMED.get(armed.status, ("ServiceUnavailable", "Retry later."))
        headers = {}
        if armed.retry_after_seconds is not None:
            headers["Retry-After"] = _seconds(armed.retry_after_seconds)
        return _recorded(sim, error_response(GraphError(armed.status, code, text, headers)))
    key = (request.client, mailbox_of(request.path))
    if not graph.enter(key):
        graph.throttled += 1
        text = "Application is over its MailboxConcurrency limit."
        headers = {"Retry-After": str(CONCURRENCY_RETRY_AFTER_SECONDS)}
        return _recorded(
            sim, error_response(GraphError(429, "ApplicationThrottled", text, headers))
        )
    try:
        # Graph's own latency, else the simulator's per-request latency (--latency-ms).
        latency = graph.latency_seconds or sim.faults.latency_seconds()
        if latency:
            await asyncio.sleep(latency)
        return _recorded(sim, await dispatch(sim, request))
    finally:
        graph.leave(key)


def _recorded(sim: SimState, response: GraphResponse) -> GraphResponse:
    recorder = sim.graph.recorder
    if recorder is not None and response.spec is not None and response.body is not None:
        recorder(response.spec, response.body)
    return response


async def graph_handler(request: web.Request) -> web.StreamResponse:
    sim = request.app[STATE]
    client = _client(sim, request)
    if client is None:
        error = GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        error.headers["WWW-Authenticate"] = 'Bearer realm="", error="invalid_token"'
        return _to_web(_recorded(sim, error_response(error)))
    graph_request = GraphRequest(
        method=request.method.upper(),
        path=normalise_path(request.match_info["tail"]),
        query=dict(request.query),
        headers=CIMultiDict(request.headers),
        body=await request.read(),
        base=f"{request.scheme}://{request.host}{GRAPH_PREFIX}",
        client=client,
    )
    if graph_request.path == "$batch" and graph_request.method == "POST":
        response = await run_batch(graph_request, lambda part: run_one(sim, part))
        return _to_web(_recorded(sim, response))
    return _to_web(await run_one(sim, graph_request))


def _to_web(response: GraphResponse) -> web.Response:
    headers = dict(response.headers)
    body = response.body
    if body is None:
        return web.Response(status=response.status, headers=headers)
    if isinstance(body, bytes):
        headers.setdefault("Content-Type", "text/plain")
        return web.Response(status=response.status, body=body, headers=headers)
    headers["Content-Type"] = "application/json; odata.metadata=minimal"
    return web.Response(status=response.status, text=json.dumps(body), headers=headers)
