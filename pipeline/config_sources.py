"""The groups of `Settings` that belong to one mail source each: `EwsSettings`,
`ImapSettings`, `GraphSettings` (mounted as `settings.source.ews`, `.imap`, `.graph`).

Each declares its fields with `config_values.setting` and says with `problems()` what it
needs to run that has no default; `config.SourceSettings.problems()` asks the chosen one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config_values import (
    EwsAuth,
    ImapAuth,
    ImapSecurity,
    choice,
    ews_version,
    int_in,
    parse_bool,
    positive_float,
    positive_int,
    setting,
)


@dataclass(frozen=True)
class EwsSettings:
    url: str = setting("EWS_URL", "", doc="EWS endpoint, https://host/EWS/Exchange.asmx")
    mailbox: str = setting("EWS_MAILBOX", "", doc="SMTP address of the mailbox holding the queue")
    auth: EwsAuth = setting("EWS_AUTH", EwsAuth.NTLM, choice(EwsAuth), "basic, ntlm, oauth2, none")
    username: str = setting("EWS_USERNAME", "", doc="DOMAIN\\user or UPN for basic/ntlm")
    password: str = setting("EWS_PASSWORD", "", doc="password for basic/ntlm (or ..._FILE)")
    client_id: str = setting("EWS_CLIENT_ID", "", doc="OAuth2 application (client) id")
    client_secret: str = setting("EWS_CLIENT_SECRET", "", doc="OAuth2 client secret (or ..._FILE)")
    tenant_id: str = setting("EWS_TENANT_ID", "", doc="OAuth2 tenant id")
    token_url: str = setting("EWS_TOKEN_URL", "", doc="override of the OAuth2 token URL (tests)")
    version: str = setting("EWS_VERSION", "15.1", ews_version, "Exchange build (skips probing)")
    timeout_seconds: float = setting(
        "EWS_TIMEOUT_SECONDS", 120.0, positive_float, "HTTP timeout per EWS request"
    )
    verify_tls: bool = setting(
        "EWS_VERIFY_TLS", True, parse_bool, "verify the server's certificate"
    )
    stream_timeout_minutes: int = setting(
        "STREAM_TIMEOUT_MINUTES", 30, int_in(1, 30), "GetStreamingEvents timeout, 1-30"
    )
    worker_threads: int = setting(
        "EWS_WORKER_THREADS", 4, positive_int, "threads for exchangelib calls"
    )
    stream_silence_seconds: float = setting(
        "STREAM_SILENCE_SECONDS",
        90.0,
        positive_float,
        "a stream silent this long (no events, no keep-alives) is reopened",
    )
    public_folder_streaming: bool = setting(
        "EWS_PUBLIC_FOLDER_STREAMING",
        False,
        parse_bool,
        "stream a public-folder queue (default: poll it)",
    )

    def problems(self) -> list[str]:
        """What an EWS source needs that has no default."""
        problems: list[str] = []
        if not self.url:
            problems.append("EMAILLOG_EWS_URL: required (https://host/EWS/Exchange.asmx)")
        if not self.mailbox:
            problems.append("EMAILLOG_EWS_MAILBOX: required (SMTP address of the queue mailbox)")
        if self.auth in (EwsAuth.BASIC, EwsAuth.NTLM) and not (self.username and self.password):
            problems.append(
                "EMAILLOG_EWS_USERNAME and EMAILLOG_EWS_PASSWORD(_FILE): required for "
                f"{self.auth} auth"
            )
        if self.auth is EwsAuth.OAUTH2 and not (
            self.client_id and self.client_secret and self.tenant_id
        ):
            problems.append(
                "EMAILLOG_EWS_CLIENT_ID, EMAILLOG_EWS_CLIENT_SECRET(_FILE) and "
                "EMAILLOG_EWS_TENANT_ID: required for oauth2 auth"
            )
        return problems


@dataclass(frozen=True)
class ImapSettings:
    host: str = setting("IMAP_HOST", "", doc="IMAP server host name")
    port: int = setting("IMAP_PORT", 0, int_in(0, 65535), "0: 993 with tls, else 143")
    security: ImapSecurity = setting(
        "IMAP_SECURITY", ImapSecurity.TLS, choice(ImapSecurity), "tls, starttls or none"
    )
    username: str = setting("IMAP_USERNAME", "", doc="IMAP user (the mailbox the queue is in)")
    password: str = setting("IMAP_PASSWORD", "", doc="password for login/plain (or ..._FILE)")
    auth: ImapAuth = setting("IMAP_AUTH", ImapAuth.LOGIN, choice(ImapAuth), "login, plain, xoauth2")
    oauth2_token_file: str = setting("IMAP_OAUTH2_TOKEN_FILE", "", doc="XOAUTH2 token (re-read)")
    verify_tls: bool = setting("IMAP_VERIFY_TLS", True, parse_bool, "verify certificate and host")
    ca_file: str = setting("IMAP_CA_FILE", "", doc="PEM CA bundle to trust instead of the system's")
    timeout_seconds: float = setting("IMAP_TIMEOUT_SECONDS", 60.0, positive_float, "per command")
    idle_renew_seconds: float = setting(
        "IMAP_IDLE_RENEW_SECONDS", 1500.0, positive_float, "re-issue IDLE after (RFC 2177)"
    )

    def problems(self) -> list[str]:
        """What an IMAP source needs that has no default."""
        needed = {"EMAILLOG_IMAP_HOST": self.host, "EMAILLOG_IMAP_USERNAME": self.username}
        if self.auth is ImapAuth.XOAUTH2:
            needed["EMAILLOG_IMAP_OAUTH2_TOKEN_FILE (xoauth2)"] = self.oauth2_token_file
        else:
            needed[f"EMAILLOG_IMAP_PASSWORD(_FILE) ({self.auth})"] = self.password
        return [f"{name}: required" for name, value in needed.items() if not value]


@dataclass(frozen=True)
class GraphSettings:
    mailbox: str = setting("GRAPH_MAILBOX", "", doc="UPN of the mailbox holding the queue")
    tenant_id: str = setting("GRAPH_TENANT_ID", "", doc="Entra ID tenant (id or domain)")
    client_id: str = setting("GRAPH_CLIENT_ID", "", doc="application (client) id, app-only")
    client_secret: str = setting(
        "GRAPH_CLIENT_SECRET", "", doc="client secret of the app (or ..._FILE)"
    )
    certificate_file: str = setting(
        "GRAPH_CERTIFICATE_FILE",
        "",
        doc="PEM with the app's RSA private key and certificate (instead of a secret)",
    )
    url: str = setting(
        "GRAPH_URL", "https://graph.microsoft.com/v1.0", doc="Graph root, version included"
    )
    authority_url: str = setting(
        "GRAPH_AUTHORITY_URL",
        "https://login.microsoftonline.com",
        doc="token endpoint is {authority}/{tenant}/oauth2/v2.0/token",
    )
    poll_seconds: float = setting(
        "GRAPH_POLL_SECONDS", 10.0, positive_float, "delta query on the queue folder every"
    )
    timeout_seconds: float = setting(
        "GRAPH_TIMEOUT_SECONDS", 60.0, positive_float, "per Graph request"
    )
    notification_url: str = setting(
        "GRAPH_NOTIFICATION_URL",
        "",
        doc="public HTTPS URL Graph POSTs change notifications to; empty: delta polling only",
    )
    notification_listen: str = setting(
        "GRAPH_NOTIFICATION_LISTEN", "0.0.0.0:8082", doc="host:port the notification URL reaches"
    )
    subscription_minutes: int = setting(
        "GRAPH_SUBSCRIPTION_MINUTES",
        4230,
        int_in(45, 10080),
        "lifetime asked for a subscription; renewed at half of it",
    )

    def problems(self, public_folders: bool = False) -> list[str]:
        """What a Graph source needs that has no default; `public_folders`: the queue or
        storage folder is a public folder, which Graph cannot reach."""
        needed = {
            "EMAILLOG_GRAPH_MAILBOX": self.mailbox,
            "EMAILLOG_GRAPH_TENANT_ID": self.tenant_id,
            "EMAILLOG_GRAPH_CLIENT_ID": self.client_id,
            "EMAILLOG_GRAPH_CLIENT_SECRET(_FILE) or EMAILLOG_GRAPH_CERTIFICATE_FILE": (
                self.client_secret or self.certificate_file
            ),
        }
        problems = [f"{name}: required" for name, value in needed.items() if not value]
        if public_folders:
            problems.append("EMAILLOG_QUEUE_FOLDER/STORAGE_FOLDER: no public: with graph")
        return problems
