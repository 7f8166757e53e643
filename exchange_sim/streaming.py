"""GetStreamingEvents: one chunked HTTP response of concatenated SOAP envelopes.

OK first, then notification envelopes (at most 50 events per notification, no watermarks),
OK keep-alives while idle, and Closed once ConnectionTimeout has passed. A subscription lost
while the stream is open ends it with an error envelope; an injected drop cuts the body off
mid-envelope (the client sees a broken chunked body).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from lxml import etree

from exchange_sim import soapxml as sx
from exchange_sim.model import StoreError
from exchange_sim.ops.common import Ctx, M, RequestError, T, int_value
from exchange_sim.ops.notify import MAX_EVENTS_PER_NOTIFICATION, event_xml
from exchange_sim.subscriptions import Subscription

OP = "GetStreamingEvents"
#: How often a half-open stream looks whether its client is gone.
HALF_OPEN_CHECK_SECONDS = 0.5


@dataclass(eq=False)
class OpenStream:
    """An open stream, as `StreamRegistry.drop_all` (the drop-streams fault) cuts it."""

    recorder: Recorder = None
    drop: asyncio.Event = field(default_factory=asyncio.Event)
    mailbox: object = None  # whose HangingConnectionLimit it counts against


class StreamRegistry:
    def __init__(self) -> None:
        self.open: set[OpenStream] = set()

    def drop_all(self) -> int:
        for stream in self.open:
            stream.drop.set()
        return len(self.open)


def _status(status: str) -> str:
    return sx.operation_response(
        OP, sx.success(OP, f"<m:ConnectionStatus>{status}</m:ConnectionStatus>")
    )


def error_envelope(code: str, text: str, sub_ids: list[str]) -> str:
    ids = "".join(f"<t:SubscriptionId>{sx.esc(s)}</t:SubscriptionId>" for s in sub_ids)
    content = f"<m:ErrorSubscriptionIds>{ids}</m:ErrorSubscriptionIds>" if ids else ""
    content += "<m:ConnectionStatus>Closed</m:ConnectionStatus>"
    return sx.operation_response(OP, sx.error(OP, code, text, content))


def _notifications(subs: list[Subscription]) -> list[str]:
    """Drain pending events into envelopes of at most 50 events each."""
    envelopes = []
    while any(sub.events for sub in subs):
        budget = MAX_EVENTS_PER_NOTIFICATION
        notifications = []
        for sub in subs:
            events = []
            while sub.events and budget > 0:
                _, event = sub.events.popleft()
                events.append(event_xml(event, None))
                budget -= 1
            if events:
                notifications.append(
                    f"<m:Notification><t:SubscriptionId>{sub.id}</t:SubscriptionId>"
                    f"{''.join(events)}</m:Notification>"
                )
        content = f"<m:Notifications>{''.join(notifications)}</m:Notifications>"
        envelopes.append(sx.operation_response(OP, sx.success(OP, content)))
    return envelopes


Recorder = Callable[[str, bytes], None] | None


async def get_streaming_events(
    request: web.Request,
    ctx: Ctx,
    req: etree._Element,
    registry: StreamRegistry,
    recorder: Recorder = None,
) -> web.StreamResponse:
    sub_ids = [e.text or "" for e in req.findall(f"{M}SubscriptionIds/{T}SubscriptionId")]
    if not sub_ids:
        raise RequestError("ErrorSchemaValidation", "SubscriptionIds needs t:SubscriptionId.")
    timeout_minutes = int_value(req.findtext(M + "ConnectionTimeout"), 30, 1, 30)
    subs: list[Subscription] = []
    bad: list[str] = []
    code = "ErrorInvalidSubscription"
    for sub_id in sub_ids:
        try:
            subs.append(
                ctx.subscriptions.get(sub_id, kind="streaming", unknown="ErrorInvalidSubscription")
            )
        except StoreError as e:
            bad.append(sub_id)
            code = e.code
    if bad or not subs:
        text = "Subscription is invalid." if code == "ErrorInvalidSubscription" else "Not found."
        return _text_response(error_envelope(code, text, bad))

    mailbox = subs[0].mailbox
    limit = ctx.faults.stream_limit
    if limit is not None and sum(1 for h in registry.open if h.mailbox is mailbox) >= limit:
        # HangingConnectionLimit (10 on Exchange Online): one stream too many.
        text = "You have exceeded the maximum number of open streaming connections."
        return _text_response(error_envelope("ErrorExceededConnectionCount", text, []))
    response = web.StreamResponse(headers={"Content-Type": "text/xml; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    handle = OpenStream(recorder=recorder, mailbox=mailbox)
    registry.open.add(handle)
    wakeup = asyncio.Event()
    for sub in subs:
        sub.open_streams += 1
        sub.waiters.add(wakeup)
    try:
        await _pump(request, ctx, response, subs, wakeup, handle, timeout_minutes)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        registry.open.discard(handle)
        for sub in subs:
            sub.open_streams -= 1
            sub.waiters.discard(wakeup)
    return response


async def _pump(
    request: web.Request,
    ctx: Ctx,
    response: web.StreamResponse,
    subs: list[Subscription],
    wakeup: asyncio.Event,
    handle: OpenStream,
    timeout_minutes: int,
) -> None:
    config = ctx.config
    loop_start = time.monotonic()
    deadline = loop_start + timeout_minutes * config.minute_seconds
    await _send(response, handle, _status("OK"))
    if ctx.faults.take_half_open():
        await _half_open(request, response, handle)
        return
    last_write = time.monotonic()
    while True:
        if handle.drop.is_set():
            await _drop(request, response)
            return
        lost = [sub.id for sub in subs if ctx.subscriptions.active.get(sub.id) is not sub]
        if lost:
            gone_code = ctx.subscriptions.gone.get(lost[0], "ErrorSubscriptionNotFound")
            envelope = error_envelope(gone_code, "The subscription is no longer valid.", lost)
            await _send(response, handle, envelope)
            await response.write_eof()
            return
        for envelope in _notifications(subs):
            await _send(response, handle, envelope)
            last_write = time.monotonic()
        now = time.monotonic()
        if now >= deadline:
            await _send(response, handle, _status("Closed"))
            await response.write_eof()
            return
        if now - last_write >= config.keepalive_seconds:
            await _send(response, handle, _status("OK"))
            last_write = now
        wait = min(deadline - now, last_write + config.keepalive_seconds - now)
        wakeup.clear()
        if any(sub.events for sub in subs):
            continue
        await _wait_any(wakeup, handle.drop, max(wait, 0.0))


async def _half_open(
    request: web.Request, response: web.StreamResponse, handle: OpenStream
) -> None:
    """The half-open-stream fault: headers and one OK were sent; now nothing at all (no
    events, no keep-alives, no Closed) until the client gives up or a drop cuts it."""
    while not handle.drop.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.drop.wait(), HALF_OPEN_CHECK_SECONDS)
    await _drop(request, response)


async def _send(response: web.StreamResponse, handle: OpenStream, envelope: str) -> None:
    data = envelope.encode()
    if handle.recorder is not None:
        handle.recorder(OP, data)
    await response.write(data)


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    tasks = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _drop(request: web.Request, response: web.StreamResponse) -> None:
    """Cut the connection in the middle of an envelope, without the final chunk."""
    partial = _status("OK").encode()
    await response.write(partial[: len(partial) // 2])
    transport = request.transport
    if transport is not None:
        transport.abort()


def _text_response(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml", charset="utf-8")
