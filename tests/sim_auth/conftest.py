"""Fixtures for the simulator's auth tests: a tiny aiohttp app (auth middleware, token route and
a dummy /EWS/Exchange.asmx answering a fixed SOAP response) served on the session loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import exchangelib
import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware
from exchangelib import Identity, OAuth2Credentials

from exchange_sim.auth import EWS_USER, AuthConfig, add_token_route, auth_middleware

# What Exchange answers a ResolveNames that matches nobody; exchangelib returns the error inline.
RESOLVE_NAMES_NO_RESULTS = b"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507"
      MinorBuildNumber="6" Version="V2017_07_11"
      xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/>
  </s:Header>
  <s:Body>
    <m:ResolveNamesResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
      xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
      <m:ResponseMessages>
        <m:ResolveNamesResponseMessage ResponseClass="Error">
          <m:MessageText>No results were found.</m:MessageText>
          <m:ResponseCode>ErrorNameResolutionNoResults</m:ResponseCode>
          <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
        </m:ResolveNamesResponseMessage>
      </m:ResponseMessages>
    </m:ResolveNamesResponse>
  </s:Body>
</s:Envelope>
"""

USERS = {
    "EXAMPLE\\alice": "Alice-pw1",
    "bob@example.com": "Bob pw 2 ü",
    "carol": "carol-pw3",
}


@dataclass
class Served:
    base: str
    ews_users: list[str | None] = field(default_factory=list)

    @property
    def ews_url(self) -> str:
        return self.base + "/EWS/Exchange.asmx"

    @property
    def token_url(self) -> str:
        return self.base + "/tenant-1/oauth2/v2.0/token"


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a dummy EWS app protected by the auth middleware for a given AuthConfig."""
    runners: list[web.AppRunner] = []

    async def start(config: AuthConfig, middleware: Middleware | None = None) -> Served:
        app = web.Application(middlewares=[middleware or auth_middleware(config)])
        served = Served(base="")

        async def ews(request: web.Request) -> web.Response:
            served.ews_users.append(request[EWS_USER])
            await request.read()
            return web.Response(
                body=RESOLVE_NAMES_NO_RESULTS, content_type="text/xml", charset="utf-8"
            )

        async def ping(request: web.Request) -> web.Response:
            return web.Response(text="pong")

        app.router.add_post("/EWS/Exchange.asmx", ews)
        app.router.add_get("/_sim/ping", ping)
        add_token_route(app, config)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        served.base = f"http://{host}:{port}"
        return served

    yield start
    exchangelib.close_connections()
    for runner in runners:
        await runner.cleanup()


def local_oauth2_credentials(served: Served, client_id: str, secret: str) -> OAuth2Credentials:
    """exchangelib OAuth2Credentials whose token URL is the served token endpoint
    (plain http: the test must set OAUTHLIB_INSECURE_TRANSPORT=1)."""

    class LocalOAuth2Credentials(OAuth2Credentials):  # type: ignore[misc]  # untyped library
        @property
        def token_url(self) -> str:
            return served.token_url

    return LocalOAuth2Credentials(
        client_id=client_id,
        client_secret=secret,
        tenant_id="tenant-1",
        identity=Identity(primary_smtp_address="queue@example.com"),
    )
