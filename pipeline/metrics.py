"""Every Prometheus metric the service exports, in one place.

One `Metrics` per service instance, each with its own `CollectorRegistry`, so tests can run
several services in one process. Labels carry only small fixed sets (outcome, stage): never
addresses, subjects or ids.

Stage labels (`emaillog_stage_duration_seconds`, `emaillog_retries_total`), one batch each:
    fetch     GetItem of a batch of queue items
    classify  the rules over a batch
    dedupe    the journal transaction: rule 3, claim + entries, disposal records
    move      MoveItem of logged messages to storage
    store     the transaction recording storage links ('stored' + disposal record)
    dispose   DeleteItem / move of non-logged messages

`emaillog_message_stage_seconds{stage, part}` is per message, not per batch: `wait` is the
time it sat in the stage's inbox, `work` the time its batch took. The benchmark's p50
breakdown is read from it; what it leaves out of a message's latency is the server's
notification and intake (the server's arrival time has only whole seconds).
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from pipeline import __version__
from pipeline.model import Outcome

STAGES = ("fetch", "classify", "dedupe", "move", "store", "dispose")
#: How a source takes mail in (`SourceEvents.on_mode`).
SOURCE_MODES = ("streaming", "polling")

# Batches take milliseconds to a few seconds; a throttled or retried batch up to minutes.
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Per message in one stage: sub-millisecond waits to a throttled retry.
_MESSAGE_STAGE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03,
    0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
# Queue arrival to disposal: sub-second when streaming, up to hours when catching up.
_END_TO_END_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400)


class Metrics:
    """The service's metrics, registered in `self.registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "emaillog_messages",
            "Messages disposed of, by outcome (counted when their disposal_log row is written).",
            ["outcome"],
            registry=r,
        )
        for outcome in Outcome:
            self.messages.labels(outcome.value)
        self.interactions_logged = Counter(
            "emaillog_interactions_logged", "Interaction log entries written.", registry=r
        )
        self.stage_duration = Histogram(
            "emaillog_stage_duration_seconds",
            "Time one batch spends in a stage (including retries).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "emaillog_retries", "Batches retried after a transient error.", ["stage"], registry=r
        )
        for stage in STAGES:
            self.stage_duration.labels(stage)
            self.retries.labels(stage)
        self.message_stage = Histogram(
            "emaillog_message_stage_seconds",
            "Time one message spends in a stage: waiting in its inbox, or in its batch's work.",
            ["stage", "part"],
            buckets=_MESSAGE_STAGE_BUCKETS,
            registry=r,
        )
        self._add_flow_gauges(r)
        self._add_source_metrics(r)
        self.build_info = Info("emaillog_build", "Version of the running service.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

    def _add_flow_gauges(self, r: CollectorRegistry) -> None:
        self.end_to_end = Histogram(
            "emaillog_end_to_end_seconds",
            "From arrival in the queue folder to disposal.",
            buckets=_END_TO_END_BUCKETS,
            registry=r,
        )
        self.queue_backlog = Gauge(
            "emaillog_queue_backlog_messages", "Items in the queue folder (polled).", registry=r
        )
        self.in_flight = Gauge(
            "emaillog_in_flight_messages",
            "Messages taken from the queue and not yet disposed of.",
            registry=r,
        )
        self.in_flight_limit = Gauge(
            "emaillog_in_flight_limit_messages",
            "EMAILLOG_MAX_IN_FLIGHT_MESSAGES: the most messages between intake and disposal.",
            registry=r,
        )
        self.last_disposed = Gauge(
            "emaillog_last_disposed_timestamp_seconds",
            "Unix time the last queue message was disposed of.",
            registry=r,
        )
        self.directory_reloads = Counter(
            "emaillog_directory_reloads", "Times the directory was reloaded.", registry=r
        )
        self.config_problems = Gauge(
            "emaillog_config_problems",
            "Setup problems that keep the service from taking mail (a missing e-mail "
            "interaction template); 0 when it can.",
            registry=r,
        )
        self.reconcile_unresolved = Counter(
            "emaillog_reconcile_unresolved",
            "Half-done claims the reconciler found neither in storage nor in the queue.",
            registry=r,
        )

    def _add_source_metrics(self, r: CollectorRegistry) -> None:
        self.source_connected = Gauge(
            "emaillog_source_connected", "1 while the mail source holds a subscription.", registry=r
        )
        self.source_reconnects = Counter(
            "emaillog_source_reconnects", "Times the source resubscribed.", registry=r
        )
        self.throttled = Counter(
            "emaillog_upstream_throttled", "Times the mail server asked us to back off.", registry=r
        )
        self.source_mode = Gauge(
            "emaillog_source_mode",
            "1 for how the source takes mail in now: streaming (push) or polling.",
            ["mode"],
            registry=r,
        )
        for mode in SOURCE_MODES:
            self.source_mode.labels(mode)


class SourceMetrics:
    """The `SourceEvents` hooks a source calls, feeding the source metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        #: The intake's mode as last reported ("streaming" | "polling"), for the UI's status.
        self.mode: str | None = None

    def on_connected(self, connected: bool) -> None:
        pass  # emaillog_source_connected reads `source.connected` at scrape time

    def on_reconnect(self) -> None:
        self._metrics.source_reconnects.inc()

    def on_throttled(self, seconds: float) -> None:
        self._metrics.throttled.inc()

    def on_mode(self, mode: str) -> None:
        self.mode = mode
        for known in SOURCE_MODES:
            self._metrics.source_mode.labels(known).set(1.0 if known == mode else 0.0)
