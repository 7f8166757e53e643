"""mailFolders: list the top level, get one, list childFolders (with $filter on displayName,
$top and $skip); and the lookups every Graph handler shares (mailbox, folder, message)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from exchange_sim.graph.query import Query, parse_query
from exchange_sim.graph.render import ODATA, ews_id, folder_json
from exchange_sim.graph.router import GraphError, GraphRequest, GraphResponse
from exchange_sim.model import Folder, Item, Mailbox, StoreError
from exchange_sim.state import SimState

WELL_KNOWN = ("msgfolderroot", "inbox", "deleteditems", "drafts", "sentitems")
DEFAULT_TOP = 10
NOT_FOUND = "The specified object was not found in the store."


def mailbox(sim: SimState, upn: str) -> Mailbox:
    try:
        return sim.store.mailbox(upn)
    except StoreError:
        raise GraphError(
            404, "ErrorInvalidUser", f"The requested user '{upn}' is invalid."
        ) from None


def folder(sim: SimState, box: Mailbox, folder_id: str) -> Folder:
    """A folder of `box` by Graph id or well-known name."""
    known = box.distinguished.get(folder_id.lower())
    if known is not None and folder_id.lower() in WELL_KNOWN:
        return known
    try:
        found = sim.store.folder(ews_id(folder_id))
    except StoreError as e:
        raise GraphError.from_store(e) from None
    if found.mailbox is not box:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return found


def message(sim: SimState, box: Mailbox, message_id: str) -> Item:
    try:
        item = sim.store.item(ews_id(message_id))
    except StoreError as e:
        raise GraphError.from_store(e) from None
    if item.folder.mailbox is not box:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return item


def selected(values: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """`values` cut to $select (the id always stays, as Graph keeps it)."""
    if not select:
        return values
    return {k: v for k, v in values.items() if k == "id" or k in select}


def page(
    request: GraphRequest, rows: Sequence[dict[str, Any]], query: Query, context: str
) -> dict[str, Any]:
    """One page of a collection ($top/$skip), with a nextLink when more rows follow."""
    top = query.top if query.top is not None else DEFAULT_TOP
    shown = rows[query.skip : query.skip + top]
    body: dict[str, Any] = {"@odata.context": f"{ODATA}#{context}", "value": list(shown)}
    if query.skip + top < len(rows):
        options = {k: v for k, v in request.query.items() if k not in ("$skip", "$top")}
        options.update({"$top": str(top), "$skip": str(query.skip + top)})
        body["@odata.nextLink"] = f"{request.base}/{request.path}?{urlencode(options)}"
    return body


def _folder_page(request: GraphRequest, folders: list[Folder], upn: str) -> GraphResponse:
    query = parse_query(request.query)
    if query.filter is not None:
        name, value = query.filter
        if name != "displayName":
            raise GraphError(400, "ErrorInvalidProperty", f"Cannot filter on {name}.")
        folders = [f for f in folders if f.name.lower() == value.lower()]
    rows = [selected(folder_json(f), query.select) for f in folders]
    context = f"users('{upn}')/mailFolders"
    return GraphResponse(200, page(request, rows, query, context), "Collection(mailFolder)")


def list_folders(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    box = mailbox(sim, args[0])
    return _folder_page(request, list(box.distinguished["msgfolderroot"].children), args[0])


def child_folders(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    box = mailbox(sim, args[0])
    return _folder_page(request, list(folder(sim, box, args[1]).children), args[0])


def get_folder(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    found = folder(sim, mailbox(sim, args[0]), args[1])
    body = {"@odata.context": f"{ODATA}#users('{args[0]}')/mailFolders/$entity"}
    fields = selected(folder_json(found), parse_query(request.query).select)
    return GraphResponse(200, body | fields, "mailFolder")


def create_folder(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    """POST mailFolders (under the top of the mailbox) or .../childFolders: 201, or 409
    ErrorFolderExists."""
    box = mailbox(sim, args[0])
    parent = folder(sim, box, args[1]) if len(args) > 1 else box.distinguished["msgfolderroot"]
    name = request.json().get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "ErrorInvalidRequest", "displayName is required.")
    try:
        created = sim.store.create_folder(parent, name)
    except StoreError as e:
        status = 409 if e.code == "ErrorFolderExists" else 400
        raise GraphError(status, e.code, e.text) from None
    body = {"@odata.context": f"{ODATA}#users('{args[0]}')/mailFolders/$entity"}
    return GraphResponse(201, body | folder_json(created), "mailFolder")
