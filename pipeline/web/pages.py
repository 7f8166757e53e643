"""The reader's pages: search the log, a contact's and a salesperson's timeline, one entry.

Every page shows logged entries only (the interaction log); nothing of mail that was not
logged. Lists are newest first, one page at a time through the read model's keyset cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from pipeline.errors import InputError
from pipeline.store import entries as store
from pipeline.web.forms import SearchForm
from pipeline.web.render import DEPS, render

PAGE_SIZE = 50
MAX_KEY_CHARS = 20
STALE_CURSOR = "This page link is no longer valid: start again from the first page."


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a list: its entries, the link to the next page, and any problem."""

    entries: list[store.Entry]
    next_url: str | None = None
    problem: str | None = None


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", search_page)
    app.router.add_get("/entries", search_page)
    app.router.add_get(r"/entries/{entry_no:\d{1,18}}", entry_page)
    # `.+`: a number may hold a slash (sent as %2F, matched decoded).
    app.router.add_get("/contacts/{no:.+}", contact_page)
    app.router.add_get("/salespeople/{code:.+}", salesperson_page)


async def listing(request: web.Request, query: store.EntryQuery, keep: dict[str, str]) -> Listing:
    """A page of `query`'s entries from the `cursor` parameter on; the next page's link
    keeps `keep` (the search) and carries the next cursor."""
    cursor = request.query.get("cursor") or None
    try:
        page = await store.list_entries(
            request.app[DEPS].pool, query, limit=PAGE_SIZE, cursor=cursor
        )
    except InputError:  # a cursor we did not hand out, or one from an older version
        return Listing([], problem=STALE_CURSOR)
    next_url = None
    if page.next_cursor:
        next_url = request.path + "?" + urlencode({**keep, "cursor": page.next_cursor})
    return Listing(list(page.entries), next_url)


def directory_key(request: web.Request, name: str) -> str:
    """A contact no. or salesperson code from the path; 404 for what none can be (the
    directory's keys are at most 20 characters, and PostgreSQL text holds no NUL)."""
    key = request.match_info[name]
    if len(key) > MAX_KEY_CHARS or "\x00" in key:
        raise web.HTTPNotFound()
    return key


async def search_page(request: web.Request) -> web.Response:
    form = SearchForm.from_query(request.query)
    query, problems = form.entry_query()
    if query is None:
        return render(
            request, "search.html", status=400, form=form, problems=problems, listing=None, hide=()
        )
    found = await listing(request, query, form.params())
    return render(request, "search.html", form=form, problems=problems, listing=found, hide=())


async def contact_page(request: web.Request) -> web.Response:
    no = directory_key(request, "no")
    contact = await store.get_contact(request.app[DEPS].pool, no)
    if contact is None:
        raise web.HTTPNotFound()
    # A company's timeline rolls up its persons' entries (NAV's company contact).
    is_company = contact.type == "company"
    query = store.EntryQuery(company_no=no) if is_company else store.EntryQuery(contact_no=no)
    found = await listing(request, query, {})
    # A person's timeline need not repeat its name and company on every row.
    hide = ("company",) if is_company else ("contact", "company")
    return render(
        request, "contact.html", contact=contact, is_company=is_company, listing=found, hide=hide
    )


async def salesperson_page(request: web.Request) -> web.Response:
    code = directory_key(request, "code")
    salesperson = await store.get_salesperson(request.app[DEPS].pool, code)
    if salesperson is None:
        raise web.HTTPNotFound()
    found = await listing(request, store.EntryQuery(salesperson_code=code), {})
    return render(
        request, "salesperson.html", salesperson=salesperson, listing=found, hide=("salesperson",)
    )


async def entry_page(request: web.Request) -> web.Response:
    pool = request.app[DEPS].pool
    entry = await store.get_entry(pool, int(request.match_info["entry_no"]))
    if entry is None:
        raise web.HTTPNotFound()
    stored = entry.stored_message
    decisions = await store.decision_record(pool, stored.id)
    return render(
        request,
        "entry.html",
        entry=entry,
        stored=stored,
        outlook_url=web_link(stored),
        decisions=decisions,
        mime_url=f"/api/v1/stored-messages/{stored.id}/mime",
    )


def web_link(stored: store.StoredRef) -> str | None:
    """The stored message's web link, exactly as the mail server gave it, if it is a web
    address (a `javascript:` link would be no link to Outlook)."""
    link = stored.web_link
    return link if link and link.lower().startswith(("https://", "http://")) else None
