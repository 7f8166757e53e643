"""`python -m bench --ui`: the interaction log's read side at scale (issue 13).

A fresh embedded PostgreSQL is filled in bulk (generate_series, not row by row) with 1,000
salespersons, 50,000 contacts (one company per ten) and 1,000,000 entries (one stored
message each) spread over about three years, then ANALYZEd. The real web application
(`build_web_app`, token sign-in) serves on a local port, and an aiohttp client times, one
request at a time with a bearer token, ~200 requests of each kind:

    list     by contact, company (roll-up), salesperson, direction, a 7-day range: the first
             page and up to four more through next_cursor; and deep pages of the unfiltered
             log (a cursor in its middle)
    search   q: one word, a word prefix, two words, a rare token, a word within a company

Prints p50/p95 per kind, then one JSON line with `ui_list_p95_ms` and `ui_search_p95_ms`
(targets: 50 and 200 ms). Latency is wall time around each request, client included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.corpus import _WORDS as WORDS
from bench.procs import free_port
from pipeline.config import Settings
from pipeline.errors import ItemGone
from pipeline.store.db import open_database
from pipeline.store.entries import cursor_at
from pipeline.web.app import build_web_app
from pipeline.web.deps import WebDeps

TOKEN = "bench-ui-token-0123456789abcdef"
START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
#: 1,000,000 entries, 90 s apart: about 2.9 years.
STEP_SECONDS = 90
TARGET_LIST_P95_MS = 50.0
TARGET_SEARCH_P95_MS = 200.0

_FILL = [
    """INSERT INTO salesperson (code, name, email)
       SELECT 'SP' || lpad(i::text, 4, '0'), 'Salesperson ' || i, 'sp' || i || '@ourco.example'
       FROM generate_series(1, $1::int) AS i""",
    # One company per ten contacts; persons belong to the company before them.
    """INSERT INTO contact (no, name, type, company_no, email)
       SELECT 'CT' || lpad(i::text, 6, '0'),
              CASE WHEN i % 10 = 1 THEN 'Company ' || i || ' Ltd' ELSE 'Person ' || i END,
              CASE WHEN i % 10 = 1 THEN 'company' ELSE 'person' END,
              'CT' || lpad(((i - 1) / 10 * 10 + 1)::text, 6, '0'),
              'c' || i || '@customer.example'
       FROM generate_series(1, $1::int) AS i""",
    """INSERT INTO interaction_template (code, description, unit_cost, unit_duration_min)
       VALUES ('EMAIL', 'E-mail', 0.5, 3)""",
    """INSERT INTO stored_message (mailbox, message_key, internet_message_id, content_hash,
           storage_item_id, web_link, state)
       SELECT 'queue@ourco.example', '<b' || i || '@bench>', '<b' || i || '@bench>', 'h' || i,
              'item-' || i, 'https://outlook.example/owa/?ItemID=item-' || i, 'stored'
       FROM generate_series(1, $1::int) AS i""",
    # Pseudo-random but deterministic: contact, salesperson, direction and words from i.
    """INSERT INTO interaction_log_entry (stored_message_id, contact_no, contact_company_no,
           salesperson_code, information_flow, initiated_by, interaction_at, description,
           subject, interaction_template_code, cost_lcy, duration_min)
       SELECT i, 'CT' || lpad(c::text, 6, '0'), 'CT' || lpad(((c - 1) / 10 * 10 + 1)::text, 6, '0'),
              'SP' || lpad((1 + (i * 7919) % $1::int)::text, 4, '0'),
              CASE WHEN i % 3 = 0 THEN 'inbound' ELSE 'outbound' END,
              CASE WHEN i % 3 = 0 THEN 'them' ELSE 'us' END,
              $5::timestamptz + make_interval(secs => i * $6::int),
              subj, subj, 'EMAIL', 0.5, 3
       FROM generate_series(1::bigint, $3::bigint) AS i,
            LATERAL (SELECT (1 + (i * 104729 + i / 7) % $2::int)::int AS c,
                            array_length($4::text[], 1) AS n) AS pick,
            LATERAL (SELECT initcap(($4::text[])[(1 + (i * 31) % n)::int])
                     || ' ' || ($4::text[])[(1 + (i * 17 + i / 13) % n)::int]
                     || ' ' || ($4::text[])[(1 + (i * 7 + i / 101) % n)::int]
                     || ' ' || (i % 100000)::text AS subj) AS words""",
]


async def fill(pool: asyncpg.Pool, *, salespersons: int, contacts: int, entries: int) -> None:
    salespersons_sql, contacts_sql, template_sql, stored_sql, entries_sql = _FILL
    async with pool.acquire() as conn:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute(salespersons_sql, salespersons)
        await conn.execute(contacts_sql, contacts)
        await conn.execute(template_sql)
        await conn.execute(stored_sql, entries)
        await conn.execute(entries_sql, salespersons, contacts, entries, WORDS, START, STEP_SECONDS)
        await conn.execute("ANALYZE")


# --- timing ---------------------------------------------------------------------------------


class Sampler:
    """Times GET requests against the API, per kind of request."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self.ms: dict[str, list[float]] = {}
        self.failures = 0

    async def get(self, kind: str, params: dict[str, str]) -> dict[str, Any]:
        started = time.perf_counter()
        async with self.session.get(self.base_url + "/api/v1/entries", params=params) as resp:
            body: dict[str, Any] = await resp.json()
            ok = resp.status == 200
        self.ms.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
        if not ok:
            self.failures += 1
            return {"entries": [], "next_cursor": None}
        return body

    async def pages(self, kind: str, params: dict[str, str], *, pages: int) -> None:
        """The first page, then up to `pages - 1` more through next_cursor."""
        body = await self.get(kind, params)
        for _ in range(pages - 1):
            if not body["next_cursor"]:
                return
            body = await self.get(kind, params | {"cursor": body["next_cursor"]})


