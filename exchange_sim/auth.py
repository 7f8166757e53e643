"""Authentication for the EWS simulator.

Modes (``AuthConfig.mode``):

* ``none``   - every request is accepted, ``request[EWS_USER]`` is None.
* ``basic``  - HTTP Basic against ``users`` (``DOMAIN\\user`` or UPN keys, as given).
* ``ntlm``   - a real NTLM acceptor (pyspnego) with the per-connection handshake IIS does.
* ``oauth2`` - bearer tokens issued by the client-credentials endpoint of ``add_token_route``
  (``users`` then maps client_id -> client_secret).
* ``any``    - Basic, NTLM and bearer tokens are all accepted.

Only paths under ``/EWS/`` are protected. Missing or wrong credentials get a 401 carrying the
WWW-Authenticate challenges Exchange sends for the enabled methods.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import spnego
from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

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


# --- NTLM -----------------------------------------------------------------------------------

_NTLM_SIGNATURE = b"NTLMSSP\x00"
_NTLM_NEGOTIATE = _NTLM_SIGNATURE + b"\x01\x00\x00\x00"
_NTLM_AUTHENTICATE = _NTLM_SIGNATURE + b"\x03\x00\x00\x00"

# pyspnego's NTLM acceptor reads user credentials only from the file named by the
# NTLM_USER_FILE environment variable (spnego/_ntlm.py: _get_credential_file), at context
# creation and again when checking the Authenticate message. Each simulator has its own file,
# so the variable is pointed at it under a process-wide lock around those (synchronous) calls.
_NTLM_ENV_LOCK = threading.Lock()


@contextmanager
def _ntlm_user_file(path: str) -> Iterator[None]:
    with _NTLM_ENV_LOCK:
        previous = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = path
        try:
            yield
        finally:
            if previous is None:
                del os.environ["NTLM_USER_FILE"]
            else:
                os.environ["NTLM_USER_FILE"] = previous


def _ntlm_user_lines(users: Mapping[str, str]) -> str:
    """The users in pyspnego's ``DOMAIN:USER:PASSWORD`` format (empty domain for UPN/bare)."""
    lines = []
    for name, password in users.items():
        domain, sep, user = name.partition("\\")
        if not sep:
            domain, user = "", name
        for part in (domain, user, password):
            if ":" in part or "\n" in part or "\r" in part:
                raise ValueError(
                    f"NTLM user {name!r}: user names and passwords must not contain ':' or newlines"
                )
        lines.append(f"{domain}:{user}:{password}\n")
    return "".join(lines)


