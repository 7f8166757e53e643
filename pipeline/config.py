"""One frozen `Settings`, built once from the environment (12-factor), in typed groups.

    Settings
    ├── database   DatabaseSettings   where PostgreSQL is, the pool
    ├── rules      RuleSettings       what changes decisions (Cc, never-log list, template)
    ├── source     SourceSettings     which source, queue/storage folders, disposal (any source)
    │   ├── ews    EwsSettings        the EWS endpoint, mailbox, auth, stream
    │   ├── imap   ImapSettings       the IMAP server, security, auth, IDLE
    │   └── graph  GraphSettings      Microsoft Graph: mailbox, app, URLs
    ├── limits     PipelineLimits     batch sizes, queues, in-flight cap, retries, intervals
    ├── http       HttpSettings       /metrics, /livez, /readyz
    ├── ui         UiSettings         web UI + REST API: listen address, sign-in, sessions
    └── log        LogSettings        level and format

Every field declares its variable (`EMAILLOG_*`), default, parser and meaning in one place
(`config_values.setting`; the per-source groups are in `config_sources`). Values are parsed
into types here and never again: folder paths (`FolderPath`, mailbox or `public:`), the
disposal mode (`DisposalSetting`), the auth kinds (`EwsAuth`, `ImapAuth`).
Secrets may come from `<VARIABLE>_FILE` (a mounted Secret). Every limit carries its unit
in its name. `Settings.from_env()` reports every problem at once as a `ConfigError`, never
a traceback. The README lists every variable declared here (a test checks that).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from pipeline.config_sources import EwsSettings, GraphSettings, ImapSettings
from pipeline.config_ui import UiAuth, UiSettings
from pipeline.config_values import (
    PREFIX,
    DisposalSetting,
    EwsAuth,
    FolderPath,
    LogFormat,
    SourceKind,
    as_text,
    choice,
    group,
    int_in,
    log_level,
    non_negative_float,
    parse_bool,
    parse_csv,
    positive_float,
    positive_int,
    setting,
)
from pipeline.errors import ConfigError
from pipeline.model import Disposal

__all__ = [
    "PREFIX",
    "DisposalSetting",
    "EwsAuth",
    "EwsSettings",
    "FolderPath",
    "GraphSettings",
    "ImapSettings",
    "LogFormat",
    "Settings",
    "SourceKind",
    "UiAuth",
    "UiSettings",
    "as_text",
]

#: Variables that may be read from a file named by `<VARIABLE>_FILE` (lowercase suffixes).
SECRET_FIELDS = frozenset(
    {
        "database_url",
        "ews_password",
        "ews_client_secret",
        "imap_password",
        "graph_client_secret",
        "oidc_client_secret",
        "ui_session_secret",
    }
)


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
        "BATCH_WAIT_MS", 30.0, non_negative_float, "max wait to fill a micro-batch"
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
    ui: UiSettings = group(UiSettings)
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
        """What `emaillog run` needs beyond valid values, one problem per line. The UI it
        serves (unless EMAILLOG_UI_PORT=0) must be safe to expose: `UiSettings.problems`."""
        problems = self.source.problems()
        if self.ui.port != 0:
            problems += self.ui.problems()
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
