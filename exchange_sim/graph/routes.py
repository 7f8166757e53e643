"""The Graph route table and `dispatch`, shared by top-level requests (web.py) and the parts
of a $batch (batch.py). Paths are matched below /v1.0/ after `normalise_path`; segment names
match case-insensitively (as Graph does), ids keep their case."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import unquote

from exchange_sim.graph import delta, folders, messages, webhooks
from exchange_sim.graph.router import GraphError, GraphRequest, GraphResponse, error_response
from exchange_sim.model import StoreError
from exchange_sim.state import SimState

Handler = Callable[
    [SimState, GraphRequest, Sequence[str]], GraphResponse | Awaitable[GraphResponse]
]

_ID = r"([^/]+)"
_USER = r"users/" + _ID
_MESSAGE = _USER + r"/messages/" + _ID
_FOLDER = _USER + r"/mailFolders/" + _ID
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (m, re.compile(f"^{p}$", re.I), h)
    for m, p, h in (
        ("GET", _USER + "/mailFolders", folders.list_folders),
        ("GET", _FOLDER, folders.get_folder),
        ("GET", _FOLDER + "/childFolders", folders.child_folders),
        ("GET", _FOLDER + "/messages", messages.list_folder_messages),
        ("GET", _FOLDER + "/messages/delta", delta.delta),
        ("GET", _USER + "/messages", messages.list_messages),
        ("GET", _FOLDER + "/messages/" + _ID, messages.in_folder(messages.get_message)),
        ("GET", _FOLDER + r"/messages/([^/]+)/\$value", messages.in_folder(messages.get_mime)),
        ("DELETE", _FOLDER + "/messages/" + _ID, messages.in_folder(messages.delete)),
        ("POST", _FOLDER + "/messages/([^/]+)/move", messages.in_folder(messages.move)),
        ("POST", _FOLDER + "/messages/([^/]+)/copy", messages.in_folder(messages.copy)),
        (
            "POST",
            _FOLDER + "/messages/([^/]+)/permanentDelete",
            messages.in_folder(messages.permanent_delete),
        ),
        ("POST", _USER + "/mailFolders", folders.create_folder),
        ("POST", _FOLDER + "/childFolders", folders.create_folder),
        ("GET", _MESSAGE, messages.get_message),
        ("GET", _MESSAGE + r"/\$value", messages.get_mime),
        ("DELETE", _MESSAGE, messages.delete),
        ("POST", _MESSAGE + "/move", messages.move),
        ("POST", _MESSAGE + "/copy", messages.copy),
        ("POST", _MESSAGE + "/permanentDelete", messages.permanent_delete),
        ("POST", "subscriptions", webhooks.create),
        ("GET", "subscriptions", webhooks.list_subscriptions),
        ("GET", "subscriptions/" + _ID, webhooks.get),
        ("PATCH", "subscriptions/" + _ID, webhooks.renew),
        ("DELETE", "subscriptions/" + _ID, webhooks.delete),
    )
]
_KEY_SEGMENT = re.compile(r"(\w+)\('([^']*)'\)")
_QUALIFIED = re.compile(r"/microsoft\.graph\.(\w+)", re.I)
_CALL = re.compile(r"\(\)(?=/|$)")


def normalise_path(path: str) -> str:
    """`users('a@b')/mailFolders('x')` -> `users/a@b/mailFolders/x`; the fully qualified
    `microsoft.graph.delta` -> `delta`; a function call `delta()` -> `delta` (the SDK's
    spelling); no leading or trailing slash; percent-decoded."""
    path = _KEY_SEGMENT.sub(lambda m: f"{m.group(1)}/{m.group(2)}", unquote(path))
    path = _CALL.sub("", path)
    return _QUALIFIED.sub(lambda m: "/" + m.group(1), path).strip("/")


def mailbox_of(path: str) -> str:
    """The mailbox a request addresses ("" when none): what the concurrency limit counts."""
    match = re.match(r"^users/([^/]+)", path, re.I)
    return match.group(1).lower() if match else ""


async def dispatch(sim: SimState, request: GraphRequest) -> GraphResponse:
    allowed = False
    for method, pattern, handler in ROUTES:
        match = pattern.match(request.path)
        if match is None:
            continue
        if method != request.method:
            allowed = True
            continue
        try:
            result = handler(sim, request, match.groups())
            return await result if inspect.isawaitable(result) else result
        except GraphError as e:
            return error_response(e)
        except StoreError as e:
            return error_response(GraphError.from_store(e))
    if allowed:
        return error_response(GraphError(405, "Request_BadRequest", "Method not allowed."))
    text = f"Resource not found for the segment '{request.path.rsplit('/', 1)[-1]}'."
    return error_response(GraphError(400, "BadRequest", text))
