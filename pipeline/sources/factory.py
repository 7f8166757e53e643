"""`build_source(settings, events)`: the `MailSource` that EMAILLOG_SOURCE names.

Each adapter is imported only when chosen: exchangelib (EWS) is slow to import, and a
deployment needs only the client library of its own mail system.
"""

from __future__ import annotations

from pipeline.config import Settings, SourceKind
from pipeline.errors import ConfigError
from pipeline.sources import MailSource, SourceEvents


def build_source(settings: Settings, events: SourceEvents) -> MailSource:
    kind = settings.source.kind
    if kind is SourceKind.EWS:
        from pipeline.sources.ews import EwsSource

        return EwsSource(settings, events=events)
    if kind is SourceKind.IMAP:
        from pipeline.sources.imap import ImapSource

        return ImapSource(settings, events=events)
    if kind is SourceKind.GRAPH:
        from pipeline.sources.graph import GraphSource

        return GraphSource(settings, events=events)
    raise ConfigError([f"EMAILLOG_SOURCE: the {kind} source is not available yet"])
