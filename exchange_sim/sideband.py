"""The /_sim/ side channel (tests and demos; not part of EWS). JSON in, JSON out.

POST /_sim/deliver?mailbox=A&folder=PATH        body: raw RFC 5322 message
GET  /_sim/items?mailbox=A&folder=PATH          folder contents
POST /_sim/folders?path=PATH[&mailbox=A]        create a folder path ("public:/..." for public)
GET  /_sim/state                                counters (SimSnapshot)
GET  /_sim/faults                               what is armed (FaultStatus)
POST /_sim/faults/busy?count=N&back_off_ms=MS
POST /_sim/faults/latency?ms=MS | ?min_ms=A&max_ms=B
POST /_sim/faults/drop-streams
POST /_sim/faults/expire-subscriptions?code=ErrorSubscriptionNotFound[&id=..]
     (code: ErrorSubscriptionNotFound or ErrorInvalidSubscription; no id: all)
POST /_sim/faults/lose-events                   forget every buffered notification event
POST /_sim/faults/max-connections?limit=N       (absent: off; 0 refuses every request)
POST /_sim/faults/fail-items?id=..[&id=..]&op=MoveItem[&op=DeleteItem][&times=K][&code=C]
POST /_sim/faults/fail-get-items?id=..[&id=..][&times=K][&code=C]   (per-item GetItem errors)
POST /_sim/faults/fail-requests?code=C[&op=Subscribe][&op=..][&times=K|&times=][&back_off_ms=MS]
     (op absent or "*": every operation; times absent: 1, empty: until reset)
POST /_sim/faults/http-error?status=503&count=N[&retry_after=S]
POST /_sim/faults/half-open-streams?count=N
POST /_sim/faults/subscription-limit?limit=N    (absent: off; Exchange Online has 20)
POST /_sim/faults/public-routing?required=true  (false: off)
POST /_sim/faults/stream-limit?limit=N          (absent: off; Exchange Online has 10)
POST /_sim/faults/reset

A PATH is relative to "Top of Information Store" ("Email Logging/Queue", "Inbox");
"public:/Queue" names a public folder. Each route does what the `Simulator` method of the
same name does, on the same `SimState`.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from exchange_sim.model import StoreError
from exchange_sim.state import STATE, SimState, item_summary

ITEM_FAULT_OPS = ("MoveItem", "DeleteItem", "CopyItem")
SUBSCRIPTION_CODES = ("ErrorSubscriptionNotFound", "ErrorInvalidSubscription")


def _state(request: web.Request) -> SimState:
    return request.app[STATE]


def _bad(text: str, status: int = 400) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _int(request: web.Request, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None


def _float(request: web.Request, name: str, default: float) -> float:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a number") from None


async def deliver(request: web.Request) -> web.Response:
    state = _state(request)
    raw = await request.read()
    try:
        folder = state.folder(request.query.get("mailbox"), request.query.get("folder", "Inbox"))
    except StoreError as e:
        return _bad(e.text, 404)
    item = state.store.deliver(folder, raw)
    return web.json_response(
        {"item_id": item.id, "changekey": item.changekey, "folder_id": folder.id}
    )


async def list_items(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        folder = state.folder(request.query.get("mailbox"), request.query.get("folder", "Inbox"))
    except StoreError as e:
        return _bad(e.text, 404)
    items = [item_summary(item) for item in folder.items.values()]
    return web.json_response({"folder_id": folder.id, "items": items})


async def create_folders(request: web.Request) -> web.Response:
    state = _state(request)
    path = request.query.get("path")
    if not path:
        return _bad("path is required")
    try:
        folder_ids = state.ensure_folder(path, request.query.get("mailbox"))
    except StoreError as e:
        return _bad(e.text, 404)
    return web.json_response({"folder_ids": folder_ids})


async def sim_state(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(_state(request).snapshot()))


async def fault_status(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(_state(request).faults.status()))


async def fault_busy(request: web.Request) -> web.Response:
    faults = _state(request).faults
    faults.set_busy(_int(request, "count", 1) or 0, _int(request, "back_off_ms", 1500) or 0)
    return web.json_response({"busy_remaining": faults.busy_remaining})


async def fault_latency(request: web.Request) -> web.Response:
    faults = _state(request).faults
    if "ms" in request.query:
        faults.set_latency(_float(request, "ms", 0.0))
    else:
        min_ms = _float(request, "min_ms", 0.0)
        faults.set_latency(min_ms, _float(request, "max_ms", min_ms))
    return web.json_response({"min_ms": faults.latency_min_ms, "max_ms": faults.latency_max_ms})


async def fault_drop_streams(request: web.Request) -> web.Response:
    return web.json_response({"dropped": _state(request).streams.drop_all()})


async def fault_expire_subscriptions(request: web.Request) -> web.Response:
    code = request.query.get("code", "ErrorSubscriptionNotFound")
    if code not in SUBSCRIPTION_CODES:
        return _bad(f"code must be one of {SUBSCRIPTION_CODES}")
    ids = request.query.getall("id", []) or None
    expired = _state(request).subscriptions.expire(ids, code)
    return web.json_response({"expired": expired})


async def fault_lose_events(request: web.Request) -> web.Response:
    return web.json_response({"lost": _state(request).subscriptions.lose_events()})


async def fault_max_connections(request: web.Request) -> web.Response:
    faults = _state(request).faults
    faults.max_connections = _int(request, "limit", None)
    return web.json_response({"max_connections": faults.max_connections})


async def fault_fail_items(request: web.Request) -> web.Response:
    ops = request.query.getall("op", ["MoveItem", "DeleteItem"])
    if any(op not in ITEM_FAULT_OPS for op in ops):
        return _bad(f"op must be among {ITEM_FAULT_OPS}")
    ids = request.query.getall("id", [])
    if not ids:
        return _bad("id is required")
    code = request.query.get("code", "ErrorItemNotFound")
    times = _int(request, "times", None)
    _state(request).faults.fail_items(ops, ids, code, times)
    return web.json_response({"ops": ops, "ids": ids, "code": code, "times": times})


async def fault_fail_requests(request: web.Request) -> web.Response:
    code = request.query.get("code", "")
    if not code.startswith("Error"):
        return _bad("code must be an EWS ResponseCode (Error...)")
    ops = request.query.getall("op", []) or ["*"]
    times = _int(request, "times", None) if "times" in request.query else 1
    back_off_ms = _int(request, "back_off_ms", None)
    _state(request).faults.fail_requests(ops, code, times, back_off_ms)
    return web.json_response({"ops": ops, "code": code, "times": times, "back_off_ms": back_off_ms})


async def fault_http_error(request: web.Request) -> web.Response:
    status = _int(request, "status", 503) or 503
    if status not in (429, 503):
        return _bad("status must be 503 or 429")
    count = _int(request, "count", 1) or 0
    retry_after = _int(request, "retry_after", None)
    _state(request).faults.set_http_error(status, count, retry_after)
    return web.json_response({"status": status, "count": count, "retry_after": retry_after})


async def fault_half_open_streams(request: web.Request) -> web.Response:
    faults = _state(request).faults
    faults.half_open_streams = _int(request, "count", 1) or 0
    return web.json_response({"half_open_streams": faults.half_open_streams})


async def fault_subscription_limit(request: web.Request) -> web.Response:
    faults = _state(request).faults
    faults.subscription_limit = _int(request, "limit", None)
    return web.json_response({"subscription_limit": faults.subscription_limit})


async def fault_public_routing(request: web.Request) -> web.Response:
    faults = _state(request).faults
    faults.require_public_routing = request.query.get("required", "true").lower() == "true"
    return web.json_response({"require_public_routing": faults.require_public_routing})


async def fault_stream_limit(request: web.Request) -> web.Response:
    faults = _state(request).faults
    faults.stream_limit = _int(request, "limit", None)
    return web.json_response({"stream_limit": faults.stream_limit})


async def fault_fail_get_items(request: web.Request) -> web.Response:
    ids = request.query.getall("id", [])
    if not ids:
        return _bad("id is required")
    code = request.query.get("code", "ErrorItemNotFound")
    times = _int(request, "times", None)
    _state(request).faults.fail_items(["GetItem"], ids, code, times)
    return web.json_response({"ops": ["GetItem"], "ids": ids, "code": code, "times": times})


async def fault_reset(request: web.Request) -> web.Response:
    _state(request).faults.reset()
    return web.json_response({"reset": True})


def add_sideband_routes(app: web.Application) -> None:
    app.router.add_post("/_sim/deliver", deliver)
    app.router.add_get("/_sim/items", list_items)
    app.router.add_post("/_sim/folders", create_folders)
    app.router.add_get("/_sim/state", sim_state)
    app.router.add_get("/_sim/faults", fault_status)
    app.router.add_post("/_sim/faults/busy", fault_busy)
    app.router.add_post("/_sim/faults/latency", fault_latency)
    app.router.add_post("/_sim/faults/drop-streams", fault_drop_streams)
    app.router.add_post("/_sim/faults/expire-subscriptions", fault_expire_subscriptions)
    app.router.add_post("/_sim/faults/lose-events", fault_lose_events)
    app.router.add_post("/_sim/faults/max-connections", fault_max_connections)
    app.router.add_post("/_sim/faults/fail-items", fault_fail_items)
    app.router.add_post("/_sim/faults/fail-requests", fault_fail_requests)
    app.router.add_post("/_sim/faults/http-error", fault_http_error)
    app.router.add_post("/_sim/faults/half-open-streams", fault_half_open_streams)
    app.router.add_post("/_sim/faults/subscription-limit", fault_subscription_limit)
    app.router.add_post("/_sim/faults/public-routing", fault_public_routing)
    app.router.add_post("/_sim/faults/stream-limit", fault_stream_limit)
    app.router.add_post("/_sim/faults/fail-get-items", fault_fail_get_items)
    app.router.add_post("/_sim/faults/reset", fault_reset)
