"""IMAP connections for the IMAP source: TLS modes, authentication, folders, errors.

Everything here is synchronous (imapclient over imaplib) and runs in the source's worker
threads. `connect()` gives a logged-in `IMAPClient`; `resolve_folders()` maps the configured
folder paths onto the server's hierarchy delimiter (found with LIST "" "") and finds the
`\\Trash` special-use folder (RFC 6154); `failure()` turns what imaplib and the socket
raise into the pipeline's `Retryable` errors.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import imapclient
import imapclient.imapclient
from imapclient import IMAPClient

from pipeline.config import ImapSettings
from pipeline.config_values import FolderPath, ImapAuth, ImapSecurity
from pipeline.errors import FolderNotFound, Retryable, SourceUnavailable, Throttled

#: IMAP has no back-off value. RFC 5530 response codes that mean "busy" get this wait
#: unless the server's text names a number of seconds ("... retry in 30 seconds").
DEFAULT_BUSY_SECONDS = 5.0
_BUSY = re.compile(r"\[(LIMIT|UNAVAILABLE|INUSE|THROTTLED)\]", re.IGNORECASE)
_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*s(?:ec(?:ond)?s?)?\b", re.IGNORECASE)
#: What a broken connection raises: the socket, TLS, or imaplib noticing EOF / garbage.
CONNECTION_ERRORS = (OSError, imaplib.IMAP4.abort, EOFError)


def port_of(cfg: ImapSettings) -> int:
    if cfg.port:
        return cfg.port
    return 993 if cfg.security is ImapSecurity.TLS else 143


def tls_context(cfg: ImapSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cfg.ca_file or None)
    if not cfg.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(cfg: ImapSettings) -> IMAPClient:
    """A connected, authenticated client (UIDs everywhere, aware INTERNALDATEs)."""
    context = tls_context(cfg) if cfg.security is not ImapSecurity.NONE else None
    try:
        client = IMAPClient(
            cfg.host,
            port=port_of(cfg),
            ssl=cfg.security is ImapSecurity.TLS,
            ssl_context=context,
            timeout=cfg.timeout_seconds,
            use_uid=True,
        )
    except ssl.SSLCertVerificationError as exc:
        raise SourceUnavailable(f"IMAP server certificate refused: {exc.verify_message}") from exc
    except CONNECTION_ERRORS as exc:
        raise SourceUnavailable(f"cannot reach IMAP server {cfg.host}: {exc}") from exc
    client.normalise_times = False
    try:
        if cfg.security is ImapSecurity.STARTTLS:
            client.starttls(context)
        _authenticate(client, cfg)
    except ssl.SSLCertVerificationError as exc:
        _quietly_close(client)
        raise SourceUnavailable(f"IMAP server certificate refused: {exc.verify_message}") from exc
    except BaseException:
        _quietly_close(client)
        raise
    return client


def _authenticate(client: IMAPClient, cfg: ImapSettings) -> None:
    try:
        if cfg.auth is ImapAuth.XOAUTH2:
            client.oauth2_login(cfg.username, _token(cfg))
        elif cfg.auth is ImapAuth.PLAIN:
            client.plain_login(cfg.username, cfg.password)
        else:
            client.login(cfg.username, cfg.password)
    except imapclient.exceptions.LoginError as exc:
        raise SourceUnavailable(f"IMAP login as {cfg.username!r} refused: {exc}") from exc


def _token(cfg: ImapSettings) -> str:
    """Read at every connection: a token refresher rewrites the file in place."""
    try:
        return Path(cfg.oauth2_token_file).read_text().strip()
    except OSError as exc:
        raise SourceUnavailable(f"cannot read the XOAUTH2 token: {exc.strerror}") from exc


def abandon(client: IMAPClient) -> None:
    """Close the socket without a word to the server."""
    _quietly_close(client)


def _quietly_close(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()


def close(client: IMAPClient | None) -> None:
    """LOGOUT, best effort; the socket is closed either way."""
    if client is None:
        return
    try:
        client.logout()
    except Exception:
        _quietly_close(client)


@dataclass(frozen=True, slots=True)
class Folders:
    """Server names of the folders the source uses (in the server's hierarchy)."""

    delimiter: str
    queue: str
    storage: str
    disposal: str | None
    trash: str | None


def resolve_folders(
    client: IMAPClient, queue: FolderPath, storage: FolderPath, disposal: FolderPath | None
) -> Folders:
    """Map configured paths onto the server's delimiter; FolderNotFound if one is missing."""
    listed = client.list_folders("", "")  # LIST "" "": the hierarchy delimiter (RFC 3501)
    raw = listed[0][1] if listed and listed[0][1] else b"/"
    delimiter = raw.decode() if isinstance(raw, bytes) else str(raw)

    prefixes = _personal_prefixes(client)

    def name(path: FolderPath, variable: str) -> str:
        folder = delimiter.join(path.parts)
        # As written, else under the personal namespace's prefix ("INBOX." on servers that
        # keep every folder under INBOX): either spelling of the path works.
        for candidate in [folder] + [p + folder for p in prefixes if not folder.startswith(p)]:
            if client.folder_exists(candidate):
                return candidate
        raise FolderNotFound(f"{variable}: no IMAP folder {folder!r}")

    return Folders(
        delimiter=delimiter,
        queue=name(queue, "EMAILLOG_QUEUE_FOLDER"),
        storage=name(storage, "EMAILLOG_STORAGE_FOLDER"),
        disposal=name(disposal, "EMAILLOG_DISPOSAL") if disposal is not None else None,
        trash=client.find_special_folder(imapclient.imapclient.TRASH),
    )


def _personal_prefixes(client: IMAPClient) -> list[str]:
    """The personal namespaces' non-empty prefixes (RFC 2342), when the server has NAMESPACE."""
    if not client.has_capability("NAMESPACE"):
        return []
    prefixes = []
    for prefix, _ in client.namespace().personal or ():
        text = prefix.decode() if isinstance(prefix, bytes) else str(prefix)
        if text:
            prefixes.append(text)
    return prefixes


def failure(exc: BaseException, what: str) -> Retryable:
    """The pipeline's error for a failed IMAP call: Throttled for RFC 5530 "busy" codes,
    else SourceUnavailable (a NO/BAD the server may not repeat, or a lost connection)."""
    text = str(exc)
    busy = _BUSY.search(text)
    if busy is not None:
        seconds = _SECONDS.search(text[busy.end() :])
        retry_after = float(seconds.group(1)) if seconds else DEFAULT_BUSY_SECONDS
        return Throttled(f"IMAP {what}: server busy: {text[:200]}", retry_after)
    if isinstance(exc, socket.timeout | TimeoutError):
        return SourceUnavailable(f"IMAP {what}: timed out")
    return SourceUnavailable(f"IMAP {what} failed: {type(exc).__name__}: {text[:200]}")
