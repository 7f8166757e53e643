"""Signed values for cookies: a session, the OpenID Connect sign-in in progress, CSRF tokens.

A signed value is `base64url(JSON) "." base64url(HMAC-SHA256)`, readable by its holder but
not forgeable. Each use has its own key derived from the one secret (`purpose`), so a value
signed for one cookie is never accepted as another. Every value carries its expiry (`exp`,
Unix seconds) and is refused after it, whatever the browser keeps.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from pipeline.logs import get_logger

log = get_logger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def random_secret() -> str:
    """A fresh secret for this process only (EMAILLOG_UI_SESSION_SECRET unset)."""
    log.warning(
        "EMAILLOG_UI_SESSION_SECRET is not set: sessions are signed with a random key and "
        "end when this process restarts; replicas do not share them"
    )
    return secrets.token_urlsafe(32)


class Signer:
    """Signs and checks values with keys derived from one secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def _key(self, purpose: str) -> bytes:
        return hmac.new(self._secret, b"emaillog:" + purpose.encode(), hashlib.sha256).digest()

    def mac(self, purpose: str, message: str) -> str:
        return _b64(hmac.new(self._key(purpose), message.encode(), hashlib.sha256).digest())

    def sign(self, purpose: str, payload: dict[str, Any], *, seconds: float) -> str:
        body = _b64(json.dumps({**payload, "exp": int(time.time() + seconds)}).encode())
        return body + "." + self.mac(purpose, body)

    def unsign(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """The payload of a value this signer made for `purpose` and not expired; else None."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac.encode(), self.mac(purpose, body).encode()):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            return None
        return payload if payload["exp"] > time.time() else None
