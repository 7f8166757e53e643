"""OpenID Connect sign-in end to end against a real provider: npm's oidc-provider (OpenID
Certified, pinned in tests/web/oidc/package-lock.json; `make oidc-provider` installs it),
started here with node, one confidential client that must use PKCE, and two accounts.

An aiohttp client with a cookie jar plays the browser: the app sends it to the provider,
it signs in at the provider's login step, the provider sends it back with a code, and the
app's session then opens a protected page. A forged or replayed state, a wrong nonce and
a wrong PKCE verifier are refused."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from pipeline.config import UiAuth, UiSettings
from pipeline.web.sessions import Signer
from tests.web.auth_kit import SECRET, build_app

HARNESS = Path(__file__).resolve().parent / "oidc"
CLIENT_ID, CLIENT_SECRET = "emaillog-test", "client-secret-for-tests-only"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Provider:
    issuer: str
    app_port: int

    @property
    def app_base(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    node = shutil.which("node")
    if node is None or not (HARNESS / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the OIDC provider is not installed: run `make oidc-provider` (node + npm ci)")
    port, app_port = free_port(), free_port()
    config = {
        "port": port,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": f"http://127.0.0.1:{app_port}/auth/oidc/callback",
    }
    process = await asyncio.create_subprocess_exec(
        node,
        "provider.mjs",
        json.dumps(config),
        cwd=HARNESS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert line.startswith(b"listening "), line
        yield Provider(line.decode().split()[1], app_port)
    finally:
        process.terminate()
        await process.wait()


def oidc_settings(provider: Provider, **overrides: Any) -> UiSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "auth": UiAuth.OIDC,
        "oidc_issuer": provider.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_admin_value": "emaillog-admins",
        "public_url": provider.app_base,
        "session_secret": SECRET,
    }
    return UiSettings(**(values | overrides))


@pytest.fixture
async def app_for(provider: Provider) -> AsyncIterator[Any]:
    """Start the app with some settings: `await app_for(**overrides)`."""
    servers: list[TestServer] = []

    async def start(**overrides: Any) -> None:
        server = TestServer(
            build_app(oidc_settings(provider, **overrides)),
            host="127.0.0.1",
            port=provider.app_port,
        )
        await server.start_server()
        servers.append(server)

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def start_login(browser: aiohttp.ClientSession, provider: Provider) -> tuple[str, str]:
    """Ask the app to sign in: (the provider's authorization URL, the app's oidc cookie)."""
    url = provider.app_base + "/auth/oidc/login?next=/whoami%3Fpage%3D2"
    async with browser.get(url, allow_redirects=False) as response:
        assert response.status == 303
        assert "HttpOnly" in response.headers["Set-Cookie"]
        return response.headers["Location"], response.cookies["emaillog_oidc"].value


async def sign_in_at_provider(
    browser: aiohttp.ClientSession, provider: Provider, authorize_url: str, account: str
) -> str:
    """Follow the provider until it sends the browser back; return that callback URL."""
    url = authorize_url
    for _ in range(12):
        if url.startswith(provider.app_base):
            return url
        async with browser.get(url, allow_redirects=False) as response:
            if response.status in (302, 303):
                url = urljoin(url, response.headers["Location"])
                continue
            assert response.status == 200 and "/interaction/" in url, await response.text()
        login = url.rstrip("/") + "/login"
        async with browser.post(login, data={"login": account}, allow_redirects=False) as done:
            assert done.status == 303, await done.text()
            url = urljoin(url, done.headers["Location"])
    raise AssertionError("the provider never sent the browser back")


async def whoami(browser: aiohttp.ClientSession, provider: Provider) -> Any:
    async with browser.get(provider.app_base + "/whoami", allow_redirects=False) as response:
        return await response.json() if response.status == 200 else response.status


async def test_sign_in_with_the_provider(
    provider: Provider,
    app_for: Any,
    browser: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="emaillog")
    await app_for()
    assert await whoami(browser, provider) == 303
    async with browser.get(provider.app_base + "/signin?next=/whoami") as page:
        assert 'href="/auth/oidc/login?next=/whoami"' in await page.text()

    authorize, _ = await start_login(browser, provider)
    query = URL(authorize).query
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == provider.app_base + "/auth/oidc/callback"
    assert {"state", "nonce", "code_challenge"} <= set(query)
    callback = await sign_in_at_provider(browser, provider, authorize, "alice")
    async with browser.get(callback, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/whoami?page=2"
        session = [c for c in response.headers.getall("Set-Cookie") if "emaillog_session" in c]
        assert "HttpOnly" in session[0] and "SameSite=Lax" in session[0]
    assert await whoami(browser, provider) == {
        "name": "alice@example.com",
        "admin": True,  # groups: ["emaillog-admins", ...]
        "via": "oidc",
    }
    assert "code=" not in caplog.text and "state=" not in caplog.text


async def test_admins_by_claim_or_by_list(
    provider: Provider, app_for: Any, browser: aiohttp.ClientSession
) -> None:
    await app_for(admins=("bob@example.com",))
    for account in ("bob", "alice"):
        authorize, _ = await start_login(browser, provider)
        callback = await sign_in_at_provider(browser, provider, authorize, account)
        async with browser.get(callback, allow_redirects=False) as response:
            assert response.status == 303
        assert (await whoami(browser, provider))["admin"] is True


async def test_no_admin_without_the_claim(
    provider: Provider, app_for: Any, browser: aiohttp.ClientSession
) -> None:
    await app_for()
    authorize, _ = await start_login(browser, provider)
    callback = await sign_in_at_provider(browser, provider, authorize, "bob")
    async with browser.get(callback, allow_redirects=False) as response:
        assert response.status == 303
    assert await whoami(browser, provider) == {
        "name": "bob@example.com",
        "admin": False,
        "via": "oidc",
    }


async def test_a_tampered_state_is_refused(
    provider: Provider, app_for: Any, browser: aiohttp.ClientSession
) -> None:
    await app_for()
    authorize, _ = await start_login(browser, provider)
    callback = URL(await sign_in_at_provider(browser, provider, authorize, "alice"))
    forged = callback.update_query(state=callback.query["state"][::-1])
    async with browser.get(forged, allow_redirects=False) as response:
        assert response.status == 400
        assert "emaillog_session" not in response.cookies
    assert await whoami(browser, provider) == 303


async def test_a_replayed_callback_is_refused(
    provider: Provider, app_for: Any, browser: aiohttp.ClientSession
) -> None:
    await app_for()
    authorize, pending_cookie = await start_login(browser, provider)
    callback = await sign_in_at_provider(browser, provider, authorize, "alice")
    async with browser.get(callback, allow_redirects=False) as response:
        assert response.status == 303
    # The same browser again: the sign-in in progress was used up.
    async with browser.get(callback, allow_redirects=False) as again:
        assert again.status == 400
    # Another browser (an attacker's, with a copy of the cookie too): the code is spent.
    headers = {"Cookie": f"emaillog_oidc={pending_cookie}"}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other,
        other.get(callback, headers=headers, allow_redirects=False) as replay,
    ):
        assert replay.status == 403
        assert "emaillog_session" not in replay.cookies


async def callback_with_pending(callback: str, pending: dict[str, Any]) -> aiohttp.ClientResponse:
    """The provider's callback, arriving with a sign-in cookie we forged (we know the key)."""
    cookie = Signer(SECRET).sign("oidc", pending, seconds=600)
    headers = {"Cookie": f"emaillog_oidc={cookie}"}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other,
        other.get(callback, headers=headers, allow_redirects=False) as response,
    ):
        await response.read()
        return response


async def test_a_wrong_nonce_is_refused(
    provider: Provider,
    app_for: Any,
    browser: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="emaillog")
    await app_for()
    authorize, cookie = await start_login(browser, provider)
    callback = await sign_in_at_provider(browser, provider, authorize, "alice")
    pending = Signer(SECRET).unsign("oidc", cookie)
    assert pending is not None
    # Right state and PKCE verifier, so the provider hands out the ID token; its nonce is
    # the one of the original request, not this one.
    response = await callback_with_pending(callback, {**pending, "n": "another-nonce"})
    assert response.status == 403
    assert "emaillog_session" not in response.cookies
    reasons = [getattr(r, "fields", {}).get("reason", "") for r in caplog.records]
    assert any("'nonce'" in reason for reason in reasons), reasons


async def test_a_wrong_pkce_verifier_is_refused(
    provider: Provider, app_for: Any, browser: aiohttp.ClientSession
) -> None:
    await app_for()
    authorize, cookie = await start_login(browser, provider)
    callback = await sign_in_at_provider(browser, provider, authorize, "alice")
    pending = Signer(SECRET).unsign("oidc", cookie)
    assert pending is not None
    response = await callback_with_pending(callback, {**pending, "v": "x" * 64})
    assert response.status == 403
