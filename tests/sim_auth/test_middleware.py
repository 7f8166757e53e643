"""The auth middleware and token endpoint, driven through real HTTP clients (requests,
requests_ntlm, pyspnego as an NTLM initiator) in worker threads."""

from __future__ import annotations

import asyncio
import base64

import pytest
import requests
import spnego
from requests.auth import HTTPBasicAuth
from requests_ntlm import HttpNtlmAuth

from exchange_sim.auth import BEARER_CHALLENGE, AuthConfig, auth_middleware

from .conftest import USERS, Serve

BASIC_REALM = 'Basic realm="127.0.0.1"'


def _post(url: str, **kwargs: object) -> requests.Response:
    return requests.post(url, data="<soap/>", timeout=30, **kwargs)  # type: ignore[arg-type]


async def post(url: str, **kwargs: object) -> requests.Response:
    return await asyncio.to_thread(_post, url, **kwargs)


def challenges(response: requests.Response) -> list[str]:
    """The WWW-Authenticate headers as sent, one entry per header line."""
    return list(response.raw.headers.getlist("WWW-Authenticate"))


# --- configuration --------------------------------------------------------------------------


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown auth mode"):
        AuthConfig(mode="kerberos")


def test_users_are_snapshotted() -> None:
    users = {"carol": "pw"}
    config = AuthConfig(mode="basic", users=users)
    users["mallory"] = "pw"
    assert dict(config.users) == {"carol": "pw"}


@pytest.mark.parametrize("users", [{"carol": "pass:word"}, {"EX:AMPLE\\carol": "pw"}])
def test_ntlm_rejects_credentials_its_user_file_cannot_hold(users: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="must not contain"):
        auth_middleware(AuthConfig(mode="ntlm", users=users))


# --- 401 challenges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("basic", [BASIC_REALM]),
        ("ntlm", ["Negotiate", "NTLM"]),
        ("oauth2", [BEARER_CHALLENGE]),
        ("any", [BEARER_CHALLENGE, "Negotiate", "NTLM", BASIC_REALM]),
    ],
)
async def test_missing_credentials_get_exchange_challenges(
    serve: Serve, mode: str, expected: list[str]
) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS))
    r = await post(served.ews_url)
    assert r.status_code == 401
    assert challenges(r) == expected
    assert ("MS-Diagnostics-Public" in r.headers) == (mode == "oauth2")
    assert served.ews_users == []


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":no-user").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Bearer",
        "Bearer not-a-token",
        "NTLM",
        "NTLM %%%",
        "NTLM " + base64.b64encode(b"NTLMSSP\x00\x01\x00\x00\x00").decode(),
        "NTLM " + base64.b64encode(b"NTLMSSP\x00\x03\x00\x00\x00garbage").decode(),
        "NTLM " + base64.b64encode(b"NTLMSSP\x00\x09\x00\x00\x00").decode(),
        "Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXc=",
        "Digest username=carol",
        "carol:carol-pw3",
        "",
    ],
)
async def test_malformed_authorization_is_a_401_not_a_crash(
    serve: Serve, authorization: str
) -> None:
    served = await serve(AuthConfig(mode="any", users=USERS))
    r = await post(served.ews_url, headers={"Authorization": authorization})
    assert r.status_code == 401
    assert "Traceback" not in r.text
    assert served.ews_users == []


# --- none, unprotected paths ----------------------------------------------------------------


async def test_mode_none_accepts_everything(serve: Serve) -> None:
    served = await serve(AuthConfig())
    assert (await post(served.ews_url)).status_code == 200
    assert (await post(served.ews_url, auth=HTTPBasicAuth("x", "y"))).status_code == 200
    assert served.ews_users == [None, None]


async def test_only_ews_paths_are_protected(serve: Serve) -> None:
    served = await serve(AuthConfig(mode="any", users=USERS))
    r = await asyncio.to_thread(requests.get, served.base + "/_sim/ping", timeout=30)
    assert (r.status_code, r.text) == (200, "pong")
    r = await post(served.base + "/ews/Exchange.asmx")  # IIS paths are case-insensitive
    assert r.status_code == 401


# --- Basic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["basic", "any"])
@pytest.mark.parametrize("user", list(USERS))
async def test_basic_accepts_each_user_form(serve: Serve, mode: str, user: str) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS))
    r = await post(served.ews_url, auth=HTTPBasicAuth(user, USERS[user]))
    assert r.status_code == 200
    assert served.ews_users == [user]


async def test_basic_user_names_are_case_insensitive(serve: Serve) -> None:
    served = await serve(AuthConfig(mode="basic", users=USERS))
    r = await post(served.ews_url, auth=HTTPBasicAuth("example\\ALICE", "Alice-pw1"))
    assert r.status_code == 200
    assert served.ews_users == ["EXAMPLE\\alice"]


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("EXAMPLE\\alice", "alice-pw1"),  # passwords are case-sensitive
        ("EXAMPLE\\alice", ""),
        ("alice", "Alice-pw1"),  # not the form given in users
        ("mallory", "Alice-pw1"),
    ],
)
async def test_basic_rejects_wrong_credentials(serve: Serve, user: str, password: str) -> None:
    served = await serve(AuthConfig(mode="basic", users=USERS))
    r = await post(served.ews_url, auth=HTTPBasicAuth(user, password))
    assert r.status_code == 401
    assert challenges(r) == [BASIC_REALM]
    assert served.ews_users == []


