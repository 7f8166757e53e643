"""Certificate credentials for Entra ID: the signed client assertion (RFC 7523) that stands
in for a client secret when EMAILLOG_GRAPH_CERTIFICATE_FILE is set.

Microsoft's format ("Microsoft identity platform application authentication certificate
credentials"): a JWT signed RS256 with the certificate's private key; its header names the
certificate by `x5t` (base64url SHA-1 thumbprint of the DER certificate, as Entra ID still
matches it) and `x5t#S256`; `aud` is the token endpoint, `iss` and `sub` the client id, a
fresh `jti`, and a short life. The file is PEM holding the private key and the certificate
(what `openssl req -x509 -newkey rsa:2048 -nodes` writes, concatenated), read on every
token request so a rotated certificate is picked up without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.errors import ConfigError

#: How long an assertion is valid: Entra ID accepts up to 10 minutes of skew and life.
ASSERTION_LIFETIME_SECONDS = 300


def client_assertion(certificate_file: str, client_id: str, token_url: str) -> str:
    """A signed client assertion for one token request."""
    key, cert = _load(certificate_file)
    der = cert.public_bytes(serialization.Encoding.DER)
    header = {
        "alg": "RS256",
        "typ": "JWT",
        "x5t": _b64(hashlib.sha1(der).digest()),
        "x5t#S256": _b64(hashlib.sha256(der).digest()),
    }
    now = int(time.time())
    claims = {
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
    }
    signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64(signature)}"


def _load(certificate_file: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    try:
        pem = Path(certificate_file).read_bytes()
    except OSError as exc:
        raise ConfigError(
            [f"EMAILLOG_GRAPH_CERTIFICATE_FILE: cannot read {certificate_file!r}: {exc.strerror}"]
        ) from exc
    try:
        key = serialization.load_pem_private_key(pem, password=None)
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError(
            [
                "EMAILLOG_GRAPH_CERTIFICATE_FILE: expected PEM with an unencrypted RSA private "
                f"key and its certificate ({exc})"
            ]
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(["EMAILLOG_GRAPH_CERTIFICATE_FILE: the private key must be RSA"])
    return key, cert


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
