"""The web application: sign-in and security (auth.py), the REST API (api.py), the pages
(pages.py, ops_page.py) and the static assets, on one aiohttp app.

Pages are plain server-rendered HTML from Jinja2 templates shipped in the package (autoescape
on: a subject like `<script>` is shown, never run); no JavaScript, no CDN, so the strict
Content-Security-Policy of auth.py holds for every page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from pipeline.logs import get_logger
from pipeline.web import ops_page, pages
from pipeline.web.api import add_api_routes
from pipeline.web.auth import setup_auth
from pipeline.web.deps import WebDeps
from pipeline.web.render import DEPS, error_page

log = get_logger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Static assets change only with a release; a day of caching spares every page a request.
STATIC_CACHE_CONTROL = "public, max-age=86400"

#: Errors shown as a page: status -> (title, message when the handler gave none).
PAGE_ERRORS = {
    400: ("Bad request", "The address or form was not understood."),
    403: ("Forbidden", "This page is for administrators only."),
    404: ("Not found", "There is nothing at this address."),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def page_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors on pages become readable pages (the API answers JSON itself); never a
    traceback. Redirects and other non-error HTTP exceptions pass through."""
    if request.path.startswith(("/api/", "/static/")):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status not in PAGE_ERRORS:
            raise  # redirects, 401 (auth answers it), 405 with its Allow header
        title, message = PAGE_ERRORS[exc.status]
        # A handler's own words (e.g. require_admin's) beat the stock "403: Forbidden".
        own = exc.text and exc.text != f"{exc.status}: {exc.reason}" and exc.status != 404
        text = exc.text if own and exc.text else message
        return error_page(request, exc.status, title, text)
    except Exception:
        # Logged without the query string: it may hold names (privacy).
        log.exception("page failed", extra={"fields": {"path": request.path}})
        message = "Something went wrong on our side. Please try again."
        return error_page(request, 500, "Server error", message)


async def _cache_static(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/") and response.status == 200:
        response.headers["Cache-Control"] = STATIC_CACHE_CONTROL


def build_web_app(deps: WebDeps) -> web.Application:
    """The UI and `/api/v1` on one application."""
    app = web.Application()
    app[DEPS] = deps
    setup_auth(app, deps.settings.ui)
    # Innermost: auth answers unauthenticated requests before a page is tried.
    app.middlewares.append(page_errors)
    add_api_routes(app, deps)
    pages.add_page_routes(app)
    ops_page.add_ops_routes(app)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.on_response_prepare.append(_cache_static)
    return app


async def serve_web(deps: WebDeps) -> None:
    """Serve the UI and the API on EMAILLOG_UI_HOST:EMAILLOG_UI_PORT until cancelled."""
    ui = deps.settings.ui
    # No access log: request lines carry query strings, i.e. names and addresses (privacy).
    runner = web.AppRunner(build_web_app(deps), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, ui.host, ui.port)
        await site.start()
        log.info("ui listening", extra={"fields": {"host": ui.host, "port": ui.port}})
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
