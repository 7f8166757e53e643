"""Change notifications for the Graph source (when EMAILLOG_GRAPH_NOTIFICATION_URL is set).

    Notifications(http, settings, folder resource, events)
      start()      listen on EMAILLOG_GRAPH_NOTIFICATION_LISTEN, then subscribe (Graph
                   validates the URL first: the listener echoes `validationToken`)
      keep()       renew the subscription at half its life, or create it again when Graph
                   lost it (404) or removed it (lifecycle `subscriptionRemoved`)
      wake         set by every notification whose clientState is ours; the delta poller
                   waits on it instead of sleeping the whole poll interval

Notifications only wake the delta query, which stays the one source of truth: a lost or
forged notification can delay an arrival, never lose or invent one. The listener answers
202 at once (Graph wants an answer within 3 s) and never reads the message itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from pipeline.config import GraphSettings
from pipeline.errors import ItemGone, Retryable, SourceUnavailable
from pipeline.logs import get_logger
from pipeline.sources import SourceEvents
from pipeline.sources.graph_http import GraphHttp

log = get_logger(__name__)


class Notifications:
    def __init__(
        self, http: GraphHttp, settings: GraphSettings, resource: str, events: SourceEvents
    ) -> None:
        self.http = http
        self.settings = settings
        self.resource = resource
        self.events = events
        self.client_state = secrets.token_urlsafe(32)  # Graph echoes it; forged ones lack it
        self.wake = asyncio.Event()
        self.subscription_id: str | None = None
        self.renew_at = 0.0  # time.monotonic()
        self.forged = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._runner is None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._receive)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await self._runner.setup()
            host, _, port = self.settings.notification_listen.rpartition(":")
            try:
                await web.TCPSite(self._runner, host or "0.0.0.0", int(port)).start()
            except OSError as exc:
                raise SourceUnavailable(f"cannot listen for notifications: {exc}") from exc
        await self.keep()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if self.subscription_id is not None and runner is not None:
            # Best effort: an unused subscription expires by itself.
            with contextlib.suppress(Retryable, ItemGone):
                await self.http.call("DELETE", f"/subscriptions/{self.subscription_id}")
        if runner is not None:
            await runner.cleanup()

    @property
    def live(self) -> bool:
        return self.subscription_id is not None

    def _expiry(self) -> str:
        when = datetime.now(UTC) + timedelta(minutes=self.settings.subscription_minutes)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def keep(self) -> None:
        """Subscribe, or renew when half the lifetime has passed; 404 -> subscribe again."""
        if self.subscription_id is not None and time.monotonic() < self.renew_at:
            return
        if self.subscription_id is not None:
            try:
                url = f"/subscriptions/{self.subscription_id}"
                await self.http.call("PATCH", url, {"expirationDateTime": self._expiry()})
                self._renewed()
                return
            except ItemGone:
                self.subscription_id = None
        body = {
            "changeType": "created",
            "notificationUrl": self.settings.notification_url,
            "lifecycleNotificationUrl": self.settings.notification_url,
            "resource": self.resource,
            "expirationDateTime": self._expiry(),
            "clientState": self.client_state,
        }
        _, _, answer = await self.http.call("POST", "/subscriptions", body, "subscribe")
        self.subscription_id = str(answer["id"])
        self._renewed()

    def _renewed(self) -> None:
        half = self.settings.subscription_minutes * 60 / 2
        self.renew_at = time.monotonic() + half

    async def _receive(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:  # the handshake: the decoded token back, as plain text
            return web.Response(text=token, content_type="text/plain")
        try:
            body: Any = await request.json()
        except ValueError:
            return web.Response(status=400)
        for notification in body.get("value", []) if isinstance(body, dict) else []:
            self._one(notification)
        return web.Response(status=202)

    def _one(self, notification: Any) -> None:
        if not isinstance(notification, dict):
            return
        if notification.get("clientState") != self.client_state:
            self.forged += 1
            log.warning("graph notification with a wrong clientState ignored")
            return
        if notification.get("lifecycleEvent") == "subscriptionRemoved":
            self.subscription_id = None  # keep() subscribes again
        self.wake.set()  # created, missed, reauthorizationRequired: run delta now
