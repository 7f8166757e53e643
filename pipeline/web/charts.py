"""The operations chart: outcomes per hour or day as stacked bars, laid out here (pure: no
I/O, no clock) and drawn by the template as inline SVG.

Colours come from CSS classes (`o-logged`, ...) in style.css: the Content-Security-Policy
forbids inline `style=` attributes, and a class keeps chart, legend and table in one palette.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.model import Outcome

#: Bar order, bottom to top: what was logged first, failures last (on top, where they show).
OUTCOMES = tuple(o.value for o in Outcome)
STEPS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}

WIDTH = 960
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 28
X_LABELS = 8  # about this many labels under the bars, whatever the number of bars


@dataclass(frozen=True, slots=True)
class Row:
    """One bucket: its start and the count of each outcome (zero when absent)."""

    start: dt.datetime
    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Segment:
    outcome: str
    x: float
    y: float
    width: float
    height: float
    title: str  # the tooltip, and what a screen reader reads for the segment


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_bottom: int
    segments: tuple[Segment, ...]
    y_ticks: tuple[Label, ...]
    x_labels: tuple[Label, ...]


def truncate(moment: dt.datetime, interval: str) -> dt.datetime:
    """The start of the hour or (UTC) day holding `moment`."""
    moment = moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if interval == "day" else moment


def dense_rows(
    buckets: Sequence[tuple[dt.datetime, Mapping[str, int]]],
    since: dt.datetime,
    until: dt.datetime,
    interval: str,
) -> list[Row]:
    """Every bucket from `since` up to `until` (exclusive), quiet ones as zeros: a chart
    with gaps closed up would lie about time."""
    found = {truncate(start, interval): counts for start, counts in buckets}
    rows = []
    start = truncate(since, interval)
    while start < until:
        counts = found.get(start, {})
        rows.append(Row(start, {o: int(counts.get(o, 0)) for o in OUTCOMES}))
        start += STEPS[interval]
    return rows


def nice_ceiling(value: int) -> tuple[int, int]:
    """(top, step): a round top of the y axis at or above `value`, in four round steps."""
    rough = max(value, 1) / 4
    magnitude = 1
    while magnitude * 10 <= rough:
        magnitude *= 10
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    return step * -(-max(value, 1) // step), step


def stacked_bars(rows: Sequence[Row], interval: str) -> BarChart:
    top, step = nice_ceiling(max((r.total for r in rows), default=0))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h
    slot = plot_w / max(len(rows), 1)
    segments: list[Segment] = []
    for i, row in enumerate(rows):
        y = float(bottom)
        for outcome in OUTCOMES:
            count = row.counts.get(outcome, 0)
            if not count:
                continue
            height = plot_h * count / top
            y -= height
            when = _label(row.start, interval, full=True)
            title = f"{when}: {outcome} {count}"
            segments.append(
                Segment(outcome, LEFT + i * slot + slot * 0.1, y, slot * 0.8, height, title)
            )
    ticks = tuple(
        Label(LEFT - 6, bottom - plot_h * value / top, str(value))
        for value in range(0, top + 1, step)
    )
    every = max(1, -(-len(rows) // X_LABELS))
    x_labels = tuple(
        Label(LEFT + i * slot + slot / 2, HEIGHT - 8, _label(row.start, interval, full=False))
        for i, row in enumerate(rows)
        if i % every == 0
    )
    return BarChart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, bottom, tuple(segments), ticks, x_labels)


def _label(start: dt.datetime, interval: str, *, full: bool) -> str:
    if interval == "day":
        return start.strftime("%Y-%m-%d") if full else start.strftime("%d %b")
    return start.strftime("%Y-%m-%d %H:00") if full else start.strftime("%d %b %H:00")
