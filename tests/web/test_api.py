"""The REST API against a real PostgreSQL, through aiohttp's test client with bearer tokens:
every filter, the company roll-up, keyset pages while entries are being added, following
new entries (long-poll), the .eml download and its access record, 401/403/404/400, and the
OpenAPI document (valid, and exactly the routes)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.errors import ItemGone, Throttled
from pipeline.store import entries
from pipeline.store.migrate import apply_migrations
from pipeline.web.api import PREFIX, add_api_routes
from pipeline.web.auth import setup_auth
from pipeline.web.deps import WebDeps
from tests.web.pages_kit import (
    ADMIN_TOKEN,
    READER_TOKEN,
    add_entry,
    add_failure,
    bearer,
    web_settings,
    write_tokens,
)

T0 = dt.datetime(2024, 3, 4, 10, 0, tzinfo=dt.UTC)
READER = bearer(READER_TOKEN)
ADMIN = bearer(ADMIN_TOKEN)
Client = TestClient[web.Request, web.Application]


@dataclass
class MailStore:
    """The storage folder as the API sees it (deps.fetch_mime): item id -> bytes."""

    items: dict[str, bytes] = field(default_factory=dict)
    throttled: bool = False

    async def fetch(self, item_id: str | None, message_id: str | None) -> bytes:
        if self.throttled:
            raise Throttled("busy", retry_after=7)
        if item_id not in self.items:
            raise ItemGone(f"{item_id} is not in storage")
        return self.items[item_id]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
        await conn.execute(
            """INSERT INTO contact (no, name, type, company_no) VALUES
               ('CO1', 'Adatum Ltd', 'company', 'CO1'), ('C1', 'Kim Abel', 'person', 'CO1'),
               ('C2', 'Lou Berg', 'person', 'CO1'), ('CO2', 'Fabrikam', 'company', 'CO2'),
               ('C3', 'Max Cole', 'person', 'CO2')"""
        )
        await conn.execute("INSERT INTO salesperson (code, name) VALUES ('SP1', 'A'), ('SP2', 'B')")
    finally:
        await conn.close()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


@pytest.fixture
def mail() -> MailStore:
    return MailStore()


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(
    pool: asyncpg.Pool, mail: MailStore, database_url: str, tmp_path: Path
) -> AsyncIterator[ClientFactory]:
    clients: list[Client] = []

    async def make(**settings: Any) -> Client:
        values = web_settings(database_url, write_tokens(tmp_path), **settings)
        deps = WebDeps(pool=pool, settings=values, fetch_mime=mail.fetch)
        app = web.Application()
        setup_auth(app, values.ui)
        add_api_routes(app, deps)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> Client:
    return await make_client()


async def get_json(client: Client, path: str, status: int = 200, **query: Any) -> Any:
    response = await client.get(path, params={k: str(v) for k, v in query.items()}, headers=READER)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def entry_nos(client: Client, **query: Any) -> list[int]:
    body = await get_json(client, f"{PREFIX}/entries", **query)
    return [e["entry_no"] for e in body["entries"]]


# --- filters -----------------------------------------------------------------------------


async def test_every_filter_selects_its_entries_newest_first(
    pool: asyncpg.Pool, client: Client
) -> None:
    async with pool.acquire() as conn:
        a = await add_entry(conn, contact_no="C1", subject="Quote for Adatum pumps", at=T0)
        b = await add_entry(
            conn, contact_no="C2", salesperson_code="SP2", flow="inbound",
            subject="RE: Delivery date", at=T0 + dt.timedelta(days=1),
        )  # fmt: skip
        c = await add_entry(
            conn, contact_no="C3", company_no="CO2", subject="Invoice 42 overdue",
            at=T0 + dt.timedelta(days=2),
        )  # fmt: skip
        d = await add_entry(conn, contact_no="CO1", subject="Pumps catalogue")
        await conn.execute(  # a message without a date
            "UPDATE interaction_log_entry SET interaction_at = NULL WHERE entry_no = $1", d.entry_no
        )
    newest_first = [c.entry_no, b.entry_no, a.entry_no, d.entry_no]  # no date sorts last
    assert await entry_nos(client) == newest_first
    assert await entry_nos(client, contact_no="C1") == [a.entry_no]
    # A company rolls up its persons' entries and its own.
    assert await entry_nos(client, company_no="CO1") == [b.entry_no, a.entry_no, d.entry_no]
    assert await entry_nos(client, salesperson_code="SP2") == [b.entry_no]
    assert await entry_nos(client, direction="inbound") == [b.entry_no]
    assert await entry_nos(client, direction="outbound") == [c.entry_no, a.entry_no, d.entry_no]
    since, until = (T0 + dt.timedelta(days=1)).isoformat(), (T0 + dt.timedelta(days=2)).isoformat()
    assert await entry_nos(client, since=since) == [c.entry_no, b.entry_no]
    assert await entry_nos(client, until=until) == [b.entry_no, a.entry_no]
    assert await entry_nos(client, since="2024-03-05", until="2024-03-06") == [b.entry_no]
    # Words of the subject, as prefixes, case-insensitive, all required.
    assert await entry_nos(client, q="pumps") == [a.entry_no, d.entry_no]
    assert await entry_nos(client, q="PUMP") == [a.entry_no, d.entry_no]
    assert await entry_nos(client, q="adatum pump") == [a.entry_no]
    assert await entry_nos(client, q="invoice 42") == [c.entry_no]
    assert await entry_nos(client, q="nothing-like-this") == []
    assert await entry_nos(client, company_no="CO1", direction="outbound", q="pumps") == [
        a.entry_no,
        d.entry_no,
    ]


async def test_an_entry_carries_the_documented_fields(pool: asyncpg.Pool, client: Client) -> None:
    async with pool.acquire() as conn:
        logged = await add_entry(conn, contact_no="C1", subject="Quote", at=T0)
    body = await get_json(client, f"{PREFIX}/entries/{logged.entry_no}")
    assert body == {
        "entry_no": logged.entry_no,
        "contact_no": "C1",
        "contact_company_no": "CO1",
        "contact_alt_address_code": "",
        "salesperson_code": "SP1",
        "information_flow": "outbound",
        "initiated_by": "us",
        "description": "Quote",
        "subject": "Quote",
        "interaction_at": "2024-03-04T10:00:00+00:00",
        "template_code": "EMAIL",
        "cost_lcy": "1.50",
        "duration_min": "3.00",
        "stored_message": {
            "id": logged.stored_message_id,
            "internet_message_id": body["stored_message"]["internet_message_id"],
            "web_link": "https://outlook.example.com/owa/?ItemID=abc&exvsurl=1",
            "mime_url": str(
                client.make_url(f"{PREFIX}/stored-messages/{logged.stored_message_id}/mime")
            ),
        },
    }
    assert body["stored_message"]["internet_message_id"].startswith("<page-")
    (listed,) = (await get_json(client, f"{PREFIX}/entries"))["entries"]
    assert listed == body


# --- pages -------------------------------------------------------------------------------


async def test_pages_have_no_gaps_or_repeats_while_entries_are_added(
    pool: asyncpg.Pool, client: Client
) -> None:
    async with pool.acquire() as conn:
        existing = {
            (await add_entry(conn, at=T0 + dt.timedelta(minutes=i % 40))).entry_no
            for i in range(90)
        }  # ties on interaction_at: entry_no orders them
    stop = asyncio.Event()

    async def keep_adding() -> None:
        i = 0
        async with pool.acquire() as conn:
            while not stop.is_set():
                # Before, among and after the entries being paged through.
                await add_entry(conn, at=T0 + dt.timedelta(minutes=(i * 7) % 60 - 10))
                i += 1
                await asyncio.sleep(0.005)

    adder = asyncio.create_task(keep_adding())
    seen: list[int] = []
    cursor: str | None = None
    try:
        while True:
            query: dict[str, Any] = {"limit": 7} | ({"cursor": cursor} if cursor else {})
            body = await get_json(client, f"{PREFIX}/entries", **query)
            seen += [e["entry_no"] for e in body["entries"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
    finally:
        stop.set()
        await adder
    assert len(seen) == len(set(seen))  # no repeats
    assert existing <= set(seen)  # no gaps
    assert len(seen) > len(existing)  # and entries were added meanwhile


async def test_bad_parameters_are_400_naming_the_parameter(client: Client) -> None:
    bad = {
        "limit": ["0", "501", "ten"],
        "since": ["yesterday", "2024-13-01"],
        "until": ["2024-02-30T10:00"],
        "direction": ["sideways"],
        "cursor": ["not-a-cursor", "eyJhdCI6MX0"],
        "q": ["--- !"],
        "colour": ["blue"],
        "wait_seconds": ["5"],
    }
    for name, values in bad.items():
        for value in values:
            body = await get_json(client, f"{PREFIX}/entries", 400, **{name: value})
            assert body["error"].startswith(name + ":"), (name, value, body)
    body = await get_json(client, f"{PREFIX}/entries", 400, since="2024-03-02", until="2024-03-01")
    assert body["error"].startswith("until:")
    body = await get_json(client, f"{PREFIX}/entries", 400, after_entry_no=1, contact_no="C1")
    assert body["error"].startswith("contact_no: cannot be combined with after_entry_no")
    for value in ("x", "-1"):
        body = await get_json(client, f"{PREFIX}/entries", 400, after_entry_no=value)
        assert body["error"].startswith("after_entry_no:")
    body = await get_json(client, f"{PREFIX}/entries", 400, after_entry_no=0, wait_seconds="soon")
    assert body["error"].startswith("wait_seconds:")


# --- following new entries ---------------------------------------------------------------


async def test_after_entry_no_lists_ascending_and_long_polls(
    pool: asyncpg.Pool, client: Client
) -> None:
    async with pool.acquire() as conn:
        first = [(await add_entry(conn, at=T0 - dt.timedelta(days=i))).entry_no for i in range(3)]
    body = await get_json(client, f"{PREFIX}/entries", after_entry_no=0, limit=2)
    assert [e["entry_no"] for e in body["entries"]] == first[:2]
    assert body["next_after_entry_no"] == first[1]
    body = await get_json(client, f"{PREFIX}/entries", after_entry_no=first[1])
    assert [e["entry_no"] for e in body["entries"]] == first[2:]
    # Nothing new: an empty wait answers [] and the same position.
    body = await get_json(client, f"{PREFIX}/entries", after_entry_no=first[2], wait_seconds=0.3)
    assert body == {"entries": [], "next_after_entry_no": first[2]}

    # An entry written during the wait wakes the request up.
    async def add_later() -> int:
        await asyncio.sleep(0.7)
        async with pool.acquire() as conn:
            return (await add_entry(conn)).entry_no

    waiting = asyncio.create_task(
        get_json(client, f"{PREFIX}/entries", after_entry_no=first[2], wait_seconds=30)
    )
    added = await add_later()
    body = await asyncio.wait_for(waiting, timeout=25)
    assert [e["entry_no"] for e in body["entries"]] == [added]
    assert body["next_after_entry_no"] == added


async def test_the_wait_is_capped_by_the_setting(make_client: ClientFactory) -> None:
    client = await make_client(api_max_wait_seconds=0.5)
    body = await asyncio.wait_for(
        get_json(client, f"{PREFIX}/entries", after_entry_no=0, wait_seconds=3600), timeout=30
    )
    assert body == {"entries": [], "next_after_entry_no": 0}


async def test_a_follower_never_sees_a_number_before_a_smaller_uncommitted_one(
    pool: asyncpg.Pool, client: Client
) -> None:
    async with pool.acquire() as slow, pool.acquire() as fast:
        transaction = slow.transaction()
        await transaction.start()
        try:
            low = await add_entry(slow)  # numbered first, committed last
            high = await add_entry(fast)
            assert high.entry_no > low.entry_no
            assert await entry_nos(client, after_entry_no=0) == []
        finally:
            await transaction.commit()
    assert await entry_nos(client, after_entry_no=0) == [low.entry_no, high.entry_no]


# --- one entry, the stored message --------------------------------------------------------


async def test_one_entry_404_and_400(pool: asyncpg.Pool, client: Client) -> None:
    body = await get_json(client, f"{PREFIX}/entries/999", 404)
    assert "999" in body["error"]
    body = await get_json(client, f"{PREFIX}/entries/abc", 400)
    assert body["error"].startswith("entry_no:")
    body = await get_json(client, f"{PREFIX}/no-such-thing", 404)
    assert body == {"error": "no such API path"}


async def test_mime_download_is_recorded_and_named_without_the_subject(
    pool: asyncpg.Pool, client: Client, mail: MailStore
) -> None:
    async with pool.acquire() as conn:
        logged = await add_entry(conn, subject="Secret merger plans")
        storage_item_id = await conn.fetchval(
            "SELECT storage_item_id FROM stored_message WHERE id = $1", logged.stored_message_id
        )
    raw = b"Subject: Secret merger plans\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"
    mail.items[storage_item_id] = raw
    url = f"{PREFIX}/stored-messages/{logged.stored_message_id}/mime"
    response = await client.get(url, headers=READER)
    assert response.status == 200
    assert response.content_type == "message/rfc822"
    assert await response.read() == raw
    disposition = response.headers["Content-Disposition"]
    assert disposition == f'attachment; filename="entry-{logged.stored_message_id}.eml"'
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT who, stored_message_id, action FROM stored_message_access")
    assert [tuple(r) for r in rows] == [("bob", logged.stored_message_id, "download")]


async def test_mime_404_when_unknown_or_gone_and_503_when_the_server_is_busy(
    pool: asyncpg.Pool, client: Client, mail: MailStore
) -> None:
    async with pool.acquire() as conn:
        logged = await add_entry(conn)
    url = f"{PREFIX}/stored-messages/{logged.stored_message_id}/mime"
    assert "no longer" in (await get_json(client, url, 404))["error"]  # not in storage
    assert "999" in (await get_json(client, f"{PREFIX}/stored-messages/999/mime", 404))["error"]
    assert (await get_json(client, f"{PREFIX}/stored-messages/x/mime", 400))["error"].startswith(
        "id:"
    )
    mail.throttled = True
    response = await client.get(url, headers=READER)
    assert response.status == 503
    assert response.headers["Retry-After"] == "7"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stored_message_access") == 0


# --- who may ask -------------------------------------------------------------------------


async def test_no_or_a_wrong_token_is_401(client: Client) -> None:
    for headers in ({}, bearer("wrong-token-0123456789abcdef")):
        response = await client.get(f"{PREFIX}/entries", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "error" in await response.json()


async def test_outcomes_are_for_administrators(pool: asyncpg.Pool, client: Client) -> None:
    async with pool.acquire() as conn:
        await add_entry(conn)
        await add_entry(conn)
        await add_failure(conn)
    response = await client.get(f"{PREFIX}/outcomes", headers=READER)
    assert response.status == 403
    assert await response.json() == {"error": "administrators only"}
    response = await client.get(f"{PREFIX}/outcomes", headers=ADMIN)
    assert response.status == 200
    body = await response.json()
    assert body["interval"] == "hour"
    assert len(body["buckets"]) in (24, 25)  # a day of hours, the first one partial
    totals: dict[str, int] = {}
    for bucket in body["buckets"]:
        for outcome, n in bucket["counts"].items():
            totals[outcome] = totals.get(outcome, 0) + n
    assert totals == {"logged": 2, "failed": 1}
    response = await client.get(
        f"{PREFIX}/outcomes",
        params={"interval": "day", "since": "2024-01-01", "until": "2024-01-08"},
        headers=ADMIN,
    )
    body = await response.json()
    assert [b["start"][:10] for b in body["buckets"]] == [f"2024-01-0{d}" for d in range(1, 8)]
    assert all(b["counts"] == {} for b in body["buckets"])
    for query in (
        {"interval": "week"},
        {"since": "2020-01-01"},
        {"since": "2001-01-01", "until": "2000-01-01"},
    ):
        response = await client.get(f"{PREFIX}/outcomes", params=query, headers=ADMIN)
        assert response.status == 400, query
        assert (await response.json())["error"].split(":")[0] in ("interval", "since", "until")


# --- the OpenAPI document ----------------------------------------------------------------


async def test_the_openapi_document_validates_and_matches_the_routes(
    pool: asyncpg.Pool, client: Client, database_url: str, tmp_path: Path
) -> None:
    from openapi_spec_validator import validate

    from pipeline.web.app import build_web_app

    document = await get_json(client, f"{PREFIX}/openapi.json")
    validate(document)
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    # Against the whole application, as `emaillog run` serves it.
    settings = web_settings(database_url, write_tokens(tmp_path))
    app = build_web_app(WebDeps(pool=pool, settings=settings, fetch_mime=MailStore().fetch))
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(PREFIX + "/")
        and route.method != "HEAD"
    }
    assert registered == documented


@pytest.mark.parametrize("few_hits", [5000, 2])
async def test_search_pages_alike_whether_hits_are_few_or_many(
    pool: asyncpg.Pool, client: Client, monkeypatch: pytest.MonkeyPatch, few_hits: int
) -> None:
    # Few hits are taken from the word index and sorted; many are found by walking the log
    # newest first (entries.FEW_HITS decides): the answers must not differ.
    monkeypatch.setattr(entries, "FEW_HITS", few_hits)
    async with pool.acquire() as conn:
        wanted = [
            (await add_entry(conn, subject=f"Order {i} confirmed", at=T0 + dt.timedelta(hours=i)))
            for i in range(12)
        ]
        for i in range(5):
            await add_entry(conn, subject=f"Invoice {i}", at=T0 + dt.timedelta(hours=i))
    seen: list[int] = []
    cursor = None
    while True:
        query = {"q": "ord confirm", "limit": "5"} | ({"cursor": cursor} if cursor else {})
        body = await get_json(client, f"{PREFIX}/entries", **query)
        seen += [e["entry_no"] for e in body["entries"]]
        if not (cursor := body["next_cursor"]):
            break
    assert seen == [w.entry_no for w in reversed(wanted)]
