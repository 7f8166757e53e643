"""Evaluate EWS Restriction and SortOrder elements on items and folders.

Supported: And, Or, Not, IsEqualTo, IsNotEqualTo, IsGreaterThan[OrEqualTo],
IsLessThan[OrEqualTo], Exists, Contains, on the properties in `_ITEM_VALUES` and
`_FOLDER_VALUES`. Strings compare case-insensitively, as in Exchange.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from exchange_sim.model import Folder, Item, StoreError
from exchange_sim.soapxml import T_NS

T = "{" + T_NS + "}"

_ITEM_VALUES: dict[str, Callable[[Item], Any]] = {
    "item:DateTimeReceived": lambda i: i.received,
    "item:DateTimeSent": lambda i: i.props.date_sent or i.received,
    "item:DateTimeCreated": lambda i: i.created,
    "item:Subject": lambda i: i.props.subject,
    "item:Size": lambda i: len(i.raw),
    "item:Sensitivity": lambda i: i.props.sensitivity,
    "item:IsDraft": lambda i: i.is_draft,
    "item:ItemClass": lambda i: "IPM.Note",
    "message:InternetMessageId": lambda i: i.props.message_id,
    "message:IsRead": lambda i: i.is_read,
}
_FOLDER_VALUES: dict[str, Callable[[Folder], Any]] = {
    "folder:DisplayName": lambda f: f.name,
    "folder:FolderClass": lambda f: f.folder_class,
    "folder:TotalCount": lambda f: len(f.items),
    "folder:ChildFolderCount": lambda f: len(f.children),
}
_COMPARE = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}

Predicate = Callable[[Any], bool]


def _local(elem: etree._Element) -> str:
    return str(etree.QName(elem).localname)


def _field_uri(elem: etree._Element) -> str:
    path = elem.find(T + "FieldURI")
    if path is None:
        raise StoreError("ErrorUnsupportedPathForQuery", "Only FieldURI paths are supported.")
    return str(path.get("FieldURI", ""))


def _coerce(constant: str, sample: Any) -> Any:
    if isinstance(sample, datetime):
        text = constant.replace("Z", "+00:00")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise StoreError("ErrorInvalidValueForProperty", f"Bad date {constant!r}") from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(sample, bool):
        return constant.lower() == "true"
    if isinstance(sample, int):
        try:
            return int(constant)
        except ValueError:
            raise StoreError("ErrorInvalidValueForProperty", f"Bad number {constant!r}") from None
    return constant.lower()


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def compile_restriction(
    elem: etree._Element, getters: dict[str, Callable[[Any], Any]], sample: dict[str, Any]
) -> Predicate:
    name = _local(elem)
    if name in ("And", "Or"):
        parts = [compile_restriction(c, getters, sample) for c in elem]
        if name == "And":
            return lambda obj: all(p(obj) for p in parts)
        return lambda obj: any(p(obj) for p in parts)
    if name == "Not":
        inner = compile_restriction(elem[0], getters, sample)
        return lambda obj: not inner(obj)
    uri = _field_uri(elem)
    getter = getters.get(uri)
    if getter is None:
        raise StoreError("ErrorUnsupportedPathForQuery", f"Unsupported property {uri!r}.")
    if name == "Exists":
        return lambda obj: getter(obj) is not None
    if name == "Contains":
        constant = elem.find(T + "Constant")
        needle = (constant.get("Value", "") if constant is not None else "").lower()
        mode = elem.get("ContainmentMode", "Substring")

        def contains(obj: Any) -> bool:
            value = getter(obj)
            if not isinstance(value, str):
                return False
            value = value.lower()
            if mode == "FullString":
                return value == needle
            if mode == "Prefixed":
                return value.startswith(needle)
            return needle in value

        return contains
    compare = _COMPARE.get(name)
    constant = elem.find(f"{T}FieldURIOrConstant/{T}Constant")
    if compare is None or constant is None:
        raise StoreError("ErrorUnsupportedQueryFilter", f"Unsupported restriction {name!r}.")
    value = _coerce(constant.get("Value", ""), sample[uri])

    def predicate(obj: Any) -> bool:
        actual = _norm(getter(obj))
        if actual is None:
            return False
        try:
            return bool(compare(actual, value))
        except TypeError:
            return False

    return predicate


_ITEM_SAMPLE = {
    "item:DateTimeReceived": datetime.now(UTC),
    "item:DateTimeSent": datetime.now(UTC),
    "item:DateTimeCreated": datetime.now(UTC),
    "item:Subject": "",
    "item:Size": 0,
    "item:Sensitivity": "",
    "item:IsDraft": False,
    "item:ItemClass": "",
    "message:InternetMessageId": "",
    "message:IsRead": False,
}
_FOLDER_SAMPLE = {
    "folder:DisplayName": "",
    "folder:FolderClass": "",
    "folder:TotalCount": 0,
    "folder:ChildFolderCount": 0,
}


def item_restriction(restriction: etree._Element | None) -> Predicate | None:
    if restriction is None or len(restriction) == 0:
        return None
    return compile_restriction(restriction[0], _ITEM_VALUES, _ITEM_SAMPLE)


def folder_restriction(restriction: etree._Element | None) -> Predicate | None:
    if restriction is None or len(restriction) == 0:
        return None
    return compile_restriction(restriction[0], _FOLDER_VALUES, _FOLDER_SAMPLE)


def sort_items(items: list[Item], sort_order: etree._Element | None) -> list[Item]:
    """Apply SortOrder (first FieldOrder is the primary key). Without one, Exchange lists
    newest received first."""
    if sort_order is None or len(sort_order) == 0:
        return sorted(items, key=lambda i: i.received, reverse=True)
    result = list(items)
    for order in reversed(list(sort_order)):
        uri = _field_uri(order)
        getter = _ITEM_VALUES.get(uri)
        if getter is None:
            raise StoreError("ErrorUnsupportedPathForSortGroup", f"Cannot sort on {uri!r}.")
        descending = order.get("Order", "Ascending") == "Descending"
        result.sort(key=_sort_key_for(getter), reverse=descending)
    return result


def _sort_key_for(getter: Callable[[Item], Any]) -> Callable[[Item], tuple[int, Any]]:
    return lambda item: _sort_key(getter(item))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    return (1, _norm(value))
