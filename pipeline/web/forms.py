"""The search form: what the user typed (kept as text, to show it again) and the `EntryQuery`
it means, or the problems that keep it from meaning one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields

from pipeline.store.entries import EntryQuery

#: Longer input is no name, number or subject anyone logs; cut it rather than query with it.
MAX_FIELD_CHARS = 100
DIRECTIONS = ("inbound", "outbound")
#: Dates outside these years are typing mistakes (and 9999-12-31 has no next day).
FIRST_YEAR, LAST_YEAR = 1900, 9000


@dataclass(frozen=True, slots=True)
class SearchForm:
    contact: str = ""
    company_no: str = ""
    salesperson_code: str = ""
    since: str = ""  # YYYY-MM-DD, as <input type="date"> sends it
    until: str = ""  # YYYY-MM-DD, inclusive
    direction: str = ""  # "", "inbound" or "outbound"
    q: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SearchForm:
        # PostgreSQL text cannot hold NUL: drop it rather than fail the query.
        values = {
            f.name: query.get(f.name, "").replace("\x00", "").strip()[:MAX_FIELD_CHARS]
            for f in fields(cls)
        }
        return cls(**values)

    def params(self) -> dict[str, str]:
        """The filled-in fields, for links that keep the search (next page)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def is_empty(self) -> bool:
        return not self.params()

    def entry_query(self) -> tuple[EntryQuery | None, list[str]]:
        """The query, or None and what is wrong (one readable sentence per field)."""
        problems: list[str] = []
        since = _date(self.since, "Date from", problems)
        until = _date(self.until, "Date to", problems)
        if since and until and until < since:
            problems.append("Date to is before date from.")
        if self.direction and self.direction not in DIRECTIONS:
            problems.append("Direction must be inbound or outbound.")
        if problems:
            return None, problems
        query = EntryQuery(
            contact=self.contact or None,
            company_no=self.company_no or None,
            salesperson_code=self.salesperson_code or None,
            direction=self.direction or None,
            since=_start_of(since),
            # The form's "to" date is inclusive: up to the start of the next day.
            until=_start_of(until + dt.timedelta(days=1) if until else None),
            q=self.q or None,
        )
        return query, []


def _date(text: str, label: str, problems: list[str]) -> dt.date | None:
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        problems.append(f"{label} is not a date: use the form YYYY-MM-DD.")
        return None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        problems.append(f"{label} must be between {FIRST_YEAR} and {LAST_YEAR}.")
        return None
    return day


def _start_of(day: dt.date | None) -> dt.datetime | None:
    if day is None:
        return None
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
