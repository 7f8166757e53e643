"""HTTP: /metrics (Prometheus), /livez (alias /healthz) and /readyz, on aiohttp.

/livez answers while the event loop runs: no dependency checks, so a database blip never
turns into a restart storm. /readyz answers 200 only when every check passes (database
reachable within a short timeout, source subscribed, service started and not shutting
down, the e-mail interaction template in the directory), 503 otherwise; both bodies are
JSON, and /readyz lists in `problems` why a running service takes no mail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.logs import get_logger
from pipeline.metrics import Metrics

log = get_logger(__name__)

Readiness = Callable[[], Awaitable[dict[str, bool]]]
#: Why the service will not take mail although it runs (e.g. a missing e-mail template).
Problems = Callable[[], Sequence[str]]


def build_app(
    metrics: Metrics, readiness: Readiness, problems: Problems = lambda: ()
) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness()
        ready = all(checks.values())
        return web.json_response(
            {
                "status": "ready" if ready else "not ready",
                "checks": checks,
                "problems": list(problems()),
            },
            status=200 if ready else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/livez", livez)
    app.router.add_get("/healthz", livez)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_http(app: web.Application, *, host: str, port: int) -> None:
    """Serve `app` until cancelled."""
    runner = web.AppRunner(app, access_log=None)  # one log line per scrape helps nobody
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("http listening", extra={"fields": {"host": host, "port": port}})
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
