"""Who is asking: the `Principal`, and the `Authenticator` that tells it from a request
(a bearer token, a session cookie, or nobody), writes session cookies and checks CSRF tokens.

Cookies (all HttpOnly, SameSite=Lax, Secure when EMAILLOG_UI_PUBLIC_URL is https or the
request came over https):

    emaillog_session  signed {name, admin, via, token fingerprint, exp}: the sign-in
    emaillog_csrf     a random nonce; a form's csrf_token is the HMAC of it (signed
                      double submit: a page of another site can neither read nor forge it)
    emaillog_oidc     signed {state, nonce, PKCE verifier, next}: an OIDC sign-in in progress
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pipeline.config_ui import UiAuth, UiSettings
from pipeline.web.oidc import OidcClient
from pipeline.web.sessions import Signer, random_secret
from pipeline.web.tokens import TokenStore

SESSION_COOKIE = "emaillog_session"
CSRF_COOKIE = "emaillog_csrf"
OIDC_COOKIE = "emaillog_oidc"
OIDC_COOKIE_PATH = "/auth/oidc/"
#: An OIDC sign-in must come back from the provider within this time.
OIDC_PENDING_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in person or program. `via`: "bearer" (Authorization header), "token"
    (the sign-in form), "oidc" or "none" (EMAILLOG_UI_AUTH=none, loopback only)."""

    name: str
    is_admin: bool
    via: str


LOCAL = Principal("local", is_admin=True, via="none")


class BadBearer(Exception):
    """An Authorization header that names no valid token: refused, never redirected."""


class Authenticator:
    """The configured sign-in of one web application."""

    def __init__(self, settings: UiSettings) -> None:
        self.settings = settings
        self.signer = Signer(settings.session_secret or random_secret())
        self.tokens = TokenStore(settings.api_tokens_file)
        self.oidc = OidcClient(settings) if settings.auth is UiAuth.OIDC else None

    def is_admin(self, *names: str) -> bool:
        admins = {admin.casefold() for admin in self.settings.admins}
        return any(name and name.casefold() in admins for name in names)

    # --- who is asking ---

    def identify(self, request: web.Request) -> Principal | None:
        """The principal of `request`, None when it carries no credentials; raises
        BadBearer for an Authorization header with a wrong token."""
        if self.settings.auth is UiAuth.NONE:
            return LOCAL
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            name = self.tokens.lookup(token.strip()) if scheme.lower() == "bearer" else None
            if name is None:
                raise BadBearer
            return Principal(name, self.is_admin(name), "bearer")
        return self.session(request)

    def session(self, request: web.Request) -> Principal | None:
        data = self.signer.unsign("session", request.cookies.get(SESSION_COOKIE))
        if data is None or not isinstance(data.get("n"), str):
            return None
        name, via = data["n"], data.get("v")
        if via == "token":
            # A session started with a token ends when that token's line is removed.
            listed = self.tokens.digest_of(name)
            fingerprint = str(data.get("t", "")).encode()
            if listed is None or not hmac.compare_digest(
                fingerprint, self._fingerprint(listed).encode()
            ):
                return None
            return Principal(name, self.is_admin(name), "token")
        if via == "oidc" and self.settings.auth is UiAuth.OIDC:
            return Principal(name, bool(data.get("a")), "oidc")
        return None

    def _fingerprint(self, token_digest: bytes) -> str:
        return self.signer.mac("token-fingerprint", token_digest.hex())[:22]

    # --- cookies ---

    def secure(self, request: web.Request) -> bool:
        return self.settings.public_url.startswith("https://") or request.secure

    def set_cookie(
        self, request: web.Request, response: web.StreamResponse, name: str, value: str, **kw: Any
    ) -> None:
        kw.setdefault("path", "/")
        response.set_cookie(
            name, value, httponly=True, samesite="Lax", secure=self.secure(request), **kw
        )

    def start_session(
        self, request: web.Request, response: web.StreamResponse, who: Principal
    ) -> None:
        payload: dict[str, Any] = {"n": who.name, "a": who.is_admin, "v": who.via}
        if who.via == "token":
            listed = self.tokens.digest_of(who.name)
            payload["t"] = self._fingerprint(listed) if listed is not None else ""
        seconds = self.settings.session_hours * 3600
        value = self.signer.sign("session", payload, seconds=seconds)
        self.set_cookie(request, response, SESSION_COOKIE, value, max_age=int(seconds))

    @staticmethod
    def end_session(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/")

    # --- CSRF ---

    def csrf_for(self, nonce: str) -> str:
        return self.signer.mac("csrf", nonce)

    def csrf_valid(self, request: web.Request, presented: str) -> bool:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        expected = self.csrf_for(nonce).encode()
        return bool(nonce and presented) and hmac.compare_digest(presented.encode(), expected)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)


AUTH = web.AppKey("emaillog.auth", Authenticator)
#: Request keys: the principal `authenticate` found; a CSRF nonce to set as a cookie.
PRINCIPAL_KEY = web.RequestKey("emaillog.principal", Principal)
NEW_CSRF_NONCE_KEY = web.RequestKey("emaillog.csrf_nonce", str)


def current_principal(request: web.Request) -> Principal | None:
    """Who is asking, or None (public paths such as /signin)."""
    return request.get(PRINCIPAL_KEY)


def csrf_token(request: web.Request) -> str:
    """The token a form posts as its hidden `csrf_token` field (the browser's CSRF cookie is
    set with this response when it has none yet)."""
    nonce = request.cookies.get(CSRF_COOKIE) or request.get(NEW_CSRF_NONCE_KEY)
    if not nonce:
        nonce = request[NEW_CSRF_NONCE_KEY] = Authenticator.new_nonce()
    return request.app[AUTH].csrf_for(nonce)
