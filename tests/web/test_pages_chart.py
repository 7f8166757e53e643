"""The operations chart's layout (pure): every bucket a bar slot, stacks as tall as their
totals, a round y axis."""

from __future__ import annotations

import datetime as dt

from pipeline.web.charts import HEIGHT, dense_rows, nice_ceiling, stacked_bars, truncate

T0 = dt.datetime(2024, 3, 4, 0, 0, tzinfo=dt.UTC)


def test_quiet_hours_are_zero_bars_not_gaps() -> None:
    hour = dt.timedelta(hours=1)
    rows = dense_rows([(T0 + 2 * hour, {"logged": 3})], T0, T0 + 4 * hour, "hour")
    assert [r.start for r in rows] == [T0 + i * hour for i in range(4)]
    assert [r.total for r in rows] == [0, 0, 3, 0]
    assert rows[2].counts["failed"] == 0


def test_days_start_at_midnight_utc() -> None:
    moment = dt.datetime(2024, 3, 4, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert truncate(moment, "day") == dt.datetime(2024, 3, 5, tzinfo=dt.UTC)
    assert truncate(moment, "hour") == dt.datetime(2024, 3, 5, 1, tzinfo=dt.UTC)


def test_nice_ceiling() -> None:
    assert nice_ceiling(0) == (1, 1)
    assert nice_ceiling(3) == (3, 1)
    assert nice_ceiling(7) == (8, 2)
    assert nice_ceiling(95) == (100, 50)
    top, step = nice_ceiling(1234)
    assert top >= 1234 and top % step == 0 and top // step <= 5


def test_stacks_are_proportional() -> None:
    day = dt.timedelta(days=1)
    rows = dense_rows(
        [(T0, {"logged": 6, "failed": 2}), (T0 + day, {"unregistered": 4})], T0, T0 + 2 * day, "day"
    )
    chart = stacked_bars(rows, "day")
    heights: dict[str, float] = {s.outcome: s.height for s in chart.segments}
    assert heights["logged"] == 3 * heights["failed"]
    assert heights["unregistered"] == 2 * heights["failed"]
    logged, failed = (s for s in chart.segments if s.outcome in ("logged", "failed"))
    assert failed.y + failed.height == logged.y  # failed stacked on top of logged
    assert all(s.y >= 0 and s.y + s.height <= HEIGHT for s in chart.segments)
    assert chart.y_ticks[0].text == "0"
    assert "2024-03-04: logged 6" in [s.title for s in chart.segments]
