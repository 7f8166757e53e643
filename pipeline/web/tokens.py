"""Bearer tokens from EMAILLOG_API_TOKENS_FILE: who a presented token belongs to.

The file has one token per line, `name:TOKEN` or `name:sha256:HEX` (HEX: the SHA-256 of the
token, so the file need not hold the token itself); blank lines and `#` comments are
allowed. Only SHA-256 digests are kept in memory and compared, in constant time. The file is
re-read when it changes (a `stat` per request), so removing a line revokes a token without
a restart; a file that no longer parses refuses every token until it is fixed (failing
closed: a half-edited file must not keep a revoked token alive).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.logs import get_logger

log = get_logger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
#: A shorter token could be guessed; long random ones cost nothing (`openssl rand -hex 32`).
MIN_TOKEN_CHARS = 16


class TokenFileError(ValueError):
    """A line of the tokens file is not `name:TOKEN` or `name:sha256:HEX` (it names the
    line number, never the token)."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str) -> dict[str, bytes]:
    """Token name -> SHA-256 digest of the token, for every line of a tokens file."""
    tokens: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, secret = line.partition(":")
        name = name.strip()
        if not colon or not NAME.fullmatch(name):
            raise TokenFileError(f"line {number}: expected name:TOKEN or name:sha256:HEX")
        if name in tokens:
            raise TokenFileError(f"line {number}: the name {name!r} is listed twice")
        tokens[name] = _line_digest(secret.strip(), number)
    return tokens


def _line_digest(secret: str, number: int) -> bytes:
    if secret.startswith("sha256:"):
        hex_digest = secret.removeprefix("sha256:").strip()
        if not HEX_DIGEST.fullmatch(hex_digest):
            raise TokenFileError(f"line {number}: sha256: must be followed by 64 hex digits")
        return bytes.fromhex(hex_digest)
    if len(secret) < MIN_TOKEN_CHARS or any(c.isspace() for c in secret):
        raise TokenFileError(
            f"line {number}: the token must be at least {MIN_TOKEN_CHARS} characters, "
            "without spaces"
        )
    return digest(secret)


@dataclass(frozen=True, slots=True)
class _Loaded:
    signature: tuple[int, int, int]  # (inode, size, mtime_ns): changes when the file does
    tokens: dict[str, bytes]


class TokenStore:
    """The tokens of one file, re-read when the file changes."""

    def __init__(self, path: str) -> None:
        self._path = Path(path) if path else None
        self._loaded = _Loaded((0, 0, 0), {})

    def lookup(self, token: str) -> str | None:
        """The name of `token`, or None. Every entry is compared (no early exit), each in
        constant time, so timing tells nothing about which digest came close."""
        presented = digest(token)
        found: str | None = None
        for name, expected in self._current().items():
            if hmac.compare_digest(presented, expected):
                found = name
        return found

    def digest_of(self, name: str) -> bytes | None:
        """The digest listed for `name` now (None once its line is removed): a session
        started with a token ends when the token is revoked."""
        return self._current().get(name)

    def _current(self) -> dict[str, bytes]:
        if self._path is None:
            return {}
        try:
            stat = os.stat(self._path)
        except OSError:
            self._replace((0, 0, 0), {}, "tokens file unreadable: every token refused")
            return {}
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if signature != self._loaded.signature:
            self._reload(signature)
        return self._loaded.tokens

    def _reload(self, signature: tuple[int, int, int]) -> None:
        assert self._path is not None
        try:
            tokens = parse_tokens(self._path.read_text())
        except (OSError, TokenFileError) as exc:
            self._replace(signature, {}, f"tokens file invalid, every token refused: {exc}")
            return
        self._loaded = _Loaded(signature, tokens)
        log.info("tokens file loaded", extra={"fields": {"tokens": len(tokens)}})

    def _replace(self, signature: tuple[int, int, int], tokens: dict[str, bytes], why: str) -> None:
        if self._loaded.signature != signature or self._loaded.tokens:
            log.error(why)
        self._loaded = _Loaded(signature, tokens)
