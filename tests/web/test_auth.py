"""Token sign-in, bearer tokens, sessions, CSRF and the security headers, against the real
`setup_auth` on a small application (tests/web/auth_kit.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
from yarl import URL

from pipeline.config import UiAuth
from pipeline.web.auth import CONTENT_SECURITY_POLICY
from pipeline.web.signin import local_path
from tests.web.auth_kit import (
    ALICE,
    BOB,
    CSRF_FIELD,
    client_for,
    sign_in,
    signin_form_token,
    token_settings,
    tokens_file,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def set_cookie(response: object, name: str) -> str:
    headers = response.headers.getall("Set-Cookie", [])  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(name + "=")]
    assert found, f"no {name} cookie in {headers}"
    return found[0]


async def test_a_page_without_sign_in_goes_to_the_signin_form(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        response = await client.get("/whoami?contact=Adatum&x=1", allow_redirects=False)
        assert response.status == 303
        location = URL(response.headers["Location"])
        assert location.path == "/signin"
        assert location.query["next"] == "/whoami?contact=Adatum&x=1"


async def test_the_api_without_credentials_answers_401_json(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        response = await client.get("/api/v1/whoami", allow_redirects=False)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "error" in await response.json()


async def test_token_sign_in_sets_a_session_cookie(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="emaillog")
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        response = await sign_in(client, ALICE, "/whoami?page=2")
        assert response.status == 303
        assert response.headers["Location"] == "/whoami?page=2"
        cookie = set_cookie(response, "emaillog_session")
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Path=/" in cookie
        assert "Secure" not in cookie  # plain http, no https public URL
        assert "Max-Age=28800" in cookie  # EMAILLOG_UI_SESSION_HOURS=8
        who = await (await client.get("/whoami")).json()
        assert who == {"name": "alice", "admin": True, "via": "token"}
    assert any(getattr(r, "fields", {}).get("user") == "alice" for r in caplog.records)
    assert ALICE not in caplog.text
    assert "page=2" not in caplog.text


async def test_session_cookie_is_secure_behind_an_https_public_url(tmp_path: Path) -> None:
    settings = token_settings(tokens_file(tmp_path), public_url="https://emaillog.example.com")
    async with client_for(settings) as client:
        form = await client.get("/signin")
        csrf_cookie = set_cookie(form, "emaillog_csrf")
        assert "Secure" in csrf_cookie
        # The jar keeps Secure cookies from plain http: send it as a browser on https would.
        nonce = csrf_cookie.split(";")[0]
        csrf = CSRF_FIELD.search(await form.text()).group(1)  # type: ignore[union-attr]
        response = await client.post(
            "/signin",
            data={"token": BOB, "csrf_token": csrf, "next": "/"},
            headers={"Cookie": nonce},
            allow_redirects=False,
        )
        assert response.status == 303
        assert "Secure" in set_cookie(response, "emaillog_session")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_a_wrong_token_is_refused_by_the_form(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="emaillog")
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        response = await sign_in(client, "not-a-token-of-anyone-at-all")
        assert response.status == 401
        assert "That token is not valid." in await response.text()
        assert "emaillog_session" not in response.cookies
        again = await client.get("/whoami", allow_redirects=False)
        assert again.status == 303
    assert "sign-in refused" in caplog.text
    assert "not-a-token-of-anyone" not in caplog.text


async def test_bearer_tokens_work_for_the_api_and_pages(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        api = await client.get("/api/v1/whoami", headers=bearer(BOB))
        assert await api.json() == {"name": "bob", "admin": False, "via": "bearer"}
        page = await client.get("/whoami", headers=bearer(ALICE))
        assert (await page.json())["name"] == "alice"
        assert "Set-Cookie" not in page.headers  # a bearer request starts no session
        for path in ("/api/v1/whoami", "/whoami"):
            wrong = await client.get(path, headers=bearer("wrong-token-0123456789"))
            assert wrong.status == 401
            assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
        basic = await client.get("/api/v1/whoami", headers={"Authorization": "Basic YTpi"})
        assert basic.status == 401


async def test_administrators_only(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        assert (await client.get("/admin", headers=bearer(BOB))).status == 403
        assert (await client.get("/admin", headers=bearer(ALICE))).status == 200


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example/", "/\\evil.example", "evil", "", "/\\\\x", "/a\nb"],
)
def test_next_is_only_ever_a_local_path(target: str) -> None:
    assert local_path(target) == "/"


def test_local_next_paths_are_kept() -> None:
    assert local_path("/entries?contact_no=CT1&page=2") == "/entries?contact_no=CT1&page=2"


async def test_an_open_redirect_through_next_is_neutralised(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        response = await sign_in(client, ALICE, "//evil.example/phish")
        assert response.status == 303
        assert response.headers["Location"] == "/"
        page = await client.get("/signin", params={"next": "https://evil.example"})
        assert "evil.example" not in await page.text()  # already signed in: redirected to /


async def test_a_post_without_a_valid_csrf_token_is_refused(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        no_token = await client.post("/signin", data={"token": ALICE}, allow_redirects=False)
        assert no_token.status == 403
        csrf = await signin_form_token(client)
        forged = await client.post(
            "/signin", data={"token": ALICE, "csrf_token": csrf[::-1]}, allow_redirects=False
        )
        assert forged.status == 403
        assert (await sign_in(client, ALICE)).status == 303
        assert (await client.post("/action", data={})).status == 403
        form = await (await client.get("/form")).text()
        token = form.split('value="')[1].split('"')[0]
        assert (await client.post("/action", data={"csrf_token": token})).status == 200
        header = await client.post("/action", headers={"X-CSRF-Token": token})
        assert header.status == 200


async def test_a_csrf_token_belongs_to_its_browser(tmp_path: Path) -> None:
    settings = token_settings(tokens_file(tmp_path))
    async with client_for(settings) as mine, client_for(settings) as theirs:
        their_token = await signin_form_token(theirs)
        await signin_form_token(mine)  # my own CSRF cookie
        data = {"token": ALICE, "csrf_token": their_token}
        assert (await mine.post("/signin", data=data, allow_redirects=False)).status == 403


async def test_bearer_requests_need_no_csrf_token(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        assert (await client.post("/action", headers=bearer(BOB))).status == 200


async def test_sign_out_ends_the_session(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        await sign_in(client, BOB)
        form = await (await client.get("/form")).text()
        token = form.split('value="')[1].split('"')[0]
        out = await client.post("/signout", data={"csrf_token": token}, allow_redirects=False)
        assert out.status == 303
        assert out.headers["Location"] == "/signin"
        assert (await client.get("/whoami", allow_redirects=False)).status == 303


async def test_a_tampered_session_cookie_is_ignored(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        response = await sign_in(client, BOB)
        value = response.cookies["emaillog_session"].value
        body, mac = value.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload["n"], payload["a"] = "alice", True
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({"emaillog_session": f"{forged}.{mac}"})
        assert (await client.get("/whoami", allow_redirects=False)).status == 303


async def test_hashed_token_lines(tmp_path: Path) -> None:
    hashed = hashlib.sha256(ALICE.encode()).hexdigest()
    path = tokens_file(tmp_path, f"alice:sha256:{hashed}\n")
    async with client_for(token_settings(path)) as client:
        assert (await client.get("/api/v1/whoami", headers=bearer(ALICE))).status == 200
        assert (await client.get("/api/v1/whoami", headers=bearer(hashed))).status == 401


async def test_the_tokens_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tokens_file(tmp_path)
    carol = "carol-token-0123456789abcdef"
    async with client_for(token_settings(path)) as client:
        assert (await sign_in(client, ALICE)).status == 303
        assert (await client.get("/api/v1/whoami", headers=bearer(carol))).status == 401
        path.write_text(f"bob:{BOB}\ncarol:{carol}\n")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert (await client.get("/api/v1/whoami", headers=bearer(carol))).status == 200
        assert (await client.get("/api/v1/whoami", headers=bearer(ALICE))).status == 401
        # alice's line is gone: her session ends too.
        assert (await client.get("/whoami", allow_redirects=False)).status == 303


async def test_an_invalid_tokens_file_refuses_every_token(tmp_path: Path) -> None:
    path = tokens_file(tmp_path)
    async with client_for(token_settings(path)) as client:
        assert (await client.get("/api/v1/whoami", headers=bearer(BOB))).status == 200
        path.write_text(f"bob:{BOB}\nthis line is broken\n")
        assert (await client.get("/api/v1/whoami", headers=bearer(BOB))).status == 401


async def test_security_headers_on_every_response(tmp_path: Path) -> None:
    async with client_for(token_settings(tokens_file(tmp_path))) as client:
        responses = [
            await client.get("/signin"),
            await client.get("/whoami", allow_redirects=False),
            await client.get("/api/v1/whoami"),
            await client.get("/whoami", headers=bearer(ALICE)),
            await client.get("/no/such/page", headers=bearer(ALICE)),
        ]
        for response in responses:
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["Cache-Control"] == "no-store"
        assert "script-src" not in CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY


async def test_none_lets_everyone_in_as_local_admin_on_loopback(tmp_path: Path) -> None:
    settings = token_settings(tokens_file(tmp_path), auth=UiAuth.NONE, host="127.0.0.1")
    async with client_for(settings) as client:
        who = await (await client.get("/whoami")).json()
        assert who == {"name": "local", "admin": True, "via": "none"}
        signin = await client.get("/signin", params={"next": "/entries"}, allow_redirects=False)
        assert signin.headers["Location"] == "/entries"
        # Still no cross-site POST.
        assert (await client.post("/action", data={})).status == 403
