"""Authentication for the EWS simulator: the middleware, Basic, and the 401 challenges.

Modes (``AuthConfig.mode``):

* ``none``   - every request is accepted, ``request[EWS_USER]`` is None.
* ``basic``  - HTTP Basic against ``users`` (``DOMAIN\\user`` or UPN keys, as given).
* ``ntlm``   - a real NTLM acceptor with the per-connection handshake IIS does (ntlm.py).
* ``oauth2`` - bearer tokens issued by the client-credentials endpoint of ``add_token_route``
  (oauth.py; ``users`` then maps client_id -> client_secret).
* ``any``    - Basic, NTLM and bearer tokens are all accepted.

Only paths under ``/EWS/`` are protected. Missing or wrong credentials get a 401 carrying the
WWW-Authenticate challenges Exchange sends for the enabled methods.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

from exchange_sim.ntlm import NtlmAcceptor
from exchange_sim.oauth import add_token_endpoint, bearer_client

log = logging.getLogger(__name__)

MODES = ("none", "basic", "ntlm", "oauth2", "any")
#: Where the middleware leaves the authenticated user name (None in mode none).
EWS_USER: web.RequestKey[str | None] = web.RequestKey("ews_user")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AuthConfig:
    mode: str = "none"
    # username -> password; in mode oauth2, client_id -> client_secret.
    users: Mapping[str, str] = field(default_factory=dict)
    token_lifetime_seconds: int = 3600

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown auth mode {self.mode!r}; expected one of {MODES}")
        if self.token_lifetime_seconds < 0:
            raise ValueError("token_lifetime_seconds must not be negative")
        # Snapshot the users so later changes to the caller's dict cannot leak in.
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))

    @property
    def basic_enabled(self) -> bool:
        return self.mode in ("basic", "any")

    @property
    def ntlm_enabled(self) -> bool:
        return self.mode in ("ntlm", "any")

    @property
    def bearer_enabled(self) -> bool:
        return self.mode in ("oauth2", "any")


# --- 401 challenges -------------------------------------------------------------------------

# The Bearer challenge of Exchange with OAuth enabled, as Microsoft documents it for hybrid
# modern auth (use-hybrid-modern-auth.md) and Exchange Online sends it (trusted_issuers "@*").
BEARER_CHALLENGE = (
    'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'
)
# exchangelib's get_auth_method_from_response() recognises OAuth only by an
# "MS-Diagnostics-Public" header containing "Modern Auth". The wording below is ours, not a
# recorded Exchange value; only that substring matters to the client.
MODERN_AUTH_DIAGNOSTIC = '4000000;reason="Modern Auth required: send an OAuth 2.0 bearer token"'

# IIS's default 401 page, shortened.
_IIS_401_BODY = (
    "<!DOCTYPE html><html><head><title>401 - Unauthorized: Access is denied due to invalid"
    " credentials.</title></head><body><h2>401 - Unauthorized: Access is denied due to invalid"
    " credentials.</h2><h3>You do not have permission to view this directory or page using the"
    " credentials that you supplied.</h3></body></html>"
)


def challenges(config: AuthConfig, host: str, *, bearer_error: bool = False) -> list[str]:
    """WWW-Authenticate values for a 401, one header each, in the order IIS sends them."""
    values: list[str] = []
    if config.bearer_enabled:
        values.append(BEARER_CHALLENGE + (', error="invalid_token"' if bearer_error else ""))
    if config.ntlm_enabled:
        values += ["Negotiate", "NTLM"]
    if config.basic_enabled:
        values.append(f'Basic realm="{host}"')
    return values


def _unauthorized(
    config: AuthConfig, request: web.Request, *, bearer_error: bool = False
) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for value in challenges(config, request.url.host or "localhost", bearer_error=bearer_error):
        headers.add("WWW-Authenticate", value)
    if config.mode == "oauth2":
        # Exchange Online answers bearer failures with an empty body.
        headers.add("MS-Diagnostics-Public", MODERN_AUTH_DIAGNOSTIC)
        return web.Response(status=401, headers=headers)
    return web.Response(status=401, headers=headers, text=_IIS_401_BODY, content_type="text/html")


# --- Basic ----------------------------------------------------------------------------------


def _decode_basic(param: str) -> tuple[str, str] | None:
    try:
        raw = base64.b64decode(param, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # what requests sends for non-ASCII str credentials
    name, sep, password = text.partition(":")
    if not sep or not name:
        return None
    return name, password


# --- the middleware -------------------------------------------------------------------------


class _Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._by_folded_name = {name.casefold(): name for name in config.users}
        self.ntlm = NtlmAcceptor(config.users, self._known_user) if config.ntlm_enabled else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.lower().startswith("/ews/"):
            return await handler(request)
        if self.config.mode == "none":
            request[EWS_USER] = None
            return await handler(request)
        result = self.authenticate(request)
        if isinstance(result, web.Response):
            return result
        request[EWS_USER] = result
        return await handler(request)

    def _known_user(self, name: str) -> str | None:
        return self._by_folded_name.get(name.casefold())

    def authenticate(self, request: web.Request) -> str | web.Response:
        """The authenticated user name, or the 401 response to send."""
        header = request.headers.get("Authorization", "").strip()
        scheme, _, param = header.partition(" ")
        scheme = scheme.lower()
        param = param.strip()
        if self.ntlm is not None and scheme in ("ntlm", "negotiate") and param:
            step = self.ntlm.step(request, scheme, param)
            return _unauthorized(self.config, request) if step is None else step
        if not header:
            user = self.ntlm.connection_user(request) if self.ntlm is not None else None
            return _unauthorized(self.config, request) if user is None else user
        if self.config.basic_enabled and scheme == "basic":
            return self._basic(request, param)
        if self.config.bearer_enabled and scheme == "bearer":
            return self._bearer(request, param)
        return _unauthorized(self.config, request)

    def _basic(self, request: web.Request, param: str) -> str | web.Response:
        credentials = _decode_basic(param)
        if credentials is not None:
            user = self._known_user(credentials[0])
            if user is not None and hmac.compare_digest(
                self.config.users[user].encode(), credentials[1].encode()
            ):
                return user
        log.debug("basic auth rejected")
        return _unauthorized(self.config, request)

    def _bearer(self, request: web.Request, token: str) -> str | web.Response:
        client_id = bearer_client(request, token)
        if client_id is None:
            log.debug("bearer token rejected")
            return _unauthorized(self.config, request, bearer_error=True)
        return client_id


def auth_middleware(config: AuthConfig) -> Middleware:
    """aiohttp middleware enforcing ``config`` on paths under /EWS/ (case-insensitive).

    Sets ``request[EWS_USER]`` to the authenticated user name (the key in ``config.users``;
    the client_id for bearer tokens), or None in mode "none".
    """
    return _Authenticator(config).middleware


# --- the token endpoint ---------------------------------------------------------------------


def add_token_route(app: web.Application, config: AuthConfig) -> None:
    """Add ``POST /{tenant}/oauth2/v2.0/token`` (client-credentials grant; oauth.py) to ``app``.

    Issued tokens are accepted as bearer tokens by ``auth_middleware`` on the same app (or its
    sub-apps) until ``config.token_lifetime_seconds`` have passed.
    """
    add_token_endpoint(app, config.users, config.token_lifetime_seconds)
