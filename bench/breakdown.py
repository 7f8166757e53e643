"""Where a message's time goes, per stage, from the service's own histogram.

`emaillog_message_stage_seconds{stage, part}` (pipeline/metrics.py) holds, per message,
the time it waited in each stage's inbox and the time its batch worked. The p50 of each is
read from the buckets by linear interpolation inside the bucket that holds the median, as
PromQL's histogram_quantile does: to a bucket's resolution (0.5 ms to 5 ms below 50 ms).
"""

from __future__ import annotations

import re
from collections import defaultdict

_BUCKET = re.compile(
    r"^emaillog_message_stage_seconds_bucket\{(?P<labels>[^}]*)\} (?P<count>[0-9.e+]+)$",
    re.MULTILINE,
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
#: The order a message meets them in.
ORDER = ("fetch", "classify", "dedupe", "move", "store", "dispose")


def p50_breakdown_ms(metrics_text: str) -> dict[str, dict[str, float]]:
    """{stage: {"wait": ms, "work": ms}} at the median, stages in flow order."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for match in _BUCKET.finditer(metrics_text):
        labels = dict(_LABEL.findall(match["labels"]))
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        buckets[labels["stage"], labels["part"]].append((le, float(match["count"])))
    out: dict[str, dict[str, float]] = {}
    for stage in ORDER:
        parts = {
            part: round(quantile(0.5, sorted(buckets[stage, part])) * 1000, 1)
            for part in ("wait", "work")
            if buckets.get((stage, part)) and buckets[stage, part][-1][1] > 0
        }
        if parts:
            out[stage] = parts
    return out


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """The q-quantile of a cumulative histogram [(upper bound, count), ...] (ascending)."""
    total = cumulative[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


_COUNT = re.compile(
    r"^emaillog_(?P<what>message_stage|stage_duration)_seconds_count\{(?P<labels>[^}]*)\} "
    r"(?P<count>[0-9.e+]+)$",
    re.MULTILINE,
)


def mean_batch_messages(metrics_text: str) -> dict[str, float]:
    """Messages per batch of each stage: per-message work observations over batches."""
    messages: dict[str, float] = {}
    batches: dict[str, float] = {}
    for match in _COUNT.finditer(metrics_text):
        labels = dict(_LABEL.findall(match["labels"]))
        if match["what"] == "stage_duration":
            batches[labels["stage"]] = float(match["count"])
        elif labels.get("part") == "work":
            messages[labels["stage"]] = float(match["count"])
    return {
        stage: round(messages[stage] / batches[stage], 2)
        for stage in ORDER
        if batches.get(stage) and stage in messages
    }
