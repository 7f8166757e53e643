"""The UI's settings: EMAILLOG_UI_* and friends from the environment, and the start-up check
that refuses an unsafe or incomplete sign-in (`UiSettings.problems()`, run by `setup_auth`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiohttp import web

from pipeline.config import Settings, UiAuth, UiSettings
from pipeline.errors import ConfigError
from pipeline.web.auth import setup_auth
from pipeline.web.tokens import TokenFileError, parse_tokens
from tests.web.auth_kit import ALICE, tokens_file


def test_ui_settings_from_the_environment(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("c" * 40 + "\n")
    settings = Settings.from_env(
        {
            "EMAILLOG_UI_HOST": "127.0.0.1",
            "EMAILLOG_UI_PORT": "9000",
            "EMAILLOG_UI_AUTH": "OIDC",
            "EMAILLOG_UI_ADMINS": "alice, ops@example.com",
            "EMAILLOG_OIDC_ISSUER": "https://login.example.com/realms/x/",
            "EMAILLOG_OIDC_CLIENT_ID": "emaillog",
            "EMAILLOG_OIDC_CLIENT_SECRET_FILE": str(secret_file),
            "EMAILLOG_UI_PUBLIC_URL": "https://emaillog.example.com/",
            "EMAILLOG_UI_SESSION_HOURS": "12",
            "EMAILLOG_API_MAX_WAIT_SECONDS": "30",
        }
    )
    ui = settings.ui
    assert (ui.host, ui.port, ui.auth) == ("127.0.0.1", 9000, UiAuth.OIDC)
    assert ui.admins == ("alice", "ops@example.com")
    assert ui.oidc_issuer == "https://login.example.com/realms/x"
    assert ui.oidc_client_secret == "c" * 40
    assert ui.redirect_uri == "https://emaillog.example.com/auth/oidc/callback"
    assert (ui.session_hours, ui.api_max_wait_seconds) == (12.0, 30.0)
    assert ui.oidc_admin_claim == "groups"
    assert ui.problems() == []
    assert settings.redacted()["EMAILLOG_OIDC_CLIENT_SECRET"] == "***"


def test_defaults_are_secure() -> None:
    ui = Settings.from_env({}).ui
    assert (ui.host, ui.port, ui.auth) == ("0.0.0.0", 8081, UiAuth.TOKEN)
    assert ui.problems() == ["EMAILLOG_API_TOKENS_FILE: required for token sign-in"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EMAILLOG_UI_AUTH", "basic"),
        ("EMAILLOG_UI_SESSION_SECRET", "too-short"),
        ("EMAILLOG_UI_PUBLIC_URL", "emaillog.example.com"),
        ("EMAILLOG_UI_SESSION_HOURS", "0"),
    ],
)
def test_bad_values_are_config_errors(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert error.value.problems[0].startswith(variable)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "emaillog.example.com"])
def test_none_is_refused_unless_the_ui_binds_to_loopback(host: str) -> None:
    settings = UiSettings(auth=UiAuth.NONE, host=host)
    assert "refused" in settings.problems()[0]
    with pytest.raises(ConfigError):
        setup_auth(web.Application(), settings)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_none_is_allowed_on_loopback(host: str) -> None:
    settings = UiSettings(auth=UiAuth.NONE, host=host)
    assert settings.problems() == []
    setup_auth(web.Application(), settings)


def test_token_needs_a_readable_file_with_a_token(tmp_path: Path) -> None:
    missing = UiSettings(api_tokens_file=str(tmp_path / "nope"))
    assert "cannot read" in missing.problems()[0]
    empty = UiSettings(api_tokens_file=str(tokens_file(tmp_path, "# nobody yet\n\n")))
    assert empty.problems() == ["EMAILLOG_API_TOKENS_FILE: lists no token"]
    assert UiSettings(api_tokens_file=str(tokens_file(tmp_path))).problems() == []


def test_oidc_needs_issuer_client_secret_and_public_url() -> None:
    problems = UiSettings(auth=UiAuth.OIDC).problems()
    assert len(problems) == 4
    assert all("required for oidc" in p for p in problems)
    plain = UiSettings(
        auth=UiAuth.OIDC,
        oidc_issuer="http://login.example.com",
        oidc_client_id="c",
        oidc_client_secret="s",
        public_url="https://emaillog.example.com",
    )
    assert plain.problems() == ["EMAILLOG_OIDC_ISSUER: must be https (http only on loopback)"]


def test_token_lines() -> None:
    hashed = hashlib.sha256(b"x" * 20).hexdigest()
    text = f"# comment\n\nalice:{ALICE}\n  bob : sha256:{hashed.upper()}\nsvc.sync@crm:{'y' * 16}\n"
    tokens = parse_tokens(text)
    assert list(tokens) == ["alice", "bob", "svc.sync@crm"]
    assert tokens["bob"] == hashlib.sha256(b"x" * 20).digest()


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("just-a-secret-without-a-name", "expected name:TOKEN"),
        (":secret-secret-secret", "expected name:TOKEN"),
        ("alice:short", "at least 16 characters"),
        ("alice:has a space in the token", "without spaces"),
        ("alice:sha256:abc", "64 hex digits"),
        ("alice:" + "a" * 20 + "\nalice:" + "b" * 20, "listed twice"),
    ],
)
def test_a_bad_token_line_is_named_by_number_and_never_echoed(line: str, why: str) -> None:
    with pytest.raises(TokenFileError) as error:
        parse_tokens("# tokens\n" + line + "\n")
    message = str(error.value)
    assert why in message
    assert "line 2" in message or "line 3" in message
    for secret in ("secret-secret", "short", "has a space", "aaaa", "bbbb"):
        assert secret not in message


def test_a_bad_line_is_a_start_up_problem(tmp_path: Path) -> None:
    settings = UiSettings(api_tokens_file=str(tokens_file(tmp_path, f"alice:{ALICE}\noops\n")))
    assert settings.problems() == [
        "EMAILLOG_API_TOKENS_FILE: line 2: expected name:TOKEN or name:sha256:HEX"
    ]
