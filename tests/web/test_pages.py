"""The server-rendered pages through aiohttp's test client, on a real PostgreSQL: each page
renders, the search filters and pages, unknown things are 404 pages, the operations page is
for administrators, and no page carries inline script or style (the CSP forbids them) or
lets a subject's markup through."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.errors import ItemGone
from pipeline.web.app import build_web_app
from pipeline.web.deps import SourceStatus, WebDeps
from pipeline.web.pages import PAGE_SIZE
from tests.service.harness import prepare_database
from tests.web.pages_kit import (
    ADMIN_TOKEN,
    READER_TOKEN,
    add_entry,
    add_failure,
    bearer,
    web_settings,
    write_tokens,
)

ENTRY_LINK = re.compile(r'href="/entries/(\d+)"')


async def _no_mime(item_id: str | None, message_id: str | None) -> bytes:
    raise ItemGone("page tests fetch no mail")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database holding the small test directory (tests/service/harness.py)."""
    await prepare_database(database_url)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


def _client_for(pool: asyncpg.Pool, tmp_path: Path, **deps: object) -> TestClient:
    settings = web_settings("postgresql://unused", write_tokens(tmp_path))
    app = build_web_app(WebDeps(pool, settings, _no_mime, **deps))  # type: ignore[arg-type]
    return TestClient(TestServer(app))