def _code(prefix: str, i: int, width: int) -> str:
    return f"{prefix}{i:0{width}d}"


async def time_lists(sampler: Sampler, rng: random.Random, args: argparse.Namespace) -> None:
    def contact() -> dict[str, str]:
        return {"contact_no": _code("CT", rng.randint(1, args.contacts), 6)}

    def company() -> dict[str, str]:
        return {"company_no": _code("CT", rng.randrange(args.contacts // 10) * 10 + 1, 6)}

    def salesperson() -> dict[str, str]:
        return {"salesperson_code": _code("SP", rng.randint(1, args.salespersons), 4)}

    def direction() -> dict[str, str]:
        return {"direction": rng.choice(("inbound", "outbound"))}

    def date_range() -> dict[str, str]:
        since = START + dt.timedelta(days=rng.randrange(1000))
        return {"since": since.isoformat(), "until": (since + dt.timedelta(days=7)).isoformat()}

    kinds: dict[str, Callable[[], dict[str, str]]] = {
        "list contact": contact,
        "list company": company,
        "list salesperson": salesperson,
        "list direction": direction,
        "list date range": date_range,
    }
    for kind, make in kinds.items():
        for _ in range(40):
            await sampler.pages(kind, make() | {"limit": "50"}, pages=5)
    for _ in range(200):  # deep pages of the whole log, from a cursor in its middle
        k = rng.randint(1, args.entries)
        at = START + dt.timedelta(seconds=k * STEP_SECONDS)
        await sampler.get("list deep page", {"limit": "50", "cursor": cursor_at(at, k)})


async def time_searches(sampler: Sampler, rng: random.Random, args: argparse.Namespace) -> None:
    def company() -> str:
        return _code("CT", rng.randrange(args.contacts // 10) * 10 + 1, 6)

    makers: list[tuple[str, int, Callable[[], dict[str, str]]]] = [
        ("search word", 50, lambda: {"q": rng.choice(WORDS)}),
        ("search prefix", 40, lambda: {"q": rng.choice(WORDS)[:4]}),
        ("search two words", 40, lambda: {"q": " ".join(rng.sample(WORDS, 2))}),
        ("search rare token", 40, lambda: {"q": str(rng.randrange(100_000))}),
        ("search in company", 30, lambda: {"q": rng.choice(WORDS), "company_no": company()}),
    ]
    for kind, n, make in makers:
        for _ in range(n):
            await sampler.get(kind, make() | {"limit": "50"})


# --- the run ----------------------------------------------------------------------------------


async def _no_mime(item_id: str | None, message_id: str | None) -> bytes:
    raise ItemGone("the UI benchmark downloads nothing")


def percentile(values: list[float], p: float) -> float:
    """Nearest rank (0 when empty)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run_ui(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    tokens = tmp / "tokens"
    tokens.write_text(f"bench:{TOKEN}\n")
    port = free_port()
    settings = Settings.from_env(
        {
            "EMAILLOG_DATA_DIR": str(tmp / "data"),
            "EMAILLOG_UI_HOST": "127.0.0.1",
            "EMAILLOG_UI_PORT": str(port),
            "EMAILLOG_UI_AUTH": "token",
            "EMAILLOG_API_TOKENS_FILE": str(tokens),
        }
    )
    async with open_database(settings.database) as database:
        started = time.perf_counter()
        await fill(
            database.pool,
            salespersons=args.salespersons,
            contacts=args.contacts,
            entries=args.entries,
        )
        fill_seconds = time.perf_counter() - started
        _progress(f"filled {args.entries} entries in {fill_seconds:.1f} s")
        app = build_web_app(WebDeps(pool=database.pool, settings=settings, fetch_mime=_no_mime))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                sampler = Sampler(session, f"http://127.0.0.1:{port}")
                rng = random.Random(args.seed)
                await _timed(time_lists(sampler, rng, args), "lists")
                await _timed(time_searches(sampler, rng, args), "searches")
        finally:
            await runner.cleanup()
    return summarise(args, sampler, fill_seconds)


async def _timed(work: Awaitable[None], what: str) -> None:
    started = time.perf_counter()
    await work
    _progress(f"{what} {time.perf_counter() - started:.1f} s")


def _progress(text: str) -> None:
    print(f"bench --ui: {text}", file=sys.stderr, flush=True)


def summarise(args: argparse.Namespace, sampler: Sampler, fill_seconds: float) -> dict[str, Any]:
    lists = [ms for kind, v in sampler.ms.items() if kind.startswith("list") for ms in v]
    searches = [ms for kind, v in sampler.ms.items() if kind.startswith("search") for ms in v]
    return {
        "entries": args.entries,
        "contacts": args.contacts,
        "salespersons": args.salespersons,
        "fill_seconds": round(fill_seconds, 1),
        "ui_list_requests": len(lists),
        "ui_list_p50_ms": round(percentile(lists, 50), 1),
        "ui_list_p95_ms": round(percentile(lists, 95), 1),
        "ui_search_requests": len(searches),
        "ui_search_p50_ms": round(percentile(searches, 50), 1),
        "ui_search_p95_ms": round(percentile(searches, 95), 1),
        "ui_failed_requests": sampler.failures,
        "per_kind_p50_p95_ms": {
            kind: [round(percentile(v, 50), 1), round(percentile(v, 95), 1), len(v)]
            for kind, v in sampler.ms.items()
        },
    }


def table(r: dict[str, Any]) -> str:
    lines = [
        f"emaillog UI benchmark: {r['entries']:,} entries, {r['contacts']:,} contacts, "
        f"{r['salespersons']:,} salespersons (filled in {r['fill_seconds']} s)"
    ]
    for kind, (p50, p95, n) in r["per_kind_p50_p95_ms"].items():
        lines.append(f"  {kind:<20} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   ({n} requests)")
    lines.append(
        f"  lists:    p50 {r['ui_list_p50_ms']} / p95 {r['ui_list_p95_ms']} ms "
        f"(target p95 <= {TARGET_LIST_P95_MS:g})"
    )
    lines.append(
        f"  searches: p50 {r['ui_search_p50_ms']} / p95 {r['ui_search_p95_ms']} ms "
        f"(target p95 <= {TARGET_SEARCH_P95_MS:g}); failed requests: {r['ui_failed_requests']}"
    )
    return "\n".join(lines)
