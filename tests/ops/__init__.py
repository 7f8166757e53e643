"""Tests of the ops material: Dockerfile, Prometheus rules, dashboard, Kubernetes, compose."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"

# The metrics issue 4 asks for (histograms by their base name). The ops files are checked
# against what pipeline.metrics really exports, and that must include these.
METRICS = (
    "emaillog_messages_total",
    "emaillog_interactions_logged_total",
    "emaillog_stage_duration_seconds",
    "emaillog_end_to_end_seconds",
    "emaillog_queue_backlog_messages",
    "emaillog_in_flight_messages",
    "emaillog_source_connected",
    "emaillog_source_reconnects_total",
    "emaillog_upstream_throttled_total",
    "emaillog_last_disposed_timestamp_seconds",
    "emaillog_build_info",
    "emaillog_retries_total",
    "emaillog_directory_reloads_total",
)


def exported_metrics() -> set[str]:
    """The names pipeline.metrics exports (counters with _total, info with _info)."""
    from pipeline.metrics import Metrics

    suffix = {"counter": "_total", "info": "_info"}
    return {f.name + suffix.get(f.type, "") for f in Metrics().registry.collect()}


def metric_names(text: str) -> set[str]:
    """The emaillog_* metric names used in PromQL text, histogram suffixes stripped."""
    import re

    names = set(re.findall(r"\bemaillog_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}