@pytest.fixture
async def client(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with _client_for(pool, tmp_path) as c:
        yield c


async def page(
    client: TestClient, path: str, *, token: str = READER_TOKEN, status: int = 200
) -> str:
    response = await client.get(path, headers=bearer(token), allow_redirects=False)
    html = await response.text()
    assert response.status == status, html
    assert response.content_type == "text/html"
    assert_csp_safe(html)
    return html


class _Markup(HTMLParser):
    """The elements and attributes a browser would see (escaped text is no markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def assert_csp_safe(html: str) -> None:
    """No script, no style element or attribute, no event handler: the strict CSP would
    block them (and a subject must never become one)."""
    markup = _Markup()
    markup.feed(html)
    assert not markup.tags & {"script", "style", "iframe", "object", "embed"}, markup.tags
    assert "style" not in markup.attributes
    assert not [a for a in markup.attributes if a.startswith("on")], markup.attributes


def listed(html: str) -> list[int]:
    return [int(n) for n in ENTRY_LINK.findall(html)]


async def test_search_lists_newest_first_with_links(pool: asyncpg.Pool, client: TestClient) -> None:
    async with pool.acquire() as conn:
        older = await add_entry(conn, subject="Older quote")
        newer = await add_entry(conn, contact_no="C2", salesperson_code="SP2", subject="Newer")
    html = await page(client, "/")
    assert listed(html) == [newer.entry_no, older.entry_no]
    assert 'href="/contacts/C2"' in html and 'href="/salespeople/SP2"' in html
    assert 'href="/contacts/CO1"' in html  # the company column links the company's timeline
    for label in ("Contact (name or no.)", "Company no.", "Date from", "Text in subject"):
        assert f">{label}</label>" in html
    assert listed(await page(client, "/entries")) == [newer.entry_no, older.entry_no]


async def test_search_filters(pool: asyncpg.Pool, client: TestClient) -> None:
    march = dt.datetime(2024, 3, 10, 9, 0, tzinfo=dt.UTC)
    async with pool.acquire() as conn:
        buyer = await add_entry(conn, contact_no="C1", subject="Price list spring", at=march)
        other = await add_entry(
            conn,
            contact_no="C2",
            salesperson_code="SP2",
            flow="inbound",
            subject="Invoice question",
            at=march + dt.timedelta(days=30),
        )
    cases = {
        "contact=buyer": [buyer],  # a name, case-insensitive
        "contact=C2": [other],  # a number
        "company_no=CO1": [other, buyer],
        "salesperson_code=SP2": [other],
        "direction=inbound": [other],
        "direction=outbound": [buyer],
        "q=price": [buyer],
        "since=2024-04-01": [other],
        "until=2024-03-10": [buyer],  # the "to" date is inclusive
        "since=2024-03-11&until=2024-04-08": [],
        "contact=C1&salesperson_code=SP2": [],
    }
    for query, expected in cases.items():
        html = await page(client, f"/entries?{query}")
        assert listed(html) == [e.entry_no for e in expected], query
    # The form shows what was searched for.
    html = await page(client, "/entries?contact=buyer&direction=inbound")
    assert 'value="buyer"' in html and '<option value="inbound" selected>' in html


async def test_bad_search_input_is_a_message(client: TestClient) -> None:
    html = await page(client, "/entries?since=yesterday", status=400)
    assert "Date from is not a date" in html
    html = await page(client, "/entries?since=2024-05-01&until=2024-04-01", status=400)
    assert "Date to is before date from" in html
    html = await page(client, "/entries?direction=sideways", status=400)
    assert "Direction must be inbound or outbound" in html
    html = await page(client, "/entries?since=9999-12-31", status=400)
    assert "Date from must be between" in html
    html = await page(client, "/entries?contact=%00&q=%00")  # ignored, not a server error
    html = await page(client, "/entries?cursor=not-a-cursor")
    assert "no longer valid" in html


async def test_next_page_link_keeps_the_search(pool: asyncpg.Pool, client: TestClient) -> None:
    async with pool.acquire() as conn:
        made = [
            (await add_entry(conn, subject=f"Offer {i}")).entry_no for i in range(PAGE_SIZE + 5)
        ]
        await add_entry(conn, contact_no="C2", subject="Not this contact")
    html = await page(client, "/entries?contact=C1")
    first = listed(html)
    assert first == made[::-1][:PAGE_SIZE]
    [next_url] = re.findall(r'href="([^"]*cursor=[^"]*)" rel="next"', html)
    assert "contact=C1" in next_url
    html = await page(client, next_url.replace("&amp;", "&"))
    assert listed(html) == made[::-1][PAGE_SIZE:]
    assert 'rel="next"' not in html  # the last page


async def test_contact_and_salesperson_timelines(pool: asyncpg.Pool, client: TestClient) -> None:
    async with pool.acquire() as conn:
        buyer = await add_entry(conn, contact_no="C1")
        other = await add_entry(conn, contact_no="C2", salesperson_code="SP2")
    html = await page(client, "/contacts/C1")
    assert "Buyer" in html and "Theirs Ltd" in html
    assert listed(html) == [buyer.entry_no]
    # A company's timeline rolls up its persons' entries.
    html = await page(client, "/contacts/CO1")
    assert "Theirs Ltd" in html and listed(html) == [other.entry_no, buyer.entry_no]
    html = await page(client, "/salespeople/SP2")
    assert "Boss" in html and listed(html) == [other.entry_no]


async def test_unknown_things_are_404_pages(client: TestClient) -> None:
    paths = (
        "/contacts/NOPE",
        "/salespeople/NOPE",
        "/entries/999999",
        "/entries/99999999999999999999999",
        "/no/such/page",
        "/contacts/%00",
        "/contacts/" + "X" * 300,
        "/salespeople/a%2Fb",
    )
    for path in paths:
        html = await page(client, path, status=404)
        assert "Not found" in html


async def test_entry_page(pool: asyncpg.Pool, client: TestClient) -> None:
    link = "https://outlook.office.com/mail/deeplink/read/AAMk%2Bx?ItemID=a&b=1"
    async with pool.acquire() as conn:
        logged = await add_entry(conn, subject="Contract draft", web_link=link)
        unlinked = await add_entry(conn, web_link=None)
        scripted = await add_entry(conn, web_link="javascript:alert(1)")
    html = await page(client, f"/entries/{logged.entry_no}")
    assert "Contract draft" in html and "Buyer" in html and "Sales" in html
    # The Outlook link is the stored web link exactly (HTML-escaped in the attribute).
    [href] = re.findall(r'href="([^"]*)" target="_blank" rel="noopener', html)
    assert href.replace("&amp;", "&") == link
    assert f'href="/api/v1/stored-messages/{logged.stored_message_id}/mime"' in html
    assert "Rule 4" in html and "logged" in html  # the decision record
    for other in (unlinked, scripted):
        html = await page(client, f"/entries/{other.entry_no}")
        assert "Open in Outlook" not in html and "Download .eml" in html
        assert "javascript:" not in html


async def test_markup_in_a_subject_is_shown_not_run(pool: asyncpg.Pool, client: TestClient) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    async with pool.acquire() as conn:
        logged = await add_entry(conn, subject=evil)
    for path in ("/entries", f"/entries/{logged.entry_no}", "/contacts/C1"):
        html = await page(client, path)  # asserts no script element, no on*= attribute
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_ops_is_for_administrators(pool: asyncpg.Pool, client: TestClient) -> None:
    async with pool.acquire() as conn:
        await add_entry(conn, subject="Secret deal")
        failed_hash = await add_failure(conn)
    html = await page(client, "/ops", token=ADMIN_TOKEN)
    assert "<svg" in html and 'class="o-logged"' in html  # a bar of the chart
    assert failed_hash in html and "failed-queue-" in html
    assert "not running intake in this process" in html
    assert "Salespersons" in html
    assert "Secret deal" not in html  # operational data only
    html = await page(client, "/ops?interval=day", token=ADMIN_TOKEN)
    assert "Outcomes per day" in html
    html = await page(client, "/ops?interval=week", token=ADMIN_TOKEN, status=400)
    assert "The interval must be hour or day." in html
    html = await page(client, "/ops", token=READER_TOKEN, status=403)
    assert "administrators only" in html
    assert 'href="/ops"' not in html  # no menu entry for a reader


async def test_ops_shows_the_source(pool: asyncpg.Pool, tmp_path: Path) -> None:
    status = SourceStatus("ews", "queue@example.com", True, "streaming")
    async with _client_for(pool, tmp_path, source_status=lambda: status) as client:
        html = await page(client, "/ops", token=ADMIN_TOKEN)
    assert "queue@example.com" in html and "streaming" in html


async def test_unauthenticated_visit_goes_to_sign_in(client: TestClient) -> None:
    response = await client.get("/contacts/C1?x=1", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/signin?next=")


async def test_static_assets(client: TestClient) -> None:
    response = await client.get("/static/style.css")
    assert response.status == 200 and "max-age" in response.headers["Cache-Control"]
    assert ".o-logged" in await response.text()
