"""Settings for tests, built the way the service builds them: from EMAILLOG_* variables."""

from __future__ import annotations

from typing import Any

from pipeline.config import PREFIX, Settings, as_text


def make_settings(**values: Any) -> Settings:
    """Settings from values named like their variables without the prefix, lowercase
    (`database_url=...`, `ews_worker_threads=3`), parsed exactly as from the environment.
    The web UI is off (EMAILLOG_UI_PORT=0) unless a test sets `ui_port`: it needs sign-in."""
    values.setdefault("ui_port", 0)
    return Settings.from_env({PREFIX + name.upper(): as_text(v) for name, v in values.items()})
