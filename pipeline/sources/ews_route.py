"""Public-folder routing: the headers every public-folder content request must carry.

Requests for the content of a public folder (its items, a subscription to it) must be
routed to the public-folder mailbox holding that content: `X-AnchorMailbox` and
`X-PublicFolderMailbox` both set to it (Microsoft's "Route public folder content
requests"). exchangelib sends neither (its issue #636; it always anchors on the account).

The content mailbox is discovered once per folder at open: the folder's PR_REPLICA_LIST
(0x6698) holds the GUID of the mailbox with its content; the GUID at the account's domain
is its address. (Microsoft then asks Autodiscover for that address's
AutoDiscoverSMTPAddress; we connect without Autodiscover, and for public-folder mailboxes
that is the same GUID address.)

The headers are set by our HTTP adapter (ews_connect.py) on every request made while a
thread is `routed(...)`: the worker calls that touch public-folder content, and the
arrivals thread of a public-folder queue for its whole life (`route_thread`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from exchangelib.extended_properties import ExtendedProperty
from exchangelib.fields import FieldPath
from exchangelib.folders import Folder, FolderCollection

from pipeline.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")
_ROUTE = threading.local()
_REGISTER = threading.Lock()
_FIELD = "emaillog_pf_replica_list"


class ReplicaList(ExtendedProperty):  # type: ignore[misc]
    """PR_REPLICA_LIST: the content mailbox GUID of a public folder (ASCII, NUL-ended)."""

    property_tag = 0x6698
    property_type = "Binary"


def current_route() -> str | None:
    """The content mailbox requests of this thread are routed to (None: the account's)."""
    route: str | None = getattr(_ROUTE, "mailbox", None)
    return route


@contextmanager
def routed(mailbox: str | None) -> Iterator[None]:
    """Route this thread's requests to `mailbox` (None: no change) for the block."""
    before = current_route()
    if mailbox is not None:
        _ROUTE.mailbox = mailbox
    try:
        yield
    finally:
        _ROUTE.mailbox = before


def run_routed(route: str | None, call: Callable[[], T]) -> T:
    """`call()` with this thread routed to `route` (for the worker pool)."""
    with routed(route):
        return call()


def route_thread(mailbox: str | None) -> None:
    """Route every later request of this thread (the arrivals thread of a public queue)."""
    _ROUTE.mailbox = mailbox


def apply_route(headers: Any) -> None:
    """Set the routing headers on an outgoing request (called by the HTTP adapter)."""
    mailbox = current_route()
    if mailbox:
        headers["X-AnchorMailbox"] = mailbox
        headers["X-PublicFolderMailbox"] = mailbox


def content_mailbox(account: Any, folder: Any, domain: str) -> str | None:
    """The address of the mailbox holding `folder`'s content (blocking), or None when the
    server does not say (then requests go out anchored on the account, as before)."""
    with _REGISTER:  # exchangelib registers extended properties on the Folder class
        Folder.register(_FIELD, ReplicaList)
        try:
            field = FieldPath(field=Folder.get_field_by_fieldname(_FIELD))
            [found] = list(
                FolderCollection(account=account, folders=[folder]).get_folders(
                    additional_fields={field}
                )
            )
        finally:
            Folder.deregister(_FIELD)
    raw = None if isinstance(found, Exception) else getattr(found, _FIELD, None)
    if not raw:
        log.warning("public folder has no PR_REPLICA_LIST; sending no routing headers")
        return None
    guid = bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace").strip()
    return f"{guid}@{domain}"
