"""Query parameters of `/api/v1`, parsed into types; a bad one is a `BadParameter` naming it.

Pure: no I/O. An empty value (`?since=`) counts as absent. Unknown parameters are refused,
so a misspelt filter (`?contactno=`) is a 400, not a silently unfiltered list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.errors import InputError
from pipeline.store.entries import EntryQuery

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: The outcome chart's range is bounded: at most this many buckets per request.
MAX_BUCKETS = 1000
DIRECTIONS = ("inbound", "outbound")
INTERVALS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}

LIST_PARAMS = frozenset(
    {"contact_no", "company_no", "salesperson_code", "direction", "since", "until", "q"}
)
PAGING_PARAMS = frozenset({"limit", "cursor"})
FOLLOW_PARAMS = frozenset({"after_entry_no", "limit", "wait_seconds"})
OUTCOME_PARAMS = frozenset({"since", "until", "interval"})


class BadParameter(InputError):
    """A query parameter the API cannot use; the message starts with its name."""


@dataclass(frozen=True, slots=True)
class ListRequest:
    query: EntryQuery
    limit: int
    cursor: str | None


@dataclass(frozen=True, slots=True)
class FollowRequest:
    after_entry_no: int
    limit: int
    wait_seconds: float


@dataclass(frozen=True, slots=True)
class OutcomeRequest:
    since: dt.datetime
    until: dt.datetime
    interval: str


def _given(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if v != ""}


def _check_known(given: Mapping[str, str], allowed: frozenset[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise BadParameter(
            f"{unknown[0]}: unknown parameter (allowed: {', '.join(sorted(allowed))})"
        )


def integer(name: str, text: str, *, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(f"{name}: not an integer: {text[:40]!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise BadParameter(f"{name}: must be {bound}, not {value}")
    return value


def timestamp(name: str, text: str) -> dt.datetime:
    """ISO 8601, a date or a date and time; without an offset it is UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(f"{name}: not an ISO 8601 date or date-time: {text[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def list_request(params: Mapping[str, str]) -> ListRequest:
    given = _given(params)
    if "wait_seconds" in given:
        raise BadParameter("wait_seconds: only together with after_entry_no")
    _check_known(given, LIST_PARAMS | PAGING_PARAMS)
    direction = given.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise BadParameter(f"direction: must be inbound or outbound, not {direction[:40]!r}")
    since = timestamp("since", given["since"]) if "since" in given else None
    until = timestamp("until", given["until"]) if "until" in given else None
    if since and until and since >= until:
        raise BadParameter("until: must be after since")
    q = given.get("q")
    if q is not None and not any(ch.isalnum() for ch in q):
        raise BadParameter("q: needs at least one letter or digit")
    query = EntryQuery(
        contact_no=given.get("contact_no"),
        company_no=given.get("company_no"),
        salesperson_code=given.get("salesperson_code"),
        direction=direction,
        since=since,
        until=until,
        q=q,
    )
    return ListRequest(query, _limit(given), given.get("cursor"))


def follow_request(params: Mapping[str, str], *, max_wait_seconds: float) -> FollowRequest:
    """`after_entry_no` mode: only `limit` and `wait_seconds` go with it (the wait is capped)."""
    given = _given(params)
    others = sorted(set(given) - FOLLOW_PARAMS)
    if others:
        raise BadParameter(
            f"{others[0]}: cannot be combined with after_entry_no "
            "(which takes only limit and wait_seconds)"
        )
    wait = 0.0
    if "wait_seconds" in given:
        try:
            wait = float(given["wait_seconds"])
        except ValueError:
            raise BadParameter("wait_seconds: not a number") from None
        if not 0 <= wait < float("inf"):
            raise BadParameter("wait_seconds: must be 0 or more")
    after = integer("after_entry_no", given["after_entry_no"], low=0)
    return FollowRequest(after, _limit(given), min(wait, max_wait_seconds))


def outcome_request(params: Mapping[str, str], *, now: dt.datetime) -> OutcomeRequest:
    """Defaults: until now, since a day (hours) or 30 days (days) before."""
    given = _given(params)
    _check_known(given, OUTCOME_PARAMS)
    interval = given.get("interval", "hour")
    if interval not in INTERVALS:
        raise BadParameter(f"interval: must be hour or day, not {interval[:40]!r}")
    step = INTERVALS[interval]
    until = timestamp("until", given["until"]) if "until" in given else now
    default_span = dt.timedelta(days=1) if interval == "hour" else dt.timedelta(days=30)
    since = timestamp("since", given["since"]) if "since" in given else until - default_span
    if since >= until:
        raise BadParameter("until: must be after since")
    if (until - since) / step > MAX_BUCKETS:
        raise BadParameter(f"since: the range may span at most {MAX_BUCKETS} {interval}s")
    return OutcomeRequest(since, until, interval)


def _limit(given: Mapping[str, str]) -> int:
    if "limit" not in given:
        return DEFAULT_LIMIT
    return integer("limit", given["limit"], low=1, high=MAX_LIMIT)