def _remove_file(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


@dataclass
class _NtlmConnection:
    """NTLM state of one TCP connection: a handshake in progress, or the authenticated user."""

    context: spnego.ContextProxy | None = None
    user: str | None = None


# --- OAuth2 tokens --------------------------------------------------------------------------


class _TokenStore:
    """Opaque bearer tokens issued by the token endpoint: token -> (client_id, expiry)."""

    def __init__(self, lifetime_seconds: int) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue(self, client_id: str) -> str:
        now = time.monotonic()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(48)
        self._tokens[token] = (client_id, now + self.lifetime_seconds)
        return token

    def client_for(self, token: str) -> str | None:
        entry = self._tokens.get(token)
        if entry is None or time.monotonic() >= entry[1]:
            return None
        return entry[0]


_TOKEN_STORE = web.AppKey("exchange_sim_auth_token_store", _TokenStore)


# --- the middleware -------------------------------------------------------------------------


class _Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._by_folded_name = {name.casefold(): name for name in config.users}
        # Keyed by the connection's transport; an entry is dropped when its connection closes.
        self._ntlm: dict[asyncio.BaseTransport, _NtlmConnection] = {}
        self._ntlm_file = ""
        if config.ntlm_enabled:
            lines = _ntlm_user_lines(config.users)
            with tempfile.NamedTemporaryFile(
                "w", prefix="exchange-sim-ntlm-", suffix=".txt", delete=False, encoding="utf-8"
            ) as f:
                f.write(lines)
            self._ntlm_file = f.name
            weakref.finalize(self, _remove_file, f.name)

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
        if self.config.ntlm_enabled and scheme in ("ntlm", "negotiate") and param:
            return self._ntlm_step(request, scheme, param)
        if not header:
            connection = self._ntlm_connection(request)
            if connection is not None and connection.user is not None:
                return connection.user  # IIS: an NTLM-authenticated keep-alive connection
            return _unauthorized(self.config, request)
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
        store = request.config_dict.get(_TOKEN_STORE)
        client_id = store.client_for(token) if store is not None and token else None
        if client_id is None:
            log.debug("bearer token rejected")
            return _unauthorized(self.config, request, bearer_error=True)
        return client_id

    def _ntlm_connection(self, request: web.Request) -> _NtlmConnection | None:
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        return self._ntlm.get(transport)

    def _set_ntlm_connection(self, request: web.Request, state: _NtlmConnection) -> None:
        transport = request.transport
        if transport is None:
            return
        if transport not in self._ntlm:
            # request.task serves the whole keep-alive connection; it ends when it closes.
            request.task.add_done_callback(lambda _: self._ntlm.pop(transport, None))
        self._ntlm[transport] = state

    def _ntlm_step(self, request: web.Request, scheme: str, param: str) -> str | web.Response:
        """One leg of the connection-oriented NTLM handshake (Negotiate or Authenticate)."""
        connection = self._ntlm_connection(request)
        pending = connection.context if connection is not None else None
        if connection is not None:
            # Any handshake message ends what the connection had: a handshake in progress, or
            # its authentication (a new handshake re-authenticates, as on IIS).
            self._set_ntlm_connection(request, _NtlmConnection())
        try:
            token = base64.b64decode(param, validate=True)
        except (binascii.Error, ValueError):
            return _unauthorized(self.config, request)

        if token.startswith(_NTLM_NEGOTIATE):
            try:
                with _ntlm_user_file(self._ntlm_file):
                    context = spnego.server(service="HTTP", protocol="ntlm")
                    challenge = context.step(token)
            except Exception:  # a malformed token from the client must not become a 500
                log.debug("NTLM negotiate message rejected", exc_info=True)
                return _unauthorized(self.config, request)
            self._set_ntlm_connection(request, _NtlmConnection(context=context))
            # IIS answers in the scheme the client used, with only the Challenge message.
            response_scheme = "Negotiate" if scheme == "negotiate" else "NTLM"
            encoded = base64.b64encode(challenge or b"").decode()
            return web.Response(
                status=401, headers={"WWW-Authenticate": f"{response_scheme} {encoded}"}
            )

        if token.startswith(_NTLM_AUTHENTICATE) and pending is not None:
            try:
                with _ntlm_user_file(self._ntlm_file):
                    pending.step(token)
            except Exception:  # wrong password, unknown user, malformed message
                log.debug("NTLM authenticate message rejected", exc_info=True)
                return _unauthorized(self.config, request)
            user = self._known_user(pending.client_principal or "") if pending.complete else None
            if user is None:
                return _unauthorized(self.config, request)
            self._set_ntlm_connection(request, _NtlmConnection(user=user))
            return user

        # An Authenticate message without a handshake on this connection, or a token that is
        # not raw NTLM (e.g. a Kerberos SPNEGO token under "Negotiate").
        return _unauthorized(self.config, request)


def auth_middleware(config: AuthConfig) -> Middleware:
    """aiohttp middleware enforcing ``config`` on paths under /EWS/ (case-insensitive).

    Sets ``request[EWS_USER]`` to the authenticated user name (the key in ``config.users``;
    the client_id for bearer tokens), or None in mode "none".
    """
    return _Authenticator(config).middleware


# --- the token endpoint ---------------------------------------------------------------------


def _token_error(status: int, error: str, code: int, description: str) -> web.Response:
    """An error body shaped like Microsoft Entra ID's token endpoint errors."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body: dict[str, Any] = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    return web.json_response(body, status=status)


def _missing(name: str) -> web.Response:
    return _token_error(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def add_token_route(app: web.Application, config: AuthConfig) -> None:
    """Add ``POST /{tenant}/oauth2/v2.0/token`` (client-credentials grant) to ``app``.

    Issued tokens are accepted as bearer tokens by ``auth_middleware`` on the same app (or its
    sub-apps) until ``config.token_lifetime_seconds`` have passed.
    """
    store = _TokenStore(config.token_lifetime_seconds)
    app[_TOKEN_STORE] = store

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        grant_type = fields.get("grant_type", "")
        client_id = fields.get("client_id", "")
        client_secret = fields.get("client_secret", "")
        scope = fields.get("scope", "")
        tenant = request.match_info["tenant"]
        if not grant_type:
            return _missing("grant_type")
        if grant_type != "client_credentials":
            return _token_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type "
                f"'{grant_type}'; this endpoint supports client_credentials only.",
            )
        if not client_id:
            return _missing("client_id")
        if client_id not in config.users:
            return _token_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'.",
            )
        if not client_secret:
            return _token_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        if not hmac.compare_digest(config.users[client_id].encode(), client_secret.encode()):
            return _token_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if not scope:
            return _missing("scope")
        if not all(s.endswith("/.default") for s in scope.split()):
            return _token_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier.",
            )
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": config.token_lifetime_seconds,
                "ext_expires_in": config.token_lifetime_seconds,
                "access_token": store.issue(client_id),
            }
        )

    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
