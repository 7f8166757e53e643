"""OAuth2 for the auth middleware: a client-credentials token endpoint and its bearer tokens.

``POST /{tenant}/oauth2/v2.0/token`` with grant_type=client_credentials, client_id,
client_secret and scope=<resource>/.default answers as Microsoft Entra ID does: a bearer
token, or an error body with its AADSTS code. Tokens are opaque, kept in memory per app, and
valid for the configured lifetime.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from exchange_sim.oauth_assertion import assertion_problem, is_certificate


class TokenStore:
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


_TOKEN_STORE = web.AppKey("exchange_sim_auth_token_store", TokenStore)


def bearer_client(request: web.Request, token: str) -> str | None:
    """The client_id a bearer token was issued to by this app's (or a parent app's) token
    endpoint; None when unknown or expired."""
    store = request.config_dict.get(_TOKEN_STORE)
    return store.client_for(token) if store is not None and token else None


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


def _refusal(
    fields: Mapping[str, str], clients: Mapping[str, str], tenant: str, token_url: str
) -> web.Response | None:
    """The error a token request gets (the first that applies); None: grant it."""
    grant_type = fields.get("grant_type", "")
    client_id = fields.get("client_id", "")
    client_secret = fields.get("client_secret", "")
    scope = fields.get("scope", "")
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
    if client_id not in clients:
        return _token_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
        )
    if is_certificate(clients[client_id]):
        problem = assertion_problem(fields, clients[client_id], token_url)
        if problem is not None:
            return _token_error(401, "invalid_client", *problem)
    elif not client_secret:
        return _token_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
    elif not hmac.compare_digest(clients[client_id].encode(), client_secret.encode()):
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
    return None


def add_token_endpoint(
    app: web.Application, clients: Mapping[str, str], lifetime_seconds: int
) -> None:
    """Add the token endpoint for `clients` (client_id -> client_secret) to `app`; its
    tokens are good for `bearer_client` on the same app (or its sub-apps)."""
    store = TokenStore(lifetime_seconds)
    app[_TOKEN_STORE] = store

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        token_url = str(request.url.with_query(None))
        refusal = _refusal(fields, clients, request.match_info["tenant"], token_url)
        if refusal is not None:
            return refusal
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime_seconds,
                "ext_expires_in": lifetime_seconds,
                "access_token": store.issue(fields["client_id"]),
            }
        )

    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
