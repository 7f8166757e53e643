"""The REST API under `/api/v1` (issue 13); its OpenAPI document is in `openapi.py`.

    GET /api/v1/entries                        newest first, filtered, keyset pages
    GET /api/v1/entries?after_entry_no=N       ascending, for followers; wait_seconds long-polls
    GET /api/v1/entries/{entry_no}
    GET /api/v1/stored-messages/{id}/mime      message/rfc822, the stored copy (access recorded)
    GET /api/v1/outcomes                       messages per outcome per hour/day (administrators)
    GET /api/v1/openapi.json

Authentication is auth.py's middleware (401 before a handler runs). Every answer is JSON
except the MIME; a bad parameter is a 400 naming it, never a traceback. Numbers of money and
time (`cost_lcy`, `duration_min`) are decimal strings, exact as stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pipeline.errors import InputError, ItemGone, Retryable, Throttled
from pipeline.logs import get_logger
from pipeline.store import entries as store
from pipeline.store.entries import Entry
from pipeline.web import api_params as params
from pipeline.web.auth import principal, require_admin
from pipeline.web.deps import WebDeps
from pipeline.web.openapi import openapi_document

log = get_logger(__name__)

PREFIX = "/api/v1"
#: How often a long-poll asks the database again; no connection is held in between.
FOLLOW_POLL_SECONDS = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def json_errors(handler: Handler) -> Handler:
    """Bad input -> 400, a refused administrator -> 403, anything unexpected -> 500: JSON."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InputError as exc:
            return error(400, str(exc))
        except web.HTTPForbidden:
            return error(403, "administrators only")
        except web.HTTPException:
            raise
        except Exception:
            # The path only: query strings may hold names (privacy).
            log.exception("API request failed", extra={"fields": {"path": request.path}})
            return error(500, "internal error")

    return wrapped


def entry_json(entry: Entry, base_url: str) -> dict[str, Any]:
    sm = entry.stored_message
    return {
        "entry_no": entry.entry_no,
        "contact_no": entry.contact_no,
        "contact_company_no": entry.contact_company_no,
        "contact_alt_address_code": entry.contact_alt_address_code,
        "salesperson_code": entry.salesperson_code,
        "information_flow": entry.information_flow,
        "initiated_by": entry.initiated_by,
        "description": entry.description,
        "subject": entry.subject,
        "interaction_at": entry.interaction_at.isoformat() if entry.interaction_at else None,
        "template_code": entry.template_code,
        "cost_lcy": str(entry.cost_lcy),
        "duration_min": str(entry.duration_min),
        "stored_message": {
            "id": sm.id,
            "internet_message_id": sm.internet_message_id,
            "web_link": sm.web_link,
            "mime_url": f"{base_url}{PREFIX}/stored-messages/{sm.id}/mime",
        },
    }


@dataclass(frozen=True, slots=True)
class Api:
    deps: WebDeps

    def base_url(self, request: web.Request) -> str:
        """EMAILLOG_UI_PUBLIC_URL when set (behind a proxy), else what the client asked."""
        public = self.deps.settings.ui.public_url.rstrip("/")
        return public or f"{request.scheme}://{request.host}"

    async def entries(self, request: web.Request) -> web.Response:
        if request.query.get("after_entry_no", "") != "":
            return await self.follow(request)
        ask = params.list_request(request.query)
        page = await store.list_entries(
            self.deps.pool, ask.query, limit=ask.limit, cursor=ask.cursor
        )
        base = self.base_url(request)
        return web.json_response(
            {
                "entries": [entry_json(e, base) for e in page.entries],
                "next_cursor": page.next_cursor,
            }
        )

    async def follow(self, request: web.Request) -> web.Response:
        cap = self.deps.settings.ui.api_max_wait_seconds
        ask = params.follow_request(request.query, max_wait_seconds=cap)
        deadline = time.monotonic() + ask.wait_seconds
        while True:
            found = await store.entries_after(self.deps.pool, ask.after_entry_no, limit=ask.limit)
            left = deadline - time.monotonic()
            if found or left <= 0:
                break
            # The journal sends no NOTIFY for new entries: ask again shortly, holding no
            # pool connection while asleep.
            await asyncio.sleep(min(FOLLOW_POLL_SECONDS, left))
        base = self.base_url(request)
        return web.json_response(
            {
                "entries": [entry_json(e, base) for e in found],
                "next_after_entry_no": max((e.entry_no for e in found), default=ask.after_entry_no),
            }
        )

    async def entry(self, request: web.Request) -> web.Response:
        entry_no = params.integer("entry_no", request.match_info["entry_no"], low=1)
        found = await store.get_entry(self.deps.pool, entry_no)
        if found is None:
            return error(404, f"no entry {entry_no}")
        return web.json_response(entry_json(found, self.base_url(request)))

    async def mime(self, request: web.Request) -> web.Response:
        stored_id = params.integer("id", request.match_info["id"], low=1)
        stored = await store.get_stored(self.deps.pool, stored_id)
        if stored is None:
            return error(404, f"no stored message {stored_id}")
        try:
            body = await self.deps.fetch_mime(stored.storage_item_id, stored.internet_message_id)
        except ItemGone:
            return error(404, f"stored message {stored_id} is no longer in the storage folder")
        except Retryable as exc:
            wait = exc.retry_after if isinstance(exc, Throttled) else 5.0
            retry = {"Retry-After": str(max(1, round(wait)))}
            return error(503, "the mail server cannot be asked right now", retry)
        # Recorded (committed) before a byte leaves: a download that fails after this point
        # is still on record, one that was never attempted is not.
        who = principal(request).name
        await store.record_access(
            self.deps.pool, who=who, stored_message_id=stored_id, action="download"
        )
        log.info("stored message downloaded", extra={"fields": {"stored_message_id": stored_id}})
        return web.Response(
            body=body,
            content_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="entry-{stored_id}.eml"'},
        )

    async def outcomes(self, request: web.Request) -> web.Response:
        require_admin(request)
        ask = params.outcome_request(request.query, now=dt.datetime.now(dt.UTC))
        buckets = await store.outcome_counts(
            self.deps.pool, since=ask.since, until=ask.until, interval=ask.interval
        )
        return web.json_response(
            {
                "interval": ask.interval,
                "since": ask.since.isoformat(),
                "until": ask.until.isoformat(),
                "buckets": [{"start": b.start.isoformat(), "counts": b.counts} for b in buckets],
            }
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.base_url(request)))

    async def not_found(self, request: web.Request) -> web.Response:
        return error(404, "no such API path")


#: (path, handler name): the routes, also what openapi.py must describe.
ROUTES = (
    ("/entries", "entries"),
    ("/entries/{entry_no}", "entry"),
    ("/stored-messages/{id}/mime", "mime"),
    ("/outcomes", "outcomes"),
    ("/openapi.json", "openapi"),
)


def add_api_routes(app: web.Application, deps: WebDeps) -> None:
    api = Api(deps)
    for path, name in ROUTES:
        app.router.add_get(PREFIX + path, json_errors(getattr(api, name)))
    # Anything else under /api/ answers JSON too (not the pages' HTML 404).
    app.router.add_get("/api/{tail:.*}", json_errors(api.not_found))
