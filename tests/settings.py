"""Settings for tests, built the way the service builds them: from EMAILLOG_* variables."""

from __future__ import annotations

from typing import Any

from pipeline.config import PREFIX, Settings, as_text


def make_settings(**values: Any) -> Settings:
    """Settings from values named like their variables without the prefix, lowercase
    (`database_url=...`, `ews_worker_threads=3`), parsed exactly as from the environment."""
    return Settings.from_env({PREFIX + name.upper(): as_text(v) for name, v in values.items()})
