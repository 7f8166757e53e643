"""The OData query options the Graph face understands.

$select (comma-separated names), $expand of singleValueExtendedProperties with a $filter on
ids ("Integer 0x0036", several joined by `or`), $filter `<property> eq '<value>'` (quotes
doubled inside the value), $top and $skip. Anything else in them is a 400, as Graph answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from exchange_sim.graph.router import GraphError

_EXPAND = re.compile(r"^singleValueExtendedProperties(?:\(\$filter=(?P<filter>.*)\))?$", re.I)
_ID_TERM = re.compile(r"^\s*id\s+eq\s+'(?P<id>[^']*)'\s*$", re.I)
_PROP_ID = re.compile(r"^\s*(?P<type>\w+)\s+0x(?P<tag>[0-9a-f]{1,4})\s*$", re.I)
_EQ = re.compile(r"^\s*(?P<name>\w+)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*$")


@dataclass(frozen=True, slots=True)
class Query:
    select: list[str] | None
    expand_tags: set[int] | None
    filter: tuple[str, str] | None
    top: int | None
    skip: int


def parse_query(options: Mapping[str, str]) -> Query:
    return Query(
        select=_select(options.get("$select")),
        expand_tags=_expand(options.get("$expand")),
        filter=_filter(options.get("$filter")),
        top=_int(options, "$top"),
        skip=_int(options, "$skip") or 0,
    )


def _select(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _expand(value: str | None) -> set[int] | None:
    if value is None:
        return None
    match = _EXPAND.match(value.strip())
    if match is None:
        raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: {value}")
    condition = match.group("filter")
    if condition is None:
        return {0x0036}
    tags: set[int] = set()
    for term in re.split(r"\s+or\s+", condition, flags=re.I):
        id_match = _ID_TERM.match(term)
        if id_match is None:
            raise GraphError(400, "ErrorInvalidProperty", f"Invalid extended property: {term}")
        prop = _PROP_ID.match(id_match.group("id"))
        if prop is not None:  # a named property ("String {guid} Name X") matches nothing here
            tags.add(int(prop.group("tag"), 16))
    return tags


def _filter(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    match = _EQ.match(value)
    if match is None:
        raise GraphError(400, "ErrorInvalidUrlQueryFilter", "The query filter is invalid.")
    return match.group("name"), match.group("value").replace("''", "'")


def _int(options: Mapping[str, str], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise GraphError(400, "BadRequest", f"Invalid value for {name}: {value}")
    return number
