"""`GraphSettings`: the Microsoft Graph source's group of `Settings` (EMAILLOG_GRAPH_*).

A module of its own because config.py is at the module size limit; it declares its fields
exactly as config.py's `setting()` does (the same metadata), and config.py mounts the group
as `SourceSettings.graph`. The client secret may come from EMAILLOG_GRAPH_CLIENT_SECRET_FILE
(config.SECRET_FIELDS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config_values import int_in, positive_float

PREFIX = "EMAILLOG_"


def setting(variable: str, default: Any, parse: Callable[[str], Any] = str, doc: str = "") -> Any:
    """As `pipeline.config.setting` (which this module cannot import: config imports it)."""
    return field(
        default=default, metadata={"variable": PREFIX + variable, "parse": parse, "doc": doc}
    )


@dataclass(frozen=True)
class GraphSettings:
    mailbox: str = setting("GRAPH_MAILBOX", "", doc="UPN of the mailbox holding the queue")
    tenant_id: str = setting("GRAPH_TENANT_ID", "", doc="Entra ID tenant (id or domain)")
    client_id: str = setting("GRAPH_CLIENT_ID", "", doc="application (client) id, app-only")
    client_secret: str = setting(
        "GRAPH_CLIENT_SECRET", "", doc="client secret of the app (or ..._FILE)"
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
        "GRAPH_NOTIFICATION_LISTEN", "0.0.0.0:8081", doc="host:port the notification URL reaches"
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
            "EMAILLOG_GRAPH_CLIENT_SECRET(_FILE)": self.client_secret,
        }
        problems = [f"{name}: required" for name, value in needed.items() if not value]
        if public_folders:
            problems.append("EMAILLOG_QUEUE_FOLDER/STORAGE_FOLDER: no public: with graph")
        return problems
