"""A minimal application with the real `setup_auth` and a few routes that show who is
asking, for the sign-in tests (the real UI is built in app.py; auth must not depend on it)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.config import UiSettings
from pipeline.web.auth import csrf_token, principal, require_admin, setup_auth

SECRET = "s" * 40
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def tokens_file(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text if text is not None else f"# people\nalice:{ALICE}\n\nbob:{BOB}\n")
    return path


def token_settings(path: Path, **overrides: Any) -> UiSettings:
    values: dict[str, Any] = {
        "api_tokens_file": str(path),
        "admins": ("alice",),
        "session_secret": SECRET,
    }
    return UiSettings(**(values | overrides))


async def _whoami(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response({"name": who.name, "admin": who.is_admin, "via": who.via})


async def _admin(request: web.Request) -> web.Response:
    return web.json_response({"admin": require_admin(request).name})


async def _form(request: web.Request) -> web.Response:
    return web.Response(text=f'<input name="csrf_token" value="{csrf_token(request)}">')


async def _action(request: web.Request) -> web.Response:
    return web.Response(text="done")


def build_app(settings: UiSettings) -> web.Application:
    app = web.Application()
    setup_auth(app, settings)
    app.router.add_get("/whoami", _whoami)
    app.router.add_get("/api/v1/whoami", _whoami)
    app.router.add_get("/admin", _admin)
    app.router.add_get("/form", _form)
    app.router.add_post("/action", _action)
    return app


@asynccontextmanager
async def client_for(settings: UiSettings, **server: Any) -> AsyncIterator[TestClient[Any, Any]]:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with TestClient(TestServer(build_app(settings), **server), cookie_jar=jar) as client:
        yield client


async def signin_form_token(client: TestClient[Any, Any], next_path: str = "/") -> str:
    response = await client.get("/signin", params={"next": next_path})
    assert response.status == 200
    match = CSRF_FIELD.search(await response.text())
    assert match
    return match.group(1)


async def sign_in(client: TestClient[Any, Any], token: str, next_path: str = "/whoami") -> Any:
    csrf = await signin_form_token(client, next_path)
    data = {"token": token, "csrf_token": csrf, "next": next_path}
    return await client.post("/signin", data=data, allow_redirects=False)
