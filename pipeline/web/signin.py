"""The sign-in routes: the token form (GET/POST /signin), POST /signout, and the OpenID
Connect round trip (GET /auth/oidc/login -> the provider -> GET /auth/oidc/callback).

Each sign-in, refused sign-in and sign-out is one INFO line naming the principal only on
success (a token's *name*, never the token), never a query string. `next` is followed only
to a local path, so a link to /signin cannot send anyone to another site.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import jinja2
from aiohttp import web

from pipeline.config_ui import UiAuth
from pipeline.logs import get_logger
from pipeline.web.identity import (
    AUTH,
    OIDC_COOKIE,
    OIDC_COOKIE_PATH,
    OIDC_PENDING_SECONDS,
    Principal,
    csrf_token,
)
from pipeline.web.oidc import OidcError, Pending, ProviderUnavailable

log = get_logger(__name__)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("pipeline.web", "templates"), autoescape=True
)
#: An OAuth error code as RFC 6749 spells it: shown to the user, so nothing else passes.
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/signin", show_signin)
    app.router.add_post("/signin", token_signin)
    app.router.add_post("/signout", signout)
    app.router.add_get("/auth/oidc/login", oidc_login)
    app.router.add_get("/auth/oidc/callback", oidc_callback)


def local_path(target: str | None) -> str:
    """`target` if it is a path on this site, else "/" (no open redirect: not //host,
    not /\\host, not https://host)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(ord(c) < 32 or c == "\\" for c in target)
    ):
        return "/"
    return target


def _page(
    request: web.Request, status: int = 200, error: str = "", next_path: str | None = None
) -> web.Response:
    auth = request.app[AUTH]
    html = _TEMPLATES.get_template("signin.html").render(
        mode=str(auth.settings.auth),
        next=next_path or local_path(request.query.get("next")),
        error=error,
        csrf_token=csrf_token(request),
    )
    return web.Response(text=html, status=status, content_type="text/html")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def show_signin(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    if auth.settings.auth is UiAuth.NONE or auth.session(request) is not None:
        return _redirect(local_path(request.query.get("next")))
    return _page(request)


async def token_signin(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    form = await request.post()
    next_path = local_path(str(form.get("next") or ""))
    if auth.settings.auth is not UiAuth.TOKEN:
        return _redirect(next_path)
    token = str(form.get("token") or "").strip()
    name = auth.tokens.lookup(token) if token else None
    if name is None:
        log.info("sign-in refused", extra={"fields": {"via": "token"}})
        page = _page(request, 401, "That token is not valid.", next_path)
        page.headers["WWW-Authenticate"] = 'Bearer realm="emaillog"'
        return page
    who = Principal(name, auth.is_admin(name), "token")
    return _signed_in(request, who, next_path)


def _signed_in(request: web.Request, who: Principal, next_path: str) -> web.StreamResponse:
    response = _redirect(next_path)
    request.app[AUTH].start_session(request, response, who)
    log.info("signed in", extra={"fields": {"user": who.name, "via": who.via}})
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    who = auth.session(request)
    response = _redirect("/signin")
    auth.end_session(response)
    if who is not None:
        log.info("signed out", extra={"fields": {"user": who.name, "via": who.via}})
    return response


async def oidc_login(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    if auth.oidc is None:
        raise web.HTTPNotFound()
    try:
        url, pending = await auth.oidc.start(local_path(request.query.get("next")))
    except OidcError as exc:
        log.warning("oidc provider unusable", extra={"fields": {"reason": str(exc)}})
        return _page(request, 502, "The sign-in provider cannot be reached. Try again later.")
    response = _redirect(url)
    value = auth.signer.sign("oidc", pending.as_dict(), seconds=OIDC_PENDING_SECONDS)
    auth.set_cookie(
        request, response, OIDC_COOKIE, value, path=OIDC_COOKIE_PATH, max_age=OIDC_PENDING_SECONDS
    )
    return response


async def oidc_callback(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    if auth.oidc is None:
        raise web.HTTPNotFound()
    pending = Pending.from_dict(auth.signer.unsign("oidc", request.cookies.get(OIDC_COOKIE)) or {})
    state = request.query.get("state", "")
    if pending is None or not hmac.compare_digest(state.encode(), pending.state.encode()):
        # No sign-in started in this browser, expired, replayed or a forged state.
        log.info("sign-in refused", extra={"fields": {"via": "oidc", "reason": "state"}})
        return _page(request, 400, "This sign-in has expired or was not started here. Try again.")
    issuer = request.query.get("iss")
    if issuer is not None and issuer != auth.settings.oidc_issuer:
        # RFC 9207: the answer comes from another provider than the one we sent them to.
        log.info("sign-in refused", extra={"fields": {"via": "oidc", "reason": "issuer"}})
        return _page(request, 400, "This sign-in came back from another provider.")
    error, code = request.query.get("error", ""), request.query.get("code", "")
    if error or not code:
        shown = error if _ERROR_CODE.fullmatch(error) else "no code"
        log.info("sign-in refused", extra={"fields": {"via": "oidc", "reason": shown}})
        return _page(request, 403, f"The sign-in provider did not sign you in ({shown}).")
    try:
        claims = await auth.oidc.finish(code, pending)
    except ProviderUnavailable as exc:
        log.warning("oidc provider unusable", extra={"fields": {"reason": str(exc)}})
        return _page(request, 502, "The sign-in provider cannot be reached. Try again later.")
    except OidcError as exc:
        log.info("sign-in refused", extra={"fields": {"via": "oidc", "reason": str(exc)}})
        return _page(request, 403, "The sign-in could not be verified. Try again.")
    response = _signed_in(request, _oidc_principal(request, claims), pending.next_path)
    response.del_cookie(OIDC_COOKIE, path=OIDC_COOKIE_PATH)  # one use only
    return response


def _oidc_principal(request: web.Request, claims: dict[str, Any]) -> Principal:
    """Named by e-mail, else preferred_username, else subject; an administrator when the
    admin claim holds the admin value, or the subject or e-mail is in EMAILLOG_UI_ADMINS."""
    auth = request.app[AUTH]
    settings = auth.settings
    subject, email = str(claims["sub"]), str(claims.get("email") or "")
    name = email or str(claims.get("preferred_username") or "") or subject
    claim = claims.get(settings.oidc_admin_claim)
    wanted = settings.oidc_admin_value
    by_claim = bool(wanted) and (claim == wanted or (isinstance(claim, list) and wanted in claim))
    return Principal(name, by_claim or auth.is_admin(subject, email), "oidc")
