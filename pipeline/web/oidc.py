"""OpenID Connect sign-in, the relying party's side: authorization code flow with PKCE
(S256), state and nonce, built on authlib (PKCE, ID token claim checks) and joserfc (the
signature against the provider's JWKS), with aiohttp for the few HTTP requests.

    login     start() -> (authorization URL, Pending)   Pending goes in a signed cookie
    callback  finish(code, pending) -> claims            state is compared by the caller

The provider is found by discovery (`{issuer}/.well-known/openid-configuration`), read once
per process; its keys are re-read when a token names a key id we have not seen (rotation).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from pipeline.config_ui import UiSettings

SCOPE = "openid email profile"
#: Clock skew allowed between us and the provider when checking exp/iat.
LEEWAY_SECONDS = 120
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


class OidcError(Exception):
    """The sign-in cannot complete: the provider refused, or its answer does not check out.
    The message is safe to show (no token, no claim values)."""


class ProviderUnavailable(OidcError):
    """The provider could not be reached or answered with an error status."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A sign-in in progress: what the callback must match (kept in a signed cookie)."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str

    def as_dict(self) -> dict[str, str]:
        return {"s": self.state, "n": self.nonce, "v": self.code_verifier, "p": self.next_path}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pending | None:
        values = [data.get(key) for key in ("s", "n", "v", "p")]
        if not all(isinstance(v, str) and v for v in values):
            return None
        return cls(*values)  # type: ignore[arg-type]


class OidcClient:
    """One configured provider. Holds the discovery document and keys once read."""

    def __init__(self, settings: UiSettings) -> None:
        self._settings = settings
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def start(self, next_path: str) -> tuple[str, Pending]:
        """The provider's authorization URL to send the browser to, and what to remember."""
        metadata = await self._discover()
        pending = Pending(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(48),  # 64 characters, within RFC 7636's 43-128
            next_path=next_path,
        )
        params = {
            "response_type": "code",
            "client_id": self._settings.oidc_client_id,
            "redirect_uri": self._settings.redirect_uri,
            "scope": SCOPE,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        return add_params_to_uri(metadata["authorization_endpoint"], params), pending

    async def finish(self, code: str, pending: Pending) -> dict[str, Any]:
        """Exchange `code` for tokens, check the ID token (signature, issuer, audience,
        expiry, nonce, at_hash) and return its claims merged with userinfo's."""
        metadata = await self._discover()
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                tokens = await self._token_request(http, metadata, code, pending)
                claims = await self._validated_claims(http, metadata, tokens, pending.nonce)
                if metadata.get("userinfo_endpoint") and tokens.get("access_token"):
                    userinfo = await self._userinfo(http, metadata, tokens["access_token"])
                    if userinfo.get("sub") != claims["sub"]:
                        raise OidcError("userinfo is about another subject")
                    claims = {**userinfo, **claims}  # the signed ID token wins
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(
                f"the provider cannot be reached ({type(exc).__name__})"
            ) from exc
        return claims

    async def _discover(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self._settings.oidc_issuer + "/.well-known/openid-configuration"
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                metadata = await _get_json(http, url)
            if metadata.get("issuer") != self._settings.oidc_issuer:
                raise OidcError("the discovery document names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(metadata.get(key), str):
                    raise OidcError(f"the discovery document has no {key}")
            self._metadata = metadata
        return self._metadata

    async def _token_request(
        self, http: aiohttp.ClientSession, metadata: dict[str, Any], code: str, pending: Pending
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._settings.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        client_id, secret = self._settings.oidc_client_id, self._settings.oidc_client_secret
        auth: aiohttp.BasicAuth | None = None
        # client_secret_basic is the spec's default; some providers only take _post.
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if "client_secret_basic" in methods:
            auth = aiohttp.BasicAuth(client_id, secret)
        else:
            form |= {"client_id": client_id, "client_secret": secret}
        async with http.post(metadata["token_endpoint"], data=form, auth=auth) as response:
            body = await _json_body(response)
            if response.status != 200:
                # The provider's error code (e.g. invalid_grant: a used or forged code).
                raise OidcError(f"the provider refused the code ({body.get('error', 'error')})")
        if not isinstance(body.get("id_token"), str):
            raise OidcError("the provider returned no ID token")
        return body

    async def _validated_claims(
        self,
        http: aiohttp.ClientSession,
        metadata: dict[str, Any],
        tokens: dict[str, Any],
        nonce: str,
    ) -> dict[str, Any]:
        algorithms = [
            alg
            for alg in metadata.get("id_token_signing_alg_values_supported", [])
            if alg != "none"
        ] or ["RS256"]
        registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
        id_token = tokens["id_token"]
        try:
            try:
                keys = await self._key_set(http, metadata)
                token = jwt.decode(id_token, keys, registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys since we read them
                self._keys = None
                keys = await self._key_set(http, metadata)
                token = jwt.decode(id_token, keys, registry=registry)
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": self._settings.oidc_issuer},
                "aud": {"essential": True, "value": self._settings.oidc_client_id},
            }
            params = {
                "nonce": nonce,
                "client_id": self._settings.oidc_client_id,
                "access_token": tokens.get("access_token"),
            }
            claims = CodeIDToken(token.claims, token.header, options, params)
            claims.validate(leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError) as exc:
            raise OidcError(
                f"the ID token does not check out ({type(exc).__name__}: {exc})"
            ) from exc
        return dict(claims)

    async def _key_set(self, http: aiohttp.ClientSession, metadata: dict[str, Any]) -> KeySet:
        if self._keys is None:
            self._keys = KeySet.import_key_set(await _get_json(http, metadata["jwks_uri"]))  # type: ignore[arg-type]
        return self._keys

    async def _userinfo(
        self, http: aiohttp.ClientSession, metadata: dict[str, Any], access_token: str
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {access_token}"}
        async with http.get(metadata["userinfo_endpoint"], headers=headers) as response:
            body = await _json_body(response)
            if response.status != 200:
                raise ProviderUnavailable(f"userinfo answered {response.status}")
        return body


async def _get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with http.get(url) as response:
            if response.status != 200:
                raise ProviderUnavailable(f"the provider answered {response.status}")
            return await _json_body(response)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderUnavailable(f"the provider cannot be reached ({type(exc).__name__})") from exc


async def _json_body(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}
