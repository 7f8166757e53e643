"""The web UI and REST API group of `Settings` (`settings.ui`): where it listens, how
people and programs sign in (`EMAILLOG_UI_AUTH`), sessions and the API's limits.

`problems()` says what the chosen sign-in needs, checked when the UI starts (`setup_auth`):
`none` only on a loopback address, `token` a readable tokens file with at least one token,
`oidc` an issuer, a client, a secret and the public URL the provider redirects back to.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config_values import (
    choice,
    int_in,
    parse_csv,
    positive_float,
    setting,
)
from pipeline.web.tokens import TokenFileError, parse_tokens


class UiAuth(enum.StrEnum):
    """EMAILLOG_UI_AUTH: how people and programs prove who they are."""

    OIDC = "oidc"
    TOKEN = "token"
    NONE = "none"


#: A session secret shorter than this is guessable offline from one signed cookie.
MIN_SECRET_CHARS = 32


def session_secret(raw: str) -> str:
    value = raw.strip()
    if value and len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
    return value


def base_url(raw: str) -> str:
    """An http(s) URL without path, query or trailing slash: https://emaillog.example.com."""
    value = raw.strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ValueError(f"expected like https://emaillog.example.com, got {raw!r}")
    return value


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable only from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class UiSettings:
    host: str = setting("UI_HOST", "0.0.0.0", doc="address the web UI and REST API listen on")
    port: int = setting(
        "UI_PORT", 8081, int_in(0, 65535), "port of the web UI and REST API; 0: none"
    )
    auth: UiAuth = setting(
        "UI_AUTH", UiAuth.TOKEN, choice(UiAuth), "oidc, token or none (none: loopback only)"
    )
    api_tokens_file: str = setting(
        "API_TOKENS_FILE",
        "",
        doc="bearer tokens, one name:TOKEN or name:sha256:HEX per line (re-read on change)",
    )
    admins: tuple[str, ...] = setting(
        "UI_ADMINS",
        (),
        parse_csv,
        "comma-separated token names, OIDC subjects or e-mails that are administrators",
    )
    oidc_issuer: str = setting(
        "OIDC_ISSUER", "", base_url, "OpenID Connect issuer URL (discovery is read from it)"
    )
    oidc_client_id: str = setting("OIDC_CLIENT_ID", "", doc="client id registered at the issuer")
    oidc_client_secret: str = setting("OIDC_CLIENT_SECRET", "", doc="client secret (or ..._FILE)")
    oidc_admin_claim: str = setting(
        "OIDC_ADMIN_CLAIM", "groups", doc="ID token/userinfo claim that marks administrators"
    )
    oidc_admin_value: str = setting(
        "OIDC_ADMIN_VALUE", "", doc="value of that claim (or one of its values) for admins"
    )
    public_url: str = setting(
        "UI_PUBLIC_URL",
        "",
        base_url,
        "the UI's address as browsers see it; https makes cookies Secure; required for oidc",
    )
    session_secret: str = setting(
        "UI_SESSION_SECRET",
        "",
        session_secret,
        "signs session cookies (or ..._FILE); empty: random per process",
    )
    session_hours: float = setting(
        "UI_SESSION_HOURS", 8.0, positive_float, "how long a sign-in lasts"
    )
    api_max_wait_seconds: float = setting(
        "API_MAX_WAIT_SECONDS", 60.0, positive_float, "cap of the API's long-poll wait_seconds"
    )

    @property
    def redirect_uri(self) -> str:
        """Where the OpenID provider sends the browser back (register it there)."""
        return self.public_url + "/auth/oidc/callback"

    def problems(self) -> list[str]:
        """What the chosen sign-in needs to run safely, one problem per line."""
        if self.auth is UiAuth.NONE:
            if is_loopback(self.host):
                return []
            return [
                f"EMAILLOG_UI_AUTH=none: refused on EMAILLOG_UI_HOST={self.host!r}; "
                "without sign-in the UI may only listen on a loopback address (127.0.0.1, ::1)"
            ]
        problems = self._tokens_file_problems(required=self.auth is UiAuth.TOKEN)
        if self.auth is UiAuth.OIDC:
            problems += self._oidc_problems()
        return problems

    def _tokens_file_problems(self, *, required: bool) -> list[str]:
        if not self.api_tokens_file:
            return ["EMAILLOG_API_TOKENS_FILE: required for token sign-in"] if required else []
        try:
            tokens = parse_tokens(Path(self.api_tokens_file).read_text())
        except OSError as exc:
            return [f"EMAILLOG_API_TOKENS_FILE: cannot read {self.api_tokens_file!r}: {exc}"]
        except TokenFileError as exc:
            return [f"EMAILLOG_API_TOKENS_FILE: {exc}"]
        if required and not tokens:
            return ["EMAILLOG_API_TOKENS_FILE: lists no token"]
        return []

    def _oidc_problems(self) -> list[str]:
        needed = {
            "EMAILLOG_OIDC_ISSUER": self.oidc_issuer,
            "EMAILLOG_OIDC_CLIENT_ID": self.oidc_client_id,
            "EMAILLOG_OIDC_CLIENT_SECRET(_FILE)": self.oidc_client_secret,
            "EMAILLOG_UI_PUBLIC_URL (the redirect URI derives from it)": self.public_url,
        }
        problems = [
            f"{name}: required for oidc sign-in" for name, value in needed.items() if not value
        ]
        issuer = urlsplit(self.oidc_issuer)
        # Discovery and keys over plain http could be swapped in transit: https, except a
        # provider on this machine (development, tests).
        if self.oidc_issuer and issuer.scheme != "https" and not is_loopback(issuer.hostname or ""):
            problems.append("EMAILLOG_OIDC_ISSUER: must be https (http only on loopback)")
        return problems


__all__ = ["MIN_SECRET_CHARS", "UiAuth", "UiSettings", "is_loopback"]
