"""Messages: get ($select, $expand=singleValueExtendedProperties), list a folder's, find by
$filter (internetMessageId), the MIME ($value), move, copy, delete (to Deleted Items) and
permanentDelete."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from exchange_sim.graph.folders import folder, mailbox, message, page
from exchange_sim.graph.query import Query, parse_query
from exchange_sim.graph.render import ODATA, message_json
from exchange_sim.graph.router import GraphError, GraphRequest, GraphResponse
from exchange_sim.model import Item, Mailbox
from exchange_sim.state import SimState

Handler = Callable[[SimState, GraphRequest, Sequence[str]], GraphResponse]
_FILTERABLE = {
    "internetMessageId": lambda item: item.props.message_id,
    "subject": lambda item: item.props.subject,
}


def _rows(items: Iterable[Item], query: Query) -> list[Item]:
    chosen = sorted(items, key=lambda item: item.received, reverse=True)
    if query.filter is not None:
        name, value = query.filter
        getter = _FILTERABLE.get(name)
        if getter is None:
            raise GraphError(400, "ErrorInvalidProperty", f"Cannot filter on {name}.")
        chosen = [item for item in chosen if getter(item) == value]
    return chosen


def _listing(request: GraphRequest, items: Iterable[Item], upn: str) -> GraphResponse:
    query = parse_query(request.query)
    rows = [message_json(i, query.select, query.expand_tags) for i in _rows(items, query)]
    body = page(request, rows, query, f"users('{upn}')/messages")
    return GraphResponse(200, body, "Collection(message)")


def list_folder_messages(
    sim: SimState, request: GraphRequest, args: Sequence[str]
) -> GraphResponse:
    box = mailbox(sim, args[0])
    return _listing(request, folder(sim, box, args[1]).items.values(), args[0])


def _all_items(box: Mailbox) -> Iterable[Item]:
    for each in box.root.descendants():
        yield from each.items.values()


def list_messages(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    return _listing(request, _all_items(mailbox(sim, args[0])), args[0])


def _one(item: Item, request: GraphRequest, upn: str, status: int = 200) -> GraphResponse:
    query = parse_query(request.query)
    body = {"@odata.context": f"{ODATA}#users('{upn}')/messages/$entity"}
    body |= message_json(item, query.select, query.expand_tags)
    return GraphResponse(status, body, "message")


def in_folder(handler: Handler) -> Handler:
    """`handler` for .../mailFolders/{folder}/messages/{id}...: args (upn, folder, id)
    become (upn, id), and a message that is not in that folder is not found."""

    def scoped(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
        upn, folder_ref, message_id = args
        box = mailbox(sim, upn)
        if message(sim, box, message_id).folder is not folder(sim, box, folder_ref):
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found.")
        return handler(sim, request, (upn, message_id))

    return scoped


def get_message(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    return _one(message(sim, mailbox(sim, args[0]), args[1]), request, args[0])


def get_mime(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    item = message(sim, mailbox(sim, args[0]), args[1])
    return GraphResponse(200, item.raw, None, {"Content-Type": "text/plain"})


def _destination(sim: SimState, request: GraphRequest, box: Mailbox) -> str:
    body = request.json()
    target = body.get("destinationId", body.get("DestinationId"))
    if not isinstance(target, str) or not target:
        raise GraphError(400, "ErrorInvalidRequest", "The destinationId parameter is missing.")
    return target


def move(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    box = mailbox(sim, args[0])
    item = message(sim, box, args[1])
    target = folder(sim, box, _destination(sim, request, box))
    return _one(sim.store.move(item, target), request, args[0], 201)


def copy(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    box = mailbox(sim, args[0])
    item = message(sim, box, args[1])
    target = folder(sim, box, _destination(sim, request, box))
    return _one(sim.store.copy(item, target), request, args[0], 201)


def delete(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    """DELETE moves the message to Deleted Items (a message already there is removed)."""
    item = message(sim, mailbox(sim, args[0]), args[1])
    sim.store.delete(item, "MoveToDeletedItems")
    return GraphResponse(204)


def permanent_delete(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    item = message(sim, mailbox(sim, args[0]), args[1])
    sim.store.delete(item, "HardDelete")
    return GraphResponse(204)
