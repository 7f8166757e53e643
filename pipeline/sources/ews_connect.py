"""Building the exchangelib Account and resolving folder paths (blocking; run in a worker).

Every choice here avoids a known exchangelib trap (../shared/research/ews-exchangelib.md):
explicit `auth_type` and `version` (no probe requests), explicit `access_type` (with
`config=` alone it silently defaults to impersonation), `max_connections` sized for the
stream plus the workers (the default pool of ONE connection deadlocks as soon as a stream
holds it), FailFast (we retry ourselves; FaultTolerance would sleep inside our workers),
and `//` folder navigation (`/` would fill the whole folder cache of the mailbox).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Build,
    Configuration,
    Credentials,
    FailFast,
    Identity,
    OAuth2Credentials,
    Version,
)
from exchangelib.errors import ErrorFolderNotFound, SessionPoolMinSizeReached
from exchangelib.protocol import BaseProtocol, NoVerifyHTTPAdapter, Protocol
from exchangelib.transport import NOAUTH

from pipeline.config import EwsAuth, EwsSettings, FolderPath
from pipeline.errors import FolderNotFound
from pipeline.sources.ews_gate import gate_for
from pipeline.sources.ews_route import apply_route

#: Connections beyond the stream and the workers: the close-time Unsubscribe and a call
#: racing a stream reconnect must never wait for a session.
SPARE_CONNECTIONS = 1


class _OAuth2CredentialsAt(OAuth2Credentials):  # type: ignore[misc]
    """OAuth2 client credentials with the token endpoint overridden (tests, sovereign clouds)."""

    def __init__(self, *, token_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._token_url_override = token_url

    @property
    def token_url(self) -> str:
        return self._token_url_override


def configuration(ews: EwsSettings) -> tuple[Any, Any]:
    """The exchangelib Configuration and the access type for these settings."""
    credentials: Any
    if ews.auth is EwsAuth.OAUTH2:
        oauth_args: dict[str, Any] = {
            "client_id": ews.client_id,
            "client_secret": ews.client_secret,
            "tenant_id": ews.tenant_id,
            "identity": Identity(primary_smtp_address=ews.mailbox),
        }
        if ews.token_url:
            credentials = _OAuth2CredentialsAt(token_url=ews.token_url, **oauth_args)
        else:
            credentials = OAuth2Credentials(**oauth_args)
        auth_type, access_type = OAUTH2, IMPERSONATION  # app-only tokens act by impersonation
    elif ews.auth is EwsAuth.NONE:
        credentials, auth_type, access_type = None, NOAUTH, DELEGATE
    else:
        credentials = Credentials(ews.username, ews.password)
        auth_type, access_type = (BASIC if ews.auth is EwsAuth.BASIC else NTLM), DELEGATE
    config = Configuration(
        service_endpoint=ews.url,
        credentials=credentials,
        auth_type=auth_type,
        version=Version(build=Build(*(int(n) for n in ews.version.split(".")))),
        retry_policy=FailFast(),
        max_connections=1 + ews.worker_threads + SPARE_CONNECTIONS,
    )
    return config, access_type


#: How much of an in-memory response body one iter_content() step hands the XML parser.
IN_MEMORY_CHUNK_BYTES = 64 * 1024


class _SlicedResponse(requests.Response):
    """exchangelib parses every response through `iter_content()` with requests' default
    chunk size of ONE byte: for a body already in memory that is a Python call per byte (a
    sixth of the service's CPU in the benchmark's profile). In-memory bodies are handed over
    in slices instead; a streaming body (GetStreamingEvents) is read as its chunks come
    (ews_documents.py)."""

    last_bytes_at = 0.0  # time.monotonic() of the last bytes of a streaming body

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Any:
        # requests' own flag for "the whole body is in memory" (a non-streaming request).
        in_memory: bool = getattr(self, "_content_consumed", False)
        if in_memory and chunk_size == 1:
            chunk_size = IN_MEMORY_CHUNK_BYTES
            # BackOffMilliseconds in a fault or in a response message (HTTP 200).
            gate_for(self.url or "").observe(self.status_code, None, self.content)
            return super().iter_content(chunk_size, decode_unicode)
        return self._stamped(super().iter_content(chunk_size, decode_unicode))

    def _stamped(self, chunks: Iterator[Any]) -> Iterator[Any]:
        """A streaming body: note when bytes last came (keep-alives included), which
        exchangelib never tells its caller; the stream watchdog reads `last_bytes_at`."""
        for chunk in chunks:
            self.last_bytes_at = time.monotonic()
            if b"BackOffMilliseconds" in chunk:  # ErrorServerBusy inside the stream's body
                gate_for(self.url or "").observe(self.status_code, None, chunk)
            yield chunk


class _SlicedReads:
    """Also the process's back-off gate (ews_gate.py): every exchangelib request waits for
    it, and every response that asks for a back-off (Retry-After here, BackOffMilliseconds
    in `_SlicedResponse.iter_content`) holds it."""

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        apply_route(request.headers)  # public-folder content (ews_route.py)
        gate = gate_for(request.url or "")
        gate.wait()
        response: requests.Response = super().send(  # type: ignore[misc]
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
        # Headers only here: reading the body now would take the socket from under auth
        # hooks (NTLM reads it); bodies are looked at as exchangelib parses them (below).
        gate.observe(response.status_code, response.headers, None)  # type: ignore[arg-type]
        return response

    def build_response(self, req: Any, resp: Any) -> requests.Response:
        response: requests.Response = super().build_response(req, resp)  # type: ignore[misc]
        response.__class__ = _SlicedResponse
        return response


class SlicedHTTPAdapter(_SlicedReads, requests.adapters.HTTPAdapter):
    pass


class SlicedNoVerifyHTTPAdapter(_SlicedReads, NoVerifyHTTPAdapter):  # type: ignore[misc]
    pass


def set_http_adapter(verify_tls: bool) -> None:
    """exchangelib chooses its HTTP adapter per class, not per account: this is process-wide."""
    BaseProtocol.HTTP_ADAPTER_CLS = SlicedHTTPAdapter if verify_tls else SlicedNoVerifyHTTPAdapter


def forget_protocol(config: Any) -> None:
    """Drop exchangelib's cached Protocol for this endpoint and credentials and close its
    idle sessions. Protocols are cached per (endpoint, credentials) and a cached one keeps
    the pool size and retry policy of whoever created it first."""
    with suppress(KeyError):
        protocol, _ = Protocol[config]
        del Protocol[config]
        if not isinstance(protocol, Exception):
            protocol.close()


def connect(ews: EwsSettings) -> Any:
    """An exchangelib Account for the queue mailbox (blocking)."""
    set_http_adapter(ews.verify_tls)
    config, access_type = configuration(ews)
    forget_protocol(config)  # our pool size and FailFast must apply, not a stale cache entry's
    account = Account(
        primary_smtp_address=ews.mailbox,
        config=config,
        access_type=access_type,
        autodiscover=False,
    )
    # BaseProtocol.TIMEOUT is a class attribute; exchangelib reads it through the instance,
    # so an instance attribute sets it for this endpoint only.
    account.protocol.TIMEOUT = ews.timeout_seconds
    account.protocol.decrease_poolsize = _keep_pool_size
    _read_environment_once(account.protocol, ews.url)
    return account


def _read_environment_once(protocol: Any, url: str) -> None:
    """Sessions that read the proxy and CA-bundle variables once, when made.

    requests looks at the environment on every request (HTTP(S)_PROXY, NO_PROXY, the CA
    bundle variables, ~/.netrc): in the profile at 100 messages a second, iterating
    os.environ and stat()ing files took several percent of the service's busy time. The
    same settings are applied to each session when exchangelib makes it, then `trust_env`
    is off. The difference: the
    variables are read at start, not per request (and ~/.netrc is never read: exchangelib
    sends the credentials it is given)."""
    create = protocol.create_session

    def create_session() -> Any:
        session = create()
        session.proxies.update(requests.utils.get_environ_proxies(url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle and session.verify is True:
            session.verify = bundle
        session.trust_env = False
        return session

    protocol.create_session = create_session
    protocol.close()  # a session made before this (none is in use yet) is made again


def _keep_pool_size() -> None:
    """Replaces the protocol's decrease_poolsize(): the session pool never shrinks.

    exchangelib shrinks its pool on ErrorServerBusy and ErrorExceededConnectionCount, taking
    a session while holding the pool lock; when none is idle (the stream holds one for
    minutes) it tries to grow the pool under that same non-reentrant lock, and every worker
    thread deadlocks for good (tests/reliability: connection_limit). Our concurrency is
    bounded by EMAILLOG_EWS_WORKER_THREADS anyway; the error reaches the runner, which backs
    off and retries."""
    raise SessionPoolMinSizeReached("the session pool is sized by EMAILLOG_EWS_WORKER_THREADS")


def resolve_folder(account: Any, path: FolderPath) -> Any:
    """The folder at `path` (blocking): one FindFolder per level with `//`."""
    folder = account.public_folders_root if path.public else account.msg_folder_root
    for part in path.parts:
        try:
            folder = folder // part
        except ErrorFolderNotFound as exc:
            raise FolderNotFound(f"folder {str(path)!r} not found (missing {part!r})") from exc
    return folder


def shutdown_stream_socket(service: Any) -> bool:
    """Shut down the socket under a streaming exchangelib service's response (guarded).

    Returns True when a socket was found. `shutdown` (not `close`) wakes a reader blocked
    in recv() on another thread; it sees EOF and requests raises ChunkedEncodingError."""
    response = getattr(service, "_streaming_response", None)
    if response is None:
        return False
    # requests.Response.raw is urllib3's HTTPResponse; _fp is http.client's response whose
    # fp is a BufferedReader over socket.SocketIO (urllib3 2.x, CPython 3.11+).
    for path in (("raw", "_fp", "fp", "raw", "_sock"), ("raw", "_connection", "sock")):
        obj: Any = response
        try:
            for attr in path:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        if isinstance(obj, socket.socket):
            with suppress(OSError):
                obj.shutdown(socket.SHUT_RDWR)
            return True
    return False