async def test_basic_is_refused_in_ntlm_mode(serve: Serve) -> None:
    served = await serve(AuthConfig(mode="ntlm", users=USERS))
    r = await post(served.ews_url, auth=HTTPBasicAuth("carol", "carol-pw3"))
    assert r.status_code == 401
    assert challenges(r) == ["Negotiate", "NTLM"]


# --- NTLM -----------------------------------------------------------------------------------


def _ntlm_session_twice(url: str, user: str, password: str) -> list[requests.Response]:
    with requests.Session() as session:
        session.auth = HttpNtlmAuth(user, password)
        return [session.post(url, data="<soap/>", timeout=30) for _ in range(2)]


@pytest.mark.parametrize("mode", ["ntlm", "any"])
@pytest.mark.parametrize("user", list(USERS))
async def test_ntlm_handshake_then_keep_alive_connection_stays_authenticated(
    serve: Serve, mode: str, user: str
) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS))
    first, second = await asyncio.to_thread(_ntlm_session_twice, served.ews_url, user, USERS[user])
    assert first.status_code == 200
    # Anonymous request -> 401; Negotiate (Type 1) -> 401 + Challenge; Authenticate -> 200.
    assert [h.status_code for h in first.history] == [401, 401]
    assert challenges(first.history[1])[0].startswith("NTLM TlRMTVNTUAACAAAA")
    # The second request carries no credentials: the connection is authenticated, as on IIS.
    assert second.status_code == 200
    assert second.history == []
    assert "Authorization" not in second.request.headers
    assert served.ews_users == [user, user]


async def test_ntlm_email_form_as_exchangelib_sends_it(serve: Serve) -> None:
    # exchangelib prefixes e-mail style user names with a backslash for NTLM (empty domain).
    served = await serve(AuthConfig(mode="ntlm", users=USERS))
    first, _ = await asyncio.to_thread(
        _ntlm_session_twice, served.ews_url, "\\bob@example.com", USERS["bob@example.com"]
    )
    assert first.status_code == 200
    assert served.ews_users[0] == "bob@example.com"


@pytest.mark.parametrize(
    ("user", "password"),
    [("EXAMPLE\\alice", "wrong"), ("EXAMPLE\\mallory", "Alice-pw1"), ("OTHER\\alice", "Alice-pw1")],
)
async def test_ntlm_rejects_wrong_credentials(serve: Serve, user: str, password: str) -> None:
    served = await serve(AuthConfig(mode="ntlm", users=USERS))
    responses = await asyncio.to_thread(_ntlm_session_twice, served.ews_url, user, password)
    assert [r.status_code for r in responses] == [401, 401]
    assert challenges(responses[0]) == ["Negotiate", "NTLM"]
    assert served.ews_users == []


async def test_ntlm_authentication_does_not_leak_to_other_connections(serve: Serve) -> None:
    served = await serve(AuthConfig(mode="ntlm", users=USERS))
    first, _ = await asyncio.to_thread(_ntlm_session_twice, served.ews_url, "carol", "carol-pw3")
    assert first.status_code == 200
    assert (await post(served.ews_url)).status_code == 401


def _manual_handshake(url: str, same_connection: bool, scheme: str) -> requests.Response:
    """Drive the NTLM handshake by hand, sending the Authenticate message either on the
    connection that got the Challenge or on a fresh one."""
    client = spnego.client("carol", "carol-pw3", protocol="ntlm")
    negotiate = base64.b64encode(client.step() or b"").decode()
    with requests.Session() as first, requests.Session() as other:
        r = first.post(url, headers={"Authorization": f"{scheme} {negotiate}"}, timeout=30)
        assert r.status_code == 401
        [challenge] = challenges(r)
        assert challenge.startswith(scheme + " ")
        token = client.step(base64.b64decode(challenge.split(" ", 1)[1])) or b""
        session = first if same_connection else other
        auth = f"{scheme} {base64.b64encode(token).decode()}"
        return session.post(url, headers={"Authorization": auth}, timeout=30)


@pytest.mark.parametrize("scheme", ["NTLM", "Negotiate"])
async def test_ntlm_authenticate_is_accepted_only_on_the_challenged_connection(
    serve: Serve, scheme: str
) -> None:
    served = await serve(AuthConfig(mode="ntlm", users=USERS))
    same = await asyncio.to_thread(_manual_handshake, served.ews_url, True, scheme)
    assert same.status_code == 200
    other = await asyncio.to_thread(_manual_handshake, served.ews_url, False, scheme)
    assert other.status_code == 401
    assert served.ews_users == ["carol"]


