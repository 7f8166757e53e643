"""One frozen `Settings`, built once from the environment (12-factor), in typed groups.

    Settings
    ├── database   DatabaseSettings   where PostgreSQL is, the pool
    ├── rules      RuleSettings       what changes decisions (Cc, never-log list, template)
    ├── source     SourceSettings     which source, queue/storage folders, disposal (any source)
    │   ├── ews    EwsSettings        the EWS endpoint, mailbox, auth, stream
    │   ├── imap   ImapSettings       the IMAP server, security, auth, IDLE
    │   └── graph  GraphSettings      Microsoft Graph: mailbox, app, URLs (config_graph.py)
    ├── limits     PipelineLimits     batch sizes, queues, in-flight cap, retries, intervals
    ├── http       HttpSettings       /metrics, /livez, /readyz
    └── log        LogSettings        level and format

Every field declares its variable (`EMAILLOG_*`), default, parser and meaning in one
place. Values are parsed into types here (the types and parsers are in `config_values`)
and never again: folder paths (`FolderPath`,
mailbox or `public:`), the disposal mode (`DisposalSetting`), the auth kind (`EwsAuth`).
Secrets may come from `<VARIABLE>_FILE` (a mounted Secret). Every limit carries its unit
in its name. `Settings.from_env()` reports every problem at once as a `ConfigError`, never
a traceback. The README lists every variable declared here (a test checks that).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from pipeline.config_graph import GraphSettings
from pipeline.config_values import (
    DisposalSetting,
    EwsAuth,
    FolderPath,
    ImapAuth,
    ImapSecurity,
    LogFormat,
    SourceKind,
    as_text,
    choice,
    ews_version,
    int_in,
    log_level,
    non_negative_float,
    parse_bool,
    parse_csv,
    positive_float,
    positive_int,
)
from pipeline.errors import ConfigError
from pipeline.model import Disposal

__all__ = [
    "DisposalSetting",
    "EwsAuth",
    "FolderPath",
    "LogFormat",
    "Settings",
    "SourceKind",
    "as_text",
]

PREFIX = "EMAILLOG_"
#: Variables that may be read from a file named by `<VARIABLE>_FILE` (lowercase suffixes).
SECRET_FIELDS = frozenset(
    {"database_url", "ews_password", "ews_client_secret", "imap_password", "graph_client_secret"}
)


def setting(variable: str, default: Any, parse: Callable[[str], Any] = str, doc: str = "") -> Any:
    """Declare one setting: its variable (without the prefix), default, parser and meaning."""
    return field(
        default=default, metadata={"variable": PREFIX + variable, "parse": parse, "doc": doc}
    )


def group(kind: type[Any]) -> Any:
    """Declare a group of settings (a frozen dataclass of `setting`s or groups)."""
    return field(default_factory=kind, metadata={"group": kind})


# --- the groups ---


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting("DATABASE_URL", "", doc="PostgreSQL URL; empty starts an embedded server")
    data_dir: Path = setting(
        "DATA_DIR", Path(".emaillog"), Path, "where the embedded PostgreSQL keeps data"
    )
    pool_connections: int = setting("DB_POOL_CONNECTIONS", 4, positive_int, "asyncpg pool size")
    connect_timeout_seconds: float = setting(
        "DB_CONNECT_TIMEOUT_SECONDS",
        10.0,
        positive_float,
        "how long to wait for PostgreSQL to answer a connection",
    )


@dataclass(frozen=True)
class RuleSettings:
    include_cc: bool = setting(
        "INCLUDE_CC", False, parse_bool, "consider Cc recipients too (BC); To only (NAV)"
    )
    never_log: tuple[str, ...] = setting(
        "NEVER_LOG",
        (),
        parse_csv,
        "comma-separated addresses and domains (example.com or @example.com) never logged",
    )
    email_template_code: str = setting(
        "EMAIL_TEMPLATE_CODE", "EMAIL", doc="interaction template code for e-mails"
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
class SourceSettings:
    kind: SourceKind = setting(
        "SOURCE", SourceKind.EWS, choice(SourceKind), "ews, graph or imap: where the queue is"
    )
    poll_interval_seconds: float = setting(
        "POLL_INTERVAL_SECONDS",
        30.0,
        positive_float,
        "how often the queue is polled when push (streaming, IDLE) is unavailable",
    )
    queue_folder: FolderPath = setting(
        "QUEUE_FOLDER",
        FolderPath(False, ("Email Logging", "Queue")),
        FolderPath.parse,
        "queue folder path; public:/... for a public folder",
    )
    storage_folder: FolderPath = setting(
        "STORAGE_FOLDER",
        FolderPath(False, ("Email Logging", "Storage")),
        FolderPath.parse,
        "storage folder path",
    )
    disposal: DisposalSetting = setting(
        "DISPOSAL",
        DisposalSetting(),
        DisposalSetting.parse,
        "delete, trash or move:<folder> for non-logged mail",
    )
    ews: EwsSettings = group(EwsSettings)
    imap: ImapSettings = group(ImapSettings)
    graph: GraphSettings = group(GraphSettings)

    def problems(self) -> list[str]:
        """What the chosen source needs to run, one problem per line."""
        problems: list[str] = []
        if self.kind is SourceKind.EWS:
            problems += self.ews.problems()
            if self.disposal.how is Disposal.TRASH and self.queue_folder.public:
                problems.append(
                    "EMAILLOG_DISPOSAL: trash is not possible for a public-folder queue"
                )
        elif self.kind is SourceKind.IMAP:
            problems += self.imap.problems()
            if self.queue_folder.public or self.storage_folder.public:
                problems.append("EMAILLOG_QUEUE_FOLDER/STORAGE_FOLDER: no public: with imap")
        else:  # SourceKind.GRAPH
            problems += self.graph.problems(self.queue_folder.public or self.storage_folder.public)
        return problems


@dataclass(frozen=True)
class PipelineLimits:
    fetch_batch_messages: int = setting(
        "FETCH_BATCH_MESSAGES", 50, positive_int, "item ids per GetItem request"
    )
    move_batch_messages: int = setting(
        "MOVE_BATCH_MESSAGES", 50, positive_int, "item ids per MoveItem/DeleteItem"
    )
    store_batch_messages: int = setting(
        "STORE_BATCH_MESSAGES", 50, positive_int, "messages per database transaction"
    )
    batch_wait_ms: float = setting(
        "BATCH_WAIT_MS", 20.0, non_negative_float, "max wait to fill a micro-batch"
    )
    stage_queue_messages: int = setting(
        "STAGE_QUEUE_MESSAGES", 200, positive_int, "capacity of each inter-stage queue"
    )
    max_in_flight_messages: int = setting(
        "MAX_IN_FLIGHT_MESSAGES", 500, positive_int, "messages between intake and disposal"
    )
    retry_max_attempts: int = setting(
        "RETRY_MAX_ATTEMPTS", 5, positive_int, "attempts before a message is failed"
    )
    retry_max_wait_seconds: float = setting(
        "RETRY_MAX_WAIT_SECONDS", 60.0, positive_float, "longest back-off between tries"
    )
    reconcile_interval_seconds: float = setting(
        "RECONCILE_INTERVAL_SECONDS", 60.0, positive_float, "reconciler period"
    )
    catch_up_interval_seconds: float = setting(
        "CATCH_UP_INTERVAL_SECONDS", 300.0, positive_float, "safety re-sync period"
    )
    drain_timeout_seconds: float = setting(
        "DRAIN_TIMEOUT_SECONDS", 20.0, positive_float, "SIGTERM drain budget"
    )
    backlog_poll_seconds: float = setting(
        "BACKLOG_POLL_SECONDS",
        15.0,
        positive_float,
        "how often the queue folder's item count is read",
    )


@dataclass(frozen=True)
class HttpSettings:
    host: str = setting("HTTP_HOST", "0.0.0.0", doc="address for /metrics, /livez, /readyz")
    port: int = setting("HTTP_PORT", 8080, int_in(0, 65535), "port for /metrics, /livez, /readyz")
    ready_timeout_seconds: float = setting(
        "READY_TIMEOUT_SECONDS",
        2.0,
        positive_float,
        "how long /readyz waits for the database to answer",
    )


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("LOG_LEVEL", "INFO", log_level, "DEBUG, INFO, WARNING, ERROR")
    format: LogFormat = setting("LOG_FORMAT", LogFormat.JSON, choice(LogFormat), "json or text")


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = group(DatabaseSettings)
    rules: RuleSettings = group(RuleSettings)
    source: SourceSettings = group(SourceSettings)
    limits: PipelineLimits = group(PipelineLimits)
    http: HttpSettings = group(HttpSettings)
    log: LogSettings = group(LogSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default `os.environ`); raise one ConfigError for all."""
        env = os.environ if environ is None else environ
        problems: list[str] = []
        settings: Settings = _build(cls, env, problems)
        if problems:
            raise ConfigError(problems)
        return settings

    def check_service(self) -> None:
        """What `emaillog run` needs beyond valid values, one problem per line."""
        problems = self.source.problems()
        if problems:
            raise ConfigError(problems)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration for the start-up log, secrets replaced."""
        out: dict[str, Any] = {}
        for variable, value, _ in _walk(self):
            secret = variable.removeprefix(PREFIX).lower() in SECRET_FIELDS
            if secret and value:
                out[variable] = "***"
            elif isinstance(value, bool | int | float | tuple):
                out[variable] = value  # JSON has these
            else:
                out[variable] = str(value)
        return out

    def environment(self) -> dict[str, str]:
        """The variables that reproduce these settings (to start another process with)."""
        return {variable: as_text(value) for variable, value, _ in _walk(self)}

    @staticmethod
    def variables() -> dict[str, str]:
        """Every variable name with its one-line meaning (for docs and the README check)."""
        return {variable: doc for variable, _, doc in _walk(Settings())}


def _build(kind: type[Any], env: Mapping[str, str], problems: list[str]) -> Any:
    """One group (or the whole Settings) from `env`, appending each problem found."""
    values: dict[str, Any] = {}
    for f in fields(kind):
        if "group" in f.metadata:
            values[f.name] = _build(f.metadata["group"], env, problems)
            continue
        raw = _raw(f.metadata["variable"], env, problems)
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            problems.append(f"{f.metadata['variable']}: {exc}")
    return kind(**values)


def _raw(variable: str, env: Mapping[str, str], problems: list[str]) -> str | None:
    """The variable's text, from `<VARIABLE>_FILE` for secrets when that is set."""
    file_variable = variable + "_FILE"
    if variable.removeprefix(PREFIX).lower() in SECRET_FIELDS and env.get(file_variable):
        try:
            return Path(env[file_variable]).read_text().strip()
        except OSError as exc:
            problems.append(f"{file_variable}: cannot read {env[file_variable]!r}: {exc.strerror}")
            return None
    return env.get(variable)


def _walk(instance: Any) -> Iterator[tuple[str, Any, str]]:
    """(variable, value, meaning) of every setting in `instance`, groups flattened."""
    for f in fields(instance):
        value = getattr(instance, f.name)
        if "group" in f.metadata and is_dataclass(value):
            yield from _walk(value)
        else:
            yield f.metadata["variable"], value, str(f.metadata["doc"])
