"""The Graph face's part of the /_sim/ side channel (for `exchange-sim` run on its own;
tests use `GraphControl` directly). Query parameters, JSON answers:

    POST /_sim/graph/apps?client_id=&secret=                register an app
    POST /_sim/graph/throttle?count=&retry_after=&status=   the next requests get 429/503
    POST /_sim/graph/expire-delta                           every delta token -> 410
    POST /_sim/graph/drop-notifications?count=              lose change notifications
    POST /_sim/graph/remove-subscriptions                   subscriptionRemoved to all
    POST /_sim/graph/concurrency?limit=                     per app and mailbox ("" = off)
    POST /_sim/graph/reset                                  disarm faults
    GET  /_sim/graph/state                                  counters (GraphControl.counters)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from exchange_sim.graph.control import GraphControl
from exchange_sim.state import STATE

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _control(request: web.Request) -> GraphControl:
    return GraphControl(request.app[STATE])


def _action(act: Callable[[GraphControl, web.Request], object]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        try:
            result = act(_control(request), request)
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        return web.json_response({"ok": True, "result": result})

    return handler


def _throttle(control: GraphControl, request: web.Request) -> None:
    query = request.query
    retry = query.get("retry_after", "1")
    control.throttle(
        int(query.get("count", "1")),
        retry_after_seconds=float(retry) if retry else None,
        status=int(query.get("status", "429")),
    )


def _concurrency(control: GraphControl, request: web.Request) -> None:
    limit = request.query.get("limit", "")
    control.set_concurrency_limit(int(limit) if limit else None)


def add_graph_sideband_routes(app: web.Application) -> None:
    routes: dict[str, Callable[[GraphControl, web.Request], object]] = {
        "apps": lambda c, r: c.register_app(r.query["client_id"], r.query["secret"]),
        "throttle": _throttle,
        "expire-delta": lambda c, r: c.expire_delta_tokens(),
        "drop-notifications": lambda c, r: c.drop_notifications(int(r.query["count"])),
        "remove-subscriptions": lambda c, r: c.remove_subscriptions(),
        "concurrency": _concurrency,
        "reset": lambda c, r: c.reset_faults(),
    }
    for name, act in routes.items():
        app.router.add_post(f"/_sim/graph/{name}", _action(act))
    app.router.add_get("/_sim/graph/state", _action(lambda c, r: c.counters()))
