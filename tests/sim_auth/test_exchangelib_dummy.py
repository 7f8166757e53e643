"""exchangelib 5.6 itself against the auth middleware, in front of a dummy EWS handler that
answers every request with a fixed ResolveNames response (no simulator needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from exchangelib import BASIC, NTLM, OAUTH2, Build, Configuration, Credentials, Version
from exchangelib.errors import ErrorNameResolutionNoResults, UnauthorizedError
from exchangelib.protocol import Protocol
from exchangelib.transport import NOAUTH
from oauthlib.oauth2.rfc6749.errors import InvalidClientError

from exchange_sim.auth import AuthConfig

from .conftest import USERS, Serve, Served, local_oauth2_credentials

VERSION = Version(build=Build(15, 1))


def protocol(served: Served, credentials: Any, auth_type: str | None) -> Protocol:
    config = Configuration(
        service_endpoint=served.ews_url,
        credentials=credentials,
        auth_type=auth_type,
        version=VERSION,
    )
    return Protocol(config=config)


def resolve(p: Protocol) -> list[Any]:
    return p.resolve_names(["nobody"])  # type: ignore[no-any-return]


def assert_no_results(results: list[Any]) -> None:
    assert len(results) == 1
    assert isinstance(results[0], ErrorNameResolutionNoResults)


@pytest.mark.parametrize(
    ("mode", "auth_type", "user"),
    [
        ("basic", BASIC, "EXAMPLE\\alice"),
        ("basic", BASIC, "bob@example.com"),
        ("ntlm", NTLM, "EXAMPLE\\alice"),
        ("ntlm", NTLM, "bob@example.com"),
        ("any", NTLM, "carol"),
        ("any", BASIC, "carol"),
    ],
)
async def test_exchangelib_authenticates(
    serve: Serve, mode: str, auth_type: str, user: str
) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS))
    p = protocol(served, Credentials(user, USERS[user]), auth_type)
    assert_no_results(await asyncio.to_thread(resolve, p))
    assert_no_results(await asyncio.to_thread(resolve, p))
    assert served.ews_users == [user, user]


@pytest.mark.parametrize(("mode", "auth_type"), [("basic", BASIC), ("ntlm", NTLM)])
async def test_exchangelib_wrong_password_raises_unauthorized(
    serve: Serve, mode: str, auth_type: str
) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS))
    p = protocol(served, Credentials("EXAMPLE\\alice", "wrong"), auth_type)
    with pytest.raises(UnauthorizedError, match="Invalid credentials"):
        await asyncio.to_thread(resolve, p)
    assert served.ews_users == []


@pytest.mark.parametrize(
    ("mode", "detected"),
    [("basic", BASIC), ("ntlm", NTLM), ("any", NTLM), ("oauth2", OAUTH2), ("none", NOAUTH)],
)
async def test_exchangelib_detects_the_auth_method_from_the_401(
    serve: Serve, mode: str, detected: str
) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS))
    p = protocol(served, Credentials("carol", USERS["carol"]), None)
    assert await asyncio.to_thread(lambda: p.auth_type) == detected


@pytest.mark.parametrize("mode", ["basic", "ntlm"])
async def test_exchangelib_without_auth_type_probes_then_works(serve: Serve, mode: str) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS))
    p = protocol(served, Credentials("carol", USERS["carol"]), None)
    assert_no_results(await asyncio.to_thread(resolve, p))
    assert served.ews_users[-1] == "carol"


@pytest.mark.parametrize("mode", ["oauth2", "any"])
async def test_exchangelib_oauth2_client_credentials(
    serve: Serve, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    served = await serve(AuthConfig(mode=mode, users=USERS))
    credentials = local_oauth2_credentials(served, "carol", USERS["carol"])
    p = protocol(served, credentials, OAUTH2)
    assert_no_results(await asyncio.to_thread(resolve, p))
    assert served.ews_users == ["carol"]


async def test_exchangelib_oauth2_wrong_secret(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    served = await serve(AuthConfig(mode="oauth2", users=USERS))
    p = protocol(served, local_oauth2_credentials(served, "carol", "wrong"), OAUTH2)
    # The token endpoint's invalid_client surfaces as oauthlib's error, as with Entra ID.
    with pytest.raises(InvalidClientError, match="AADSTS7000215"):
        await asyncio.to_thread(resolve, p)
    assert served.ews_users == []
