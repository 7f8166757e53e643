"""The aiohttp application: the SOAP endpoint at /EWS/Exchange.asmx and the /_sim/ side channel.

Request flow: count the connection, apply injected latency, read and size-check the body,
apply an injected ErrorServerBusy, parse the SOAP envelope, enforce an injected connection
limit, dispatch on the local name of the Body's child. Every failure becomes a SOAP fault
(HTTP 500) or an EWS error response message; never a traceback page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from lxml import etree

from exchange_sim import soapxml as sx
from exchange_sim.auth import EWS_USER, AuthConfig, add_token_route, auth_middleware
from exchange_sim.config import SimConfig
from exchange_sim.faults import Faults
from exchange_sim.ops import folders, items, notify
from exchange_sim.ops.common import Ctx, RequestError
from exchange_sim.store import Store, StoreError
from exchange_sim.streaming import StreamRegistry, get_streaming_events
from exchange_sim.subscriptions import Subscriptions

log = logging.getLogger(__name__)

EWS_PATH = "/EWS/Exchange.asmx"
SOAP_BODY = "{" + sx.SOAP_NS + "}Body"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)

Operation = Callable[[Ctx, etree._Element], str]
OPERATIONS: dict[str, Operation] = {
    "GetFolder": folders.get_folder,
    "FindFolder": folders.find_folder,
    "CreateFolder": folders.create_folder,
    "FindItem": items.find_item,
    "GetItem": items.get_item,
    "SyncFolderItems": items.sync_folder_items,
    "CreateItem": items.create_item,
    "CopyItem": items.copy_item,
    "MoveItem": items.move_item,
    "DeleteItem": items.delete_item,
    "Subscribe": notify.subscribe,
    "Unsubscribe": notify.unsubscribe,
    "GetEvents": notify.get_events,
    "ConvertId": notify.convert_id,
}
STREAMING_OPERATION = "GetStreamingEvents"
AFFINITY_COOKIE = "EXSIM01.example.com~1941962753"


@dataclass
class SimState:
    config: SimConfig
    store: Store = field(default_factory=Store)
    faults: Faults = field(default_factory=Faults)
    streams: StreamRegistry = field(default_factory=StreamRegistry)
    subscriptions: Subscriptions = field(init=False)
    in_flight: int = 0
    requests_served: int = 0
    # Tests set this to see every response document: (operation or "Fault", body bytes).
    # Streaming responses are reported one complete envelope at a time.
    recorder: Callable[[str, bytes], None] | None = None

    def __post_init__(self) -> None:
        self.subscriptions = Subscriptions(minute_seconds=self.config.minute_seconds)
        self.store.listeners.append(self.subscriptions.on_event)
        self.faults.latency_min_ms = self.config.latency_min_ms
        self.faults.latency_max_ms = self.config.latency_max_ms
        for address in self.config.mailboxes:
            self.store.add_mailbox(address)
        for path in self.config.folders:
            self.ensure_folder(path)

    def ensure_folder(self, path: str, mailbox: str | None = None) -> list[str]:
        """Create `path` in `mailbox` (every mailbox when None); "public:/..." in the
        public-folder tree. Returns the folder ids."""
        if path.startswith("public:"):
            return [self.store.ensure_path(path[len("public:") :], None).id]
        targets = [self.store.mailbox(mailbox)] if mailbox else list(self.store.mailboxes.values())
        return [self.store.ensure_path(path, mb).id for mb in targets]


STATE: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
EWS_OP: web.RequestKey[str] = web.RequestKey("ews_op", str)


def _xml_response(body: str, status: int = 200) -> web.Response:
    return web.Response(
        body=body.encode("utf-8"), status=status, content_type="text/xml", charset="utf-8"
    )


def _fault(code: str, text: str, back_off_ms: int | None = None) -> web.Response:
    return _xml_response(sx.fault(code, text, back_off_ms), status=500)


async def ews_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.in_flight += 1
    state.requests_served += 1
    try:
        response = await _handle(request, state)
    finally:
        state.in_flight -= 1
    if state.recorder is not None and isinstance(response, web.Response) and response.body:
        body = response.body
        if isinstance(body, bytes):
            state.recorder(request.get(EWS_OP, "Fault"), body)
    return response


async def _handle(request: web.Request, state: SimState) -> web.StreamResponse:
    latency = state.faults.latency_seconds()
    if latency:
        await asyncio.sleep(latency)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _fault("ErrorMessageSizeExceeded", "The request exceeds the maximum size.")
    back_off = state.faults.take_busy()
    if back_off is not None:
        return _fault(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
            back_off,
        )
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as e:
        return _fault("ErrorSchemaValidation", f"The request failed schema validation: {e}")
    soap_body = root.find(SOAP_BODY)
    if soap_body is None or len(soap_body) == 0:
        return _fault("ErrorSchemaValidation", "The request has no SOAP Body element.")
    request_elem = soap_body[0]
    qname = etree.QName(request_elem)
    op = qname.localname
    if qname.namespace != sx.M_NS or (op not in OPERATIONS and op != STREAMING_OPERATION):
        # Exchange rejects unknown body elements during schema validation.
        text = f"The request failed schema validation: operation {op!r} is not supported."
        return _fault("ErrorSchemaValidation", text)
    limit = state.faults.max_connections
    if limit is not None and state.in_flight > limit:
        text = "You have exceeded the maximum number of connections."
        return _xml_response(
            sx.operation_response(op, sx.error(op, "ErrorExceededConnectionCount", text))
        )
    request[EWS_OP] = op
    ctx = Ctx(
        store=state.store,
        subscriptions=state.subscriptions,
        faults=state.faults,
        config=state.config,
        anchor=request.headers.get("X-AnchorMailbox"),
        user=request.get(EWS_USER),
    )
    try:
        if op == STREAMING_OPERATION:
            return await get_streaming_events(
                request, ctx, request_elem, state.streams, state.recorder
            )
        response = _xml_response(OPERATIONS[op](ctx, request_elem))
        if op == "Subscribe":
            # Affinity: exchangelib echoes this back on GetStreamingEvents/GetEvents/Unsubscribe.
            response.set_cookie("X-BackEndOverrideCookie", AFFINITY_COOKIE, path="/")
        return response
    except RequestError as e:
        return _fault(e.code, e.text)
    except StoreError as e:
        return _xml_response(sx.operation_response(op, sx.error(op, e.code, e.text)))
    except Exception:
        log.exception("internal error in %s", op)
        return _fault("ErrorInternalServerError", "An internal server error occurred.")


def _auth_setup(app: web.Application, config: SimConfig) -> None:
    auth_config = AuthConfig(mode=config.auth_mode, users=dict(config.users))
    app.middlewares.append(cast(Any, auth_middleware(auth_config)))
    add_token_route(app, auth_config)


def create_app(config: SimConfig | None = None, state: SimState | None = None) -> web.Application:
    from exchange_sim.sideband import add_sideband_routes

    config = config or (state.config if state else SimConfig())
    state = state or SimState(config)
    app = web.Application(client_max_size=config.max_request_bytes)
    app[STATE] = state
    _auth_setup(app, config)
    app.router.add_post(EWS_PATH, ews_handler)
    # Exchange answers any casing of the path.
    app.router.add_post(EWS_PATH.lower(), ews_handler)
    add_sideband_routes(app)
    return app
