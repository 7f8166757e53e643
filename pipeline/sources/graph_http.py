"""HTTP to Microsoft Graph for the Graph source: app-only tokens, limits, back-off, $batch.

    GraphHttp(settings, events)
      token      client-credentials grant at {authority}/{tenant}/oauth2/v2.0/token,
                 kept until a minute before it expires, fetched again after a 401
      limits     at most `MAX_CONCURRENT_REQUESTS` (Outlook's 4 per app and mailbox) in
                 flight, a $batch counting as the parts it runs at once (`Slots`); every
                 request waits for the shared back-off gate (ews_gate.py: one per server
                 for the process), which a 429/503 with Retry-After holds
      call()     one request -> (status, headers, JSON body); raises for the whole call
      batch()    up to 20 requests per $batch POST -> one (status, headers, body) per
                 request, in order; a throttled part throttles the whole call (Graph's advice:
                 retry the failed parts after the longest Retry-After)

Plain aiohttp, not msgraph-sdk: the README gives the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp

from pipeline.config import GraphSettings
from pipeline.errors import SourceUnavailable, Throttled
from pipeline.sources import SourceEvents
from pipeline.sources.ews_gate import gate_for
from pipeline.sources.graph_assertion import client_assertion
from pipeline.sources.graph_convert import retry_after, status_error

#: Outlook's limit: 4 concurrent requests per app and mailbox.
MAX_CONCURRENT_REQUESTS = 4
#: JSON batching takes at most 20 requests per batch.
MAX_BATCH_REQUESTS = 20
SCOPE = "https://graph.microsoft.com/.default"
#: RFC 7523's client assertion type (certificate credentials).
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: A token is renewed this long before Entra ID says it expires.
TOKEN_MARGIN_SECONDS = 60.0

Answer = tuple[int, Mapping[str, str], Any]


class GraphHttp:
    def __init__(self, settings: GraphSettings, events: SourceEvents, timeout_seconds: float):
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.events = events
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.gate = gate_for(self.base)
        self._slots = Slots(MAX_CONCURRENT_REQUESTS)
        self._session: aiohttp.ClientSession | None = None
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)
        self._token_lock = asyncio.Lock()

    @property
    def token_url(self) -> str:
        authority = self.settings.authority_url.rstrip("/")
        return f"{authority}/{self.settings.tenant_id}/oauth2/v2.0/token"

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        await self._bearer(renew=True)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise SourceUnavailable("Graph source is closed")
        return self._session

    async def _bearer(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            if not renew and self._token and self._token[1] > time.monotonic():
                return self._token[0]
            form = {
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "scope": SCOPE,
                **self._credentials(),
            }
            try:
                async with self._open_session().post(self.token_url, data=form) as response:
                    body = await response.json(content_type=None)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                raise SourceUnavailable(f"Graph token endpoint: {exc!r}") from exc
            if response.status != 200 or "access_token" not in body:
                error = body.get("error", "") if isinstance(body, dict) else ""
                raise SourceUnavailable(f"Graph token refused: {response.status} {error}")
            lifetime = float(body.get("expires_in", 3599)) - TOKEN_MARGIN_SECONDS
            self._token = (str(body["access_token"]), time.monotonic() + max(lifetime, 0.0))
            return self._token[0]

    def _credentials(self) -> dict[str, str]:
        """The client secret, or a signed assertion from EMAILLOG_GRAPH_CERTIFICATE_FILE."""
        settings = self.settings
        if settings.certificate_file:
            assertion = client_assertion(
                settings.certificate_file, settings.client_id, self.token_url
            )
            return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        return {"client_secret": settings.client_secret}

    async def _wait_gate(self) -> None:
        while (left := self.gate.remaining()) > 0:
            await asyncio.sleep(min(left, 1.0))

    async def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        prefer: str | None = None,
        weight: int = 1,
        raw: bool = False,
    ) -> Answer:
        """One HTTP exchange with a valid token (renewed once on a 401). `weight`: the
        mailbox's concurrency slots it takes (a $batch runs up to 4 parts at once). `raw`:
        a 2xx answer's body is the bytes as sent (a message's $value), not JSON."""
        url = url if url.startswith("http") else self.base + url
        for attempt in (1, 2):
            token = await self._bearer(renew=attempt == 2)
            headers = {"Authorization": f"Bearer {token}"}
            if prefer:
                headers["Prefer"] = prefer
            await self._wait_gate()
            try:
                async with (
                    self._slots.take(weight),
                    self._open_session().request(method, url, json=body, headers=headers) as r,
                ):
                    text = await r.read()
                    status, answer_headers = r.status, dict(r.headers)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise SourceUnavailable(f"Graph {method} failed: {exc!r}") from exc
            if status != 401:
                break
        if raw and status < 300:
            return status, answer_headers, text
        payload = _json(text) if text else None
        return status, answer_headers, payload

    async def call(
        self, method: str, url: str, body: Any = None, what: str = "", weight: int = 1
    ) -> Answer:
        """One request; a 2xx answer, or the whole call raises (see graph_convert)."""
        status, headers, payload = await self.send(method, url, body, weight=weight)
        if status >= 300:
            raise self.note(status_error(status, headers, payload, what or method))
        return status, headers, payload

    def note(self, exc: Exception) -> Exception:
        """Hold the back-off gate for a Throttled and tell the events; `exc` back."""
        if isinstance(exc, Throttled):
            self.gate.hold(exc.retry_after)
            self.events.on_throttled(exc.retry_after)
        return exc

    async def batch(self, requests: Sequence[dict[str, Any]], what: str) -> list[Answer]:
        """Each request ({"method", "url", "body"?}) answered, in order; parts run in
        $batch POSTs of at most 20, up to 4 POSTs at once."""
        chunks = [
            requests[i : i + MAX_BATCH_REQUESTS]
            for i in range(0, len(requests), MAX_BATCH_REQUESTS)
        ]
        answers = await asyncio.gather(*(self._batch(chunk, what) for chunk in chunks))
        return [answer for chunk in answers for answer in chunk]

    async def _batch(self, requests: Sequence[dict[str, Any]], what: str) -> list[Answer]:
        parts = []
        for n, request in enumerate(requests):
            part = {"id": str(n), "method": request["method"], "url": request["url"]}
            if request.get("body") is not None:
                part["body"] = request["body"]
                part["headers"] = {"Content-Type": "application/json"}
            parts.append(part)
        weight = min(len(parts), MAX_CONCURRENT_REQUESTS)
        _, _, payload = await self.call("POST", "/$batch", {"requests": parts}, what, weight)
        found = {str(r.get("id")): r for r in (payload or {}).get("responses", [])}
        answers: list[Answer] = []
        for n in range(len(requests)):
            r = found.get(str(n), {"status": 500, "headers": {}, "body": None})
            answers.append((int(r.get("status", 500)), r.get("headers") or {}, r.get("body")))
        throttled = [(retry_after(h) or 0.0, s, h) for s, h, _ in answers if s in (429, 503)]
        if throttled:
            _, status, headers = max(throttled, key=lambda t: t[0])
            raise self.note(status_error(status, headers, None, what))
        return answers


class Slots:
    """Outlook's per-mailbox concurrency, counted as the server counts it: a request takes
    one slot, a $batch as many as it runs parts at once. Fair enough: waiters are woken in
    turn and each takes what it asked for once that much is free."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def take(self, count: int) -> AsyncIterator[None]:
        count = max(1, min(count, self.total))
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= count)
            self.free -= count
        try:
            yield
        finally:
            self.free += count
            async with self._changed:
                self._changed.notify_all()


def _json(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SourceUnavailable("Graph answered with a body that is not JSON") from exc
