"""Certificate credentials at the token endpoint: checking a client assertion (RFC 7523) as
Entra ID does, for apps registered with a certificate instead of a secret.

An app whose registered credential is a PEM certificate must send
`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a JWT
signed RS256 with the certificate's key, naming the certificate by `x5t` (SHA-1) or
`x5t#S256`, with `aud` the token endpoint's URL, `iss` = `sub` = the client id, and a
validity window around now. Each failure answers with Entra ID's error code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CERTIFICATE_PREFIX = "-----BEGIN CERTIFICATE-----"
#: Entra ID tolerates this much clock skew on nbf/exp.
SKEW_SECONDS = 300


def is_certificate(credential: str) -> bool:
    return credential.lstrip().startswith(CERTIFICATE_PREFIX)


def assertion_problem(
    fields: Mapping[str, str], certificate_pem: str, token_url: str
) -> tuple[int, str] | None:
    """(Entra ID error code, description) when the assertion is not acceptable, else None."""
    if fields.get("client_assertion_type") != ASSERTION_TYPE or not fields.get("client_assertion"):
        return 7000218, "The request body must contain the following parameter: 'client_assertion'."
    try:
        header_b64, claims_b64, signature_b64 = fields["client_assertion"].split(".")
        header = _decode(header_b64)
        claims = _decode(claims_b64)
        signature = _unb64(signature_b64)
    except (ValueError, binascii.Error):
        return 50027, "JWT token is invalid or malformed."
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    thumbprints = {
        "x5t": _b64(hashlib.sha1(der).digest()),
        "x5t#S256": _b64(hashlib.sha256(der).digest()),
    }
    if header.get("alg") != "RS256" or not any(
        header.get(name) == value for name, value in thumbprints.items()
    ):
        return 700027, "Client assertion contains an invalid signature (unknown key)."
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return 700027, "Client assertion contains an invalid signature (not RSA)."
    try:
        signing_input = f"{header_b64}.{claims_b64}".encode("ascii")
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return 700027, "Client assertion failed signature validation."
    return _claims_problem(claims, fields.get("client_id", ""), token_url)


def _claims_problem(
    claims: dict[str, Any], client_id: str, token_url: str
) -> tuple[int, str] | None:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return 700021, "Client assertion application identifier doesn't match 'client_id'."
    if claims.get("aud") != token_url:
        return 700016, f"The audience of the client assertion must be {token_url}."
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        return 50027, "JWT token is invalid or malformed (exp/nbf)."
    if exp < now - SKEW_SECONDS or nbf > now + SKEW_SECONDS:
        return 700024, "Client assertion is not within its valid time range."
    return None


def _decode(part: str) -> dict[str, Any]:
    value = json.loads(_unb64(part))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
