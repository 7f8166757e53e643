"""NTLM for the auth middleware: a real acceptor (pyspnego) with the handshake IIS does.

NTLM authenticates a TCP connection, not a request: Negotiate is answered with a 401 carrying
the Challenge, Authenticate (on the same connection) names the user, and later requests on
that keep-alive connection need no Authorization header. Any new handshake message on the
connection ends what it had (a handshake in progress, or its authentication).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import spnego
from aiohttp import web

log = logging.getLogger(__name__)

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
class NtlmConnection:
    """NTLM state of one TCP connection: a handshake in progress, or the authenticated user."""

    context: spnego.ContextProxy | None = None
    user: str | None = None


class NtlmAcceptor:
    """Accepts `users` (name -> password) over NTLM; `known_user` maps the name a client
    authenticated as to the key in `users` (None: not one of them)."""

    def __init__(self, users: Mapping[str, str], known_user: Callable[[str], str | None]) -> None:
        self._known_user = known_user
        # Keyed by the connection's transport; an entry is dropped when its connection closes.
        self.connections: dict[asyncio.BaseTransport, NtlmConnection] = {}
        lines = _ntlm_user_lines(users)
        with tempfile.NamedTemporaryFile(
            "w", prefix="exchange-sim-ntlm-", suffix=".txt", delete=False, encoding="utf-8"
        ) as f:
            f.write(lines)
        self._user_file = f.name
        weakref.finalize(self, _remove_file, f.name)

    def connection_user(self, request: web.Request) -> str | None:
        """The user this request's connection authenticated as (IIS: an NTLM-authenticated
        keep-alive connection needs no Authorization header)."""
        connection = self._connection(request)
        return connection.user if connection is not None else None

    def step(self, request: web.Request, scheme: str, param: str) -> str | web.Response | None:
        """One leg of the handshake for an ``NTLM``/``Negotiate`` (`scheme`, lower case)
        Authorization header: the user (Authenticate accepted), the 401 carrying the Challenge
        (Negotiate), or None (refused: the caller answers with its ordinary 401)."""
        connection = self._connection(request)
        pending = connection.context if connection is not None else None
        if connection is not None:
            # Any handshake message ends what the connection had: a handshake in progress, or
            # its authentication (a new handshake re-authenticates, as on IIS).
            self._set_connection(request, NtlmConnection())
        try:
            token = base64.b64decode(param, validate=True)
        except (binascii.Error, ValueError):
            return None
        if token.startswith(_NTLM_NEGOTIATE):
            return self._negotiate(request, scheme, token)
        if token.startswith(_NTLM_AUTHENTICATE) and pending is not None:
            return self._authenticate(request, pending, token)
        # An Authenticate message without a handshake on this connection, or a token that is
        # not raw NTLM (e.g. a Kerberos SPNEGO token under "Negotiate").
        return None

    def _negotiate(self, request: web.Request, scheme: str, token: bytes) -> web.Response | None:
        try:
            with _ntlm_user_file(self._user_file):
                context = spnego.server(service="HTTP", protocol="ntlm")
                challenge = context.step(token)
        except Exception:  # a malformed token from the client must not become a 500
            log.debug("NTLM negotiate message rejected", exc_info=True)
            return None
        self._set_connection(request, NtlmConnection(context=context))
        # IIS answers in the scheme the client used, with only the Challenge message.
        response_scheme = "Negotiate" if scheme == "negotiate" else "NTLM"
        encoded = base64.b64encode(challenge or b"").decode()
        return web.Response(
            status=401, headers={"WWW-Authenticate": f"{response_scheme} {encoded}"}
        )

    def _authenticate(
        self, request: web.Request, pending: spnego.ContextProxy, token: bytes
    ) -> str | None:
        try:
            with _ntlm_user_file(self._user_file):
                pending.step(token)
        except Exception:  # wrong password, unknown user, malformed message
            log.debug("NTLM authenticate message rejected", exc_info=True)
            return None
        user = self._known_user(pending.client_principal or "") if pending.complete else None
        if user is None:
            return None
        self._set_connection(request, NtlmConnection(user=user))
        return user

    def _connection(self, request: web.Request) -> NtlmConnection | None:
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        return self.connections.get(transport)

    def _set_connection(self, request: web.Request, state: NtlmConnection) -> None:
        transport = request.transport
        if transport is None:
            return
        if transport not in self.connections:
            # request.task serves the whole keep-alive connection; it ends when it closes.
            request.task.add_done_callback(lambda _: self.connections.pop(transport, None))
        self.connections[transport] = state
