"""The SOAP endpoint at /EWS/Exchange.asmx: read the envelope, dispatch on the operation.

`read_envelope` reads, size-checks and parses a request once (the faults middleware looks at
it before `ews_handler` does); `ews_handler` dispatches on the local name of the Body's
child. Every failure becomes a SOAP fault (HTTP 500) or an EWS error response message; never
a traceback page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from lxml import etree

from exchange_sim import soapxml as sx
from exchange_sim.auth import EWS_USER
from exchange_sim.model import StoreError
from exchange_sim.ops import folders, items, notify
from exchange_sim.ops.common import Ctx, RequestError
from exchange_sim.state import STATE
from exchange_sim.streaming import get_streaming_events

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

#: The operation being answered; set once a request is dispatched (a recorder files the
#: responses of requests that never got this far under "Fault").
EWS_OP: web.RequestKey[str] = web.RequestKey("ews_op", str)


@dataclass(frozen=True)
class Envelope:
    op: str  # local name of the Body's child, e.g. "GetItem"
    element: etree._Element  # that child


_ENVELOPE: web.RequestKey[Envelope | web.Response] = web.RequestKey("ews_envelope")


def xml_response(body: str, status: int = 200) -> web.Response:
    return web.Response(
        body=body.encode("utf-8"), status=status, content_type="text/xml", charset="utf-8"
    )


def fault(code: str, text: str, back_off_ms: int | None = None) -> web.Response:
    return xml_response(sx.fault(code, text, back_off_ms), status=500)


async def read_body(request: web.Request) -> bytes | web.Response:
    """The request body, or the fault for one over the size limit. aiohttp keeps the body,
    so reading it again is free."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return fault("ErrorMessageSizeExceeded", "The request exceeds the maximum size.")


def parse_envelope(body: bytes) -> Envelope | web.Response:
    """The operation a SOAP request asks for, or the schema-validation fault."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as e:
        return fault("ErrorSchemaValidation", f"The request failed schema validation: {e}")
    soap_body = root.find(SOAP_BODY)
    if soap_body is None or len(soap_body) == 0:
        return fault("ErrorSchemaValidation", "The request has no SOAP Body element.")
    element = soap_body[0]
    qname = etree.QName(element)
    op = qname.localname
    if qname.namespace != sx.M_NS or (op not in OPERATIONS and op != STREAMING_OPERATION):
        # Exchange rejects unknown body elements during schema validation.
        text = f"The request failed schema validation: operation {op!r} is not supported."
        return fault("ErrorSchemaValidation", text)
    return Envelope(op=op, element=element)


async def read_envelope(request: web.Request) -> Envelope | web.Response:
    """The request's envelope, or the fault to answer with; parsed once per request."""
    known = request.get(_ENVELOPE)
    if known is None:
        body = await read_body(request)
        known = body if isinstance(body, web.Response) else parse_envelope(body)
        request[_ENVELOPE] = known
    return known


async def ews_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    envelope = await read_envelope(request)
    if isinstance(envelope, web.Response):
        return envelope
    op = envelope.op
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
                request, ctx, envelope.element, state.streams, state.recorder
            )
        response = xml_response(OPERATIONS[op](ctx, envelope.element))
        if op == "Subscribe":
            # Affinity: exchangelib echoes this back on GetStreamingEvents/GetEvents/Unsubscribe.
            response.set_cookie("X-BackEndOverrideCookie", AFFINITY_COOKIE, path="/")
        return response
    except RequestError as e:
        return fault(e.code, e.text)
    except StoreError as e:
        return xml_response(sx.operation_response(op, sx.error(op, e.code, e.text)))
    except Exception:
        log.exception("internal error in %s", op)
        return fault("ErrorInternalServerError", "An internal server error occurred.")
