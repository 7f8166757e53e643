"""Secure by default: who may see the log (EMAILLOG_UI_AUTH = oidc | token | none), and the
protections every response gets.

`setup_auth(app, settings)` checks the settings (a ConfigError at start, never an open UI),
then installs, outermost first:

    authenticate   public paths (/signin, /auth/*, /static/*) pass; otherwise a bearer token
                   or a session cookie names the `Principal`; nobody: /api/* -> 401 JSON with
                   WWW-Authenticate: Bearer, pages -> 303 /signin?next=<the page>
    check_csrf     every POST/PUT/PATCH/DELETE from a browser carries `csrf_token` (form
                   field or X-CSRF-Token header); requests with a bearer token need none;
                   sets the CSRF cookie when a page rendered a form for a new browser
    headers        (on every response) a strict Content-Security-Policy (no script, no inline
                   style), nosniff, no referrer, no framing, Cache-Control: no-store

and the sign-in routes of `signin.py`. Handlers ask `principal(request)`,
`require_admin(request)` and, for forms, `csrf_token(request)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from pipeline.config_ui import UiSettings
from pipeline.errors import ConfigError
from pipeline.logs import get_logger
from pipeline.web import signin
from pipeline.web.identity import (
    AUTH,
    CSRF_COOKIE,
    NEW_CSRF_NONCE_KEY,
    PRINCIPAL_KEY,
    Authenticator,
    BadBearer,
    Principal,
    csrf_token,
    current_principal,
)

__all__ = [
    "Principal",
    "csrf_token",
    "current_principal",
    "principal",
    "require_admin",
    "setup_auth",
]

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PUBLIC_PATHS = frozenset({"/signin"})
PUBLIC_PREFIXES = ("/auth/", "/static/")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def setup_auth(app: web.Application, settings: UiSettings) -> None:
    """Refuse unsafe settings (ConfigError), then install the middlewares and routes."""
    problems = settings.problems()
    if problems:
        raise ConfigError(problems)
    app[AUTH] = Authenticator(settings)
    app.middlewares.extend([authenticate, check_csrf])
    app.on_response_prepare.append(_security_headers)
    signin.add_routes(app)


def principal(request: web.Request) -> Principal:
    """Who is asking (set by `authenticate`); 401 on a public path nobody signed in to."""
    who = current_principal(request)
    if who is None:
        raise web.HTTPUnauthorized(text="sign-in required")
    return who


def require_admin(request: web.Request) -> Principal:
    who = principal(request)
    if not who.is_admin:
        raise web.HTTPForbidden(text="administrators only")
    return who


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTH]
    try:
        who = auth.identify(request)
    except BadBearer:
        log.info("bearer token refused", extra={"fields": {"path": request.path}})
        return _unauthorized(request, "the bearer token is not valid")
    if who is not None:
        request[PRINCIPAL_KEY] = who
    elif not _is_public(request.path):
        if request.path.startswith("/api/"):
            return _unauthorized(request, "sign-in required: send Authorization: Bearer <token>")
        target = request.rel_url.path_qs if request.method in ("GET", "HEAD") else "/"
        raise web.HTTPSeeOther("/signin?next=" + quote(target, safe=""))
    return await handler(request)


def _unauthorized(request: web.Request, reason: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="emaillog"'}
    if request.path.startswith("/api/"):
        return web.json_response({"error": reason}, status=401, headers=headers)
    return web.Response(text=reason, status=401, headers=headers)


@web.middleware
async def check_csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    who = current_principal(request)
    if request.method in UNSAFE_METHODS and (who is None or who.via != "bearer"):
        form = await request.post()  # cached: the handler reads it again for free
        presented = request.headers.get("X-CSRF-Token") or form.get("csrf_token") or ""
        if not isinstance(presented, str) or not request.app[AUTH].csrf_valid(request, presented):
            log.info("csrf check failed", extra={"fields": {"path": request.path}})
            message = "This form has expired or did not come from this site: reload the page."
            if request.path.startswith("/api/"):
                return web.json_response({"error": message}, status=403)
            return web.Response(text=message, status=403)
    response = await handler(request)
    # A page that rendered a form for a browser without a CSRF cookie yet gives it one.
    nonce = request.get(NEW_CSRF_NONCE_KEY)
    if nonce and CSRF_COOKIE not in request.cookies and not response.prepared:
        request.app[AUTH].set_cookie(request, response, CSRF_COOKIE, nonce)
    return response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    auth = request.app[AUTH]
    if auth.settings.public_url.startswith("https://"):
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if not request.path.startswith("/static/"):
        # Pages and API answers carry names and subjects: no shared or browser cache.
        response.headers["Cache-Control"] = "no-store"