async def test_two_servers_keep_their_own_ntlm_users(serve: Serve) -> None:
    a = await serve(AuthConfig(mode="ntlm", users={"carol": "carol-pw3"}))
    b = await serve(AuthConfig(mode="ntlm", users={"dave": "dave-pw4"}))
    carol_on_a, _ = await asyncio.to_thread(_ntlm_session_twice, a.ews_url, "carol", "carol-pw3")
    carol_on_b, _ = await asyncio.to_thread(_ntlm_session_twice, b.ews_url, "carol", "carol-pw3")
    dave_on_b, _ = await asyncio.to_thread(_ntlm_session_twice, b.ews_url, "dave", "dave-pw4")
    assert (carol_on_a.status_code, carol_on_b.status_code, dave_on_b.status_code) == (
        200,
        401,
        200,
    )


# --- OAuth2 ---------------------------------------------------------------------------------

SCOPE = "https://outlook.office365.com/.default"


def _token_form(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": "carol",
        "client_secret": "carol-pw3",
        "scope": SCOPE,
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v}


async def fetch_token(token_url: str, form: dict[str, str]) -> requests.Response:
    return await asyncio.to_thread(requests.post, token_url, data=form, timeout=30)


@pytest.mark.parametrize("mode", ["oauth2", "any"])
async def test_client_credentials_token_is_accepted_as_bearer(serve: Serve, mode: str) -> None:
    served = await serve(AuthConfig(mode=mode, users=USERS, token_lifetime_seconds=1234))
    r = await fetch_token(served.token_url, _token_form())
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1234
    token = body["access_token"]
    r = await post(served.ews_url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert served.ews_users == ["carol"]


async def test_tokens_are_random_and_distinct(serve: Serve) -> None:
    served = await serve(AuthConfig(mode="oauth2", users=USERS))
    tokens = {(await fetch_token(served.token_url, _token_form())).json()["access_token"]}
    tokens.add((await fetch_token(served.token_url, _token_form())).json()["access_token"])
    assert len(tokens) == 2


async def test_expired_token_is_refused(serve: Serve) -> None:
    served = await serve(AuthConfig(mode="oauth2", users=USERS, token_lifetime_seconds=0))
    token = (await fetch_token(served.token_url, _token_form())).json()["access_token"]
    r = await post(served.ews_url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert challenges(r) == [BEARER_CHALLENGE + ', error="invalid_token"']
    assert r.content == b""


async def test_tokens_of_another_server_are_refused(serve: Serve) -> None:
    a = await serve(AuthConfig(mode="oauth2", users=USERS))
    b = await serve(AuthConfig(mode="oauth2", users=USERS))
    token = (await fetch_token(a.token_url, _token_form())).json()["access_token"]
    r = await post(b.ews_url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


async def test_bearer_is_refused_in_basic_mode(serve: Serve) -> None:
    served = await serve(AuthConfig(mode="basic", users=USERS))
    token = (await fetch_token(served.token_url, _token_form())).json()["access_token"]
    r = await post(served.ews_url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert challenges(r) == [BASIC_REALM]


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        (_token_form(client_secret="wrong"), 401, "invalid_client", 7000215),
        (_token_form(client_secret=""), 401, "invalid_client", 7000218),
        (_token_form(client_id="mallory"), 400, "unauthorized_client", 700016),
        (_token_form(client_id=""), 400, "invalid_request", 900144),
        (_token_form(grant_type="password"), 400, "unsupported_grant_type", 70003),
        (_token_form(grant_type=""), 400, "invalid_request", 900144),
        (_token_form(scope=""), 400, "invalid_request", 900144),
        (
            _token_form(scope="https://outlook.office365.com/EWS.AccessAsUser.All"),
            400,
            "invalid_scope",
            1002012,
        ),
    ],
)
async def test_token_endpoint_errors_look_like_entra_id(
    serve: Serve, form: dict[str, str], status: int, error: str, code: int
) -> None:
    served = await serve(AuthConfig(mode="oauth2", users=USERS))
    r = await fetch_token(served.token_url, form)
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "access_token" not in body


async def test_ntlm_state_is_dropped_when_the_connection_closes(serve: Serve) -> None:
    # White-box: the per-connection NTLM table of the middleware the app is using.
    config = AuthConfig(mode="ntlm", users=USERS)
    middleware = auth_middleware(config)
    table = middleware.__self__.ntlm.connections  # type: ignore[attr-defined]
    served = await serve(config, middleware)

    def handshake_and_count() -> tuple[int, int]:
        with requests.Session() as session:
            session.auth = HttpNtlmAuth("carol", "carol-pw3")
            return session.post(served.ews_url, data="<soap/>", timeout=30).status_code, len(table)

    assert await asyncio.to_thread(handshake_and_count) == (200, 1)
    for _ in range(500):  # the server notices the client's close asynchronously
        if not table:
            break
        await asyncio.sleep(0.01)
    assert table == {}
