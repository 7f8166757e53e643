"""The middleware between authentication and the EWS handler (order as in `create_app`).

    auth_middleware        auth.py: 401 unless the credentials fit the mode
    accounting_middleware  counts the request (in flight, served); shows its response to
                           the recorder
    faults_middleware      injected request-level faults, in this order: latency; read and
                           size-check the body; HTTP 503/429; ErrorServerBusy (SOAP fault);
                           parse the envelope; error response messages (HTTP 200);
                           public-folder routing (routing.py); the connection limit
    ews_handler            ews.py: dispatch on the operation

Both apply only to requests routed to `ews_handler` (not to /_sim/, the token endpoint, or a
404/405 under /EWS/). The body is read before the busy check and the envelope parsed before
the connection limit so that an oversized or malformed request gets its own fault and does
not use up an injected one; the parsed envelope is kept for the handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from lxml import etree

from exchange_sim import soapxml as sx
from exchange_sim.ews import EWS_OP, ews_handler, fault, read_body, read_envelope, xml_response
from exchange_sim.faults import HttpFault, RequestFault
from exchange_sim.routing import REFUSAL, REFUSAL_TEXT, routed_right, touches_public_content
from exchange_sim.state import STATE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_ews(request: web.Request) -> bool:
    return request.match_info.handler is ews_handler


@web.middleware
async def accounting_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_ews(request):
        return await handler(request)
    state = request.app[STATE]
    state.in_flight += 1
    state.requests_served += 1
    try:
        response = await handler(request)
    finally:
        state.in_flight -= 1
    # Streaming responses report their envelopes to the recorder themselves.
    # Bare HTTP errors (the 503/429 fault) carry no SOAP document to record.
    if (
        state.recorder is not None
        and isinstance(response, web.Response)
        and response.content_type == "text/xml"
    ):
        body = response.body
        if isinstance(body, bytes) and body:
            state.recorder(request.get(EWS_OP, "Fault"), body)
    return response


@web.middleware
async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_ews(request):
        return await handler(request)
    state = request.app[STATE]
    latency = state.faults.latency_seconds()
    if latency:
        await asyncio.sleep(latency)
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    http_error = state.faults.take_http_error()
    if http_error is not None:
        return _http_error(http_error)
    back_off = state.faults.take_busy()
    if back_off is not None:
        return fault(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
            back_off,
        )
    envelope = await read_envelope(request)
    if isinstance(envelope, web.Response):
        return envelope
    request_fault = state.faults.take_request_fault(envelope.op)
    if request_fault is not None:
        return _error_messages(envelope.op, envelope.element, request_fault)
    if (
        state.faults.require_public_routing
        and touches_public_content(state.store, envelope.op, envelope.element)
        and not routed_right(
            request.headers.get("X-AnchorMailbox"), request.headers.get("X-PublicFolderMailbox")
        )
    ):
        refusal = RequestFault(REFUSAL, None)
        return _error_messages(envelope.op, envelope.element, refusal, REFUSAL_TEXT)
    limit = state.faults.max_connections
    # in_flight counts this request too (accounting_middleware runs first).
    if limit is not None and state.in_flight > limit:
        op = envelope.op
        text = "You have exceeded the maximum number of connections."
        return xml_response(
            sx.operation_response(op, sx.error(op, "ErrorExceededConnectionCount", text))
        )
    return await handler(request)


#: Operations answering one response message per item id (a request fault fails each).
PER_ITEM_OPS = ("GetItem", "MoveItem", "CopyItem", "DeleteItem")
_ITEM_IDS = "{" + sx.M_NS + "}ItemIds"
_TEXTS = {
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorExceededSubscriptionCount": "You have exceeded the available subscriptions for your "
    "account. Remove unnecessary subscriptions and try your request again.",
    "ErrorExceededConnectionCount": "You have exceeded the maximum number of connections.",
    "ErrorInvalidSyncStateData": "Synchronization state data is corrupt or otherwise invalid.",
    "ErrorMailboxStoreUnavailable": "The mailbox database is temporarily unavailable.",
    "ErrorMailboxMoveInProgress": "The mailbox is being moved.",
    "ErrorTimeoutExpired": "The request timed out.",
}


def _error_messages(
    op: str, element: etree._Element, armed: RequestFault, text: str | None = None
) -> web.Response:
    """An HTTP 200 answer whose response messages all carry the armed error: one per item
    id for item operations (the rest of a batch after a stop: ErrorBatchProcessingStopped,
    as Exchange does), else one."""
    count = 1
    if op in PER_ITEM_OPS:
        ids = element.find(_ITEM_IDS)
        count = max(1, len(ids) if ids is not None else 1)
    message_xml = ""
    if armed.back_off_ms is not None:
        message_xml = f'<t:Value Name="BackOffMilliseconds">{armed.back_off_ms}</t:Value>'
    text = text or _TEXTS.get(armed.code, "The request failed.")
    messages = [sx.error(op, armed.code, text, message_xml=message_xml)]
    if armed.code == "ErrorBatchProcessingStopped" or count == 1:
        messages += [sx.error(op, armed.code, text)] * (count - 1)
    else:
        stopped = "Batch processing stopped after an earlier error."
        messages += [sx.error(op, "ErrorBatchProcessingStopped", stopped)] * (count - 1)
    return xml_response(sx.operation_response(op, "".join(messages)))


def _http_error(armed: HttpFault) -> web.Response:
    headers = {}
    if armed.retry_after_seconds is not None:
        headers["Retry-After"] = str(armed.retry_after_seconds)
    reason = "Service Unavailable" if armed.status == 503 else "Too Many Requests"
    return web.Response(status=armed.status, text=reason, headers=headers)
