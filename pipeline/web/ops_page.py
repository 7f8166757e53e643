"""The operations page, for administrators: outcomes over time (chart and table), failed
messages, the mail source and the directory's size.

Privacy: only operational data. Failed messages show time, rule, the Message-ID's hash and
the queue item id; nothing of a message that was not logged (no subject, no address).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import fields

from aiohttp import web

from pipeline.store import entries as store
from pipeline.web.auth import require_admin
from pipeline.web.charts import OUTCOMES, STEPS, dense_rows, stacked_bars, truncate
from pipeline.web.render import DEPS, render

#: How far back each interval looks: two days by the hour, a month by the day.
SPANS = {"hour": 48, "day": 30}
FAILED_SHOWN = 50


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/ops", ops_page)


async def ops_page(request: web.Request) -> web.Response:
    require_admin(request)
    interval = request.query.get("interval", "hour")
    if interval not in SPANS:
        raise web.HTTPBadRequest(text="The interval must be hour or day.")
    deps = request.app[DEPS]
    # The current (partial) hour or day is the last bar.
    until = truncate(dt.datetime.now(dt.UTC), interval) + STEPS[interval]
    since = until - SPANS[interval] * STEPS[interval]
    buckets = await store.outcome_counts(deps.pool, since=since, until=until, interval=interval)
    rows = dense_rows([(b.start, b.counts) for b in buckets], since, until, interval)
    counts = await store.directory_counts(deps.pool)
    return render(
        request,
        "ops.html",
        interval=interval,
        span=SPANS[interval],
        outcomes=OUTCOMES,
        chart=stacked_bars(rows, interval),
        rows=[row for row in rows if row.total],  # the table lists the buckets with mail
        totals={o: sum(row.counts[o] for row in rows) for o in OUTCOMES},
        failed=await store.failed_messages(deps.pool, limit=FAILED_SHOWN),
        source=deps.source_status() if deps.source_status else None,
        directory=[(f.name.replace("_", " "), getattr(counts, f.name)) for f in fields(counts)],
    )
