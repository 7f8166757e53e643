"""The middleware between authentication and the EWS handler (order as in `create_app`).

    auth_middleware        auth.py: 401 unless the credentials fit the mode
    accounting_middleware  counts the request (in flight, served); shows its response to
                           the recorder
    faults_middleware      injected request-level faults, in this order: latency; read and
                           size-check the body; ErrorServerBusy; parse the envelope; the
                           connection limit
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

from exchange_sim import soapxml as sx
from exchange_sim.ews import EWS_OP, ews_handler, fault, read_body, read_envelope, xml_response
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
    if state.recorder is not None and isinstance(response, web.Response):
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
    limit = state.faults.max_connections
    # in_flight counts this request too (accounting_middleware runs first).
    if limit is not None and state.in_flight > limit:
        op = envelope.op
        text = "You have exceeded the maximum number of connections."
        return xml_response(
            sx.operation_response(op, sx.error(op, "ErrorExceededConnectionCount", text))
        )
    return await handler(request)
