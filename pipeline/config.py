"""One frozen `Settings`, built once from the environment (12-factor).

Every variable is `EMAILLOG_*`. Secrets may come from `*_FILE` (a mounted Secret).
Every limit carries its unit in its name. `Settings.from_env()` reports every problem at
once as a `ConfigError`, never a traceback. The README's configuration reference lists
every variable declared here (a test checks that).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

PREFIX = "EMAILLOG_"
AUTH_TYPES = ("basic", "ntlm", "oauth2", "none")
SECRET_FIELDS = frozenset({"database_url", "ews_password", "ews_client_secret"})


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a TCP port 0-65535, got {value}")
    return value


def setting(default: Any, parse: Callable[[str], Any] = str, doc: str = "") -> Any:
    """Declare one setting: its default, how to parse the variable, and what it means."""
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    # --- database ---
    database_url: str = setting("", doc="PostgreSQL URL; empty starts an embedded server")
    data_dir: Path = setting(Path(".emaillog"), Path, "where the embedded PostgreSQL keeps data")
    db_pool_connections: int = setting(4, _positive_int, "asyncpg pool size")
    db_connect_timeout_seconds: float = setting(
        10.0, _positive_float, "how long to wait for PostgreSQL to answer a connection"
    )

    # --- rules ---
    include_cc: bool = setting(False, _bool, "consider Cc recipients too (BC); To only (NAV)")
    never_log: tuple[str, ...] = setting(
        (), _csv, "comma-separated addresses and domains (example.com or @example.com) never logged"
    )
    email_template_code: str = setting("EMAIL", doc="interaction template code for e-mails")

    # --- EWS source ---
    ews_url: str = setting("", doc="EWS endpoint, https://host/EWS/Exchange.asmx")
    ews_mailbox: str = setting("", doc="SMTP address of the mailbox holding the queue")
    ews_auth: str = setting("ntlm", doc="basic, ntlm, oauth2 or none")
    ews_username: str = setting("", doc="DOMAIN\\user or UPN for basic/ntlm")
    ews_password: str = setting("", doc="password for basic/ntlm (or EMAILLOG_EWS_PASSWORD_FILE)")
    ews_client_id: str = setting("", doc="OAuth2 application (client) id")
    ews_client_secret: str = setting("", doc="OAuth2 client secret (or ..._FILE)")
    ews_tenant_id: str = setting("", doc="OAuth2 tenant id")
    ews_token_url: str = setting("", doc="override of the OAuth2 token URL (tests)")
    ews_version: str = setting("15.1", doc="Exchange build to assume (skips probing)")
    ews_timeout_seconds: float = setting(120.0, _positive_float, "HTTP timeout per EWS request")
    ews_verify_tls: bool = setting(True, _bool, "verify the server's TLS certificate")
    queue_folder: str = setting("Email Logging/Queue", doc="queue folder path; public:/... for PF")
    storage_folder: str = setting("Email Logging/Storage", doc="storage folder path")
    disposal: str = setting("delete", doc="delete, trash or move:<folder> for non-logged mail")
    stream_timeout_minutes: int = setting(30, _positive_int, "GetStreamingEvents timeout, 1-30")

    # --- pipeline limits ---
    ews_worker_threads: int = setting(4, _positive_int, "threads for exchangelib calls")
    fetch_batch_messages: int = setting(50, _positive_int, "item ids per GetItem request")
    move_batch_messages: int = setting(50, _positive_int, "item ids per MoveItem/DeleteItem")
    store_batch_messages: int = setting(50, _positive_int, "messages per database transaction")
    batch_wait_ms: float = setting(20.0, _non_negative_float, "max wait to fill a micro-batch")
    stage_queue_messages: int = setting(200, _positive_int, "capacity of each inter-stage queue")
    max_in_flight_messages: int = setting(
        500, _positive_int, "messages between intake and disposal"
    )
    retry_max_attempts: int = setting(5, _positive_int, "attempts before a message is failed")
    retry_max_wait_seconds: float = setting(60.0, _positive_float, "longest back-off between tries")
    reconcile_interval_seconds: float = setting(60.0, _positive_float, "reconciler period")
    catch_up_interval_seconds: float = setting(300.0, _positive_float, "safety re-sync period")
    drain_timeout_seconds: float = setting(20.0, _positive_float, "SIGTERM drain budget")
    backlog_poll_seconds: float = setting(
        15.0, _positive_float, "how often the queue folder's item count is read"
    )
    ready_timeout_seconds: float = setting(
        2.0, _positive_float, "how long /readyz waits for the database to answer"
    )

    # --- HTTP and logging ---
    http_host: str = setting("0.0.0.0", doc="address for /metrics, /livez, /readyz")
    http_port: int = setting(8080, _port, "port for /metrics, /livez, /readyz")
    log_level: str = setting("INFO", doc="DEBUG, INFO, WARNING, ERROR")
    log_format: str = setting("json", doc="json or text")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default `os.environ`); raise one ConfigError for all."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            var = PREFIX + f.name.upper()
            raw = env.get(var)
            file_var = var + "_FILE"
            if f.name in SECRET_FIELDS and env.get(file_var):
                try:
                    raw = Path(env[file_var]).read_text().strip()
                except OSError as exc:
                    problems.append(f"{file_var}: cannot read {env[file_var]!r}: {exc.strerror}")
                    continue
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                problems.append(f"{var}: {exc}")
        if problems:
            raise ConfigError(problems)
        settings = cls(**values)
        settings.check_common()
        return settings

    def check_common(self) -> None:
        """Checks every command needs; `check_service()` adds what `emaillog run` needs."""
        problems: list[str] = []
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"EMAILLOG_LOG_LEVEL: unknown level {self.log_level!r}")
        if self.log_format not in ("json", "text"):
            problems.append(f"EMAILLOG_LOG_FORMAT: expected json or text, got {self.log_format!r}")
        if problems:
            raise ConfigError(problems)

    def check_service(self) -> None:
        """Everything `emaillog run` needs to talk to Exchange, one problem per line."""
        problems: list[str] = []
        if not self.ews_url:
            problems.append("EMAILLOG_EWS_URL: required (https://host/EWS/Exchange.asmx)")
        if not self.ews_mailbox:
            problems.append("EMAILLOG_EWS_MAILBOX: required (SMTP address of the queue mailbox)")
        if self.ews_auth not in AUTH_TYPES:
            problems.append(f"EMAILLOG_EWS_AUTH: expected one of {', '.join(AUTH_TYPES)}")
        if self.ews_auth in ("basic", "ntlm") and not (self.ews_username and self.ews_password):
            problems.append(
                "EMAILLOG_EWS_USERNAME and EMAILLOG_EWS_PASSWORD(_FILE): required for "
                f"{self.ews_auth} auth"
            )
        if self.ews_auth == "oauth2" and not (
            self.ews_client_id and self.ews_client_secret and self.ews_tenant_id
        ):
            problems.append(
                "EMAILLOG_EWS_CLIENT_ID, EMAILLOG_EWS_CLIENT_SECRET(_FILE) and "
                "EMAILLOG_EWS_TENANT_ID: required for oauth2 auth"
            )
        if not 1 <= self.stream_timeout_minutes <= 30:
            problems.append("EMAILLOG_STREAM_TIMEOUT_MINUTES: must be 1-30 (an EWS limit)")
        if not (
            self.disposal in ("delete", "trash")
            or (self.disposal.startswith("move:") and self.disposal[5:].strip())
        ):
            problems.append("EMAILLOG_DISPOSAL: expected delete, trash or move:<folder>")
        if self.disposal == "trash" and self.queue_folder.startswith("public:"):
            problems.append("EMAILLOG_DISPOSAL: trash is not possible for a public-folder queue")
        if problems:
            raise ConfigError(problems)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration for the start-up log, secrets replaced."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            out[PREFIX + f.name.upper()] = str(value) if isinstance(value, Path) else value
        return out

    @staticmethod
    def variables() -> dict[str, str]:
        """Every variable name with its one-line meaning (for docs and the README check)."""
        return {PREFIX + f.name.upper(): str(f.metadata["doc"]) for f in fields(Settings)}
