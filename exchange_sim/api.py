"""Python API: run the simulator inside an event loop (`Simulator`) or in a background thread
with its own loop (`SimulatorThread`, for blocking code such as exchangelib in plain tests).

    async with Simulator(folders=["Email Logging/Queue"]) as sim:
        item_id = sim.deliver("queue@example.com", "Email Logging/Queue", raw)
        ...  # point exchangelib at sim.ews_url (from a worker thread)

    with SimulatorThread(folders=["public:/Queue"]) as sim:
        sim.deliver("queue@example.com", "public:/Queue", raw)

These methods are how tests look into and steer a simulator: mail and folders, a snapshot of
its counters, and every injected fault (each also on the /_sim/ side channel). A folder is
named as in SimConfig.folders: a path below "Top of Information Store", or "public:/...".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from exchange_sim.app import create_app
from exchange_sim.config import SimConfig
from exchange_sim.ews import EWS_PATH
from exchange_sim.faults import (
    ANY_OP,
    DEFAULT_BACK_OFF_MS,
    EXCHANGE_ONLINE_STREAMS,
    EXCHANGE_ONLINE_SUBSCRIPTIONS,
    FaultStatus,
)
from exchange_sim.graph.control import GraphControl
from exchange_sim.graph.web import GRAPH_PREFIX
from exchange_sim.render import PUBLIC_CONTENT_MAILBOX_GUID
from exchange_sim.state import Recorder, SimSnapshot, SimState

R = TypeVar("R")
ITEM_OPS = ("MoveItem", "DeleteItem")


class Simulator:
    """The simulator on 127.0.0.1 (a free port unless `port` is given). Its methods must be
    called from the event loop it runs in."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: Any,
    ) -> None:
        self.config = config or SimConfig(**options)
        self.host = host
        self.port = port
        self._state = SimState(self.config)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ews_url(self) -> str:
        return self.base_url + EWS_PATH

    @property
    def graph_url(self) -> str:
        """The Graph face's root (as https://graph.microsoft.com/v1.0); the token endpoint
        is `{base_url}/{tenant}/oauth2/v2.0/token`."""
        return self.base_url + GRAPH_PREFIX

    @property
    def graph(self) -> GraphControl:
        """Apps, faults and limits of the Graph face (exchange_sim/graph/control.py)."""
        return GraphControl(self._state)

    async def start(self) -> None:
        self._runner = web.AppRunner(create_app(self.config, self._state), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1.0)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            self._state.streams.drop_all()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- mail and folders --------------------------------------------------------------------

    def deliver(self, mailbox: str, folder: str, raw: bytes) -> str:
        """Deliver raw MIME as transport would (CreatedEvent + NewMailEvent; a missing
        Message-ID is added); the item id."""
        target = self._state.folder(mailbox, folder)
        return self._state.store.deliver(target, raw).id

    def create_item(
        self, mailbox: str, folder: str, raw: bytes, *, is_draft: bool = False, is_read: bool = True
    ) -> str:
        """Save raw MIME as a client's CreateItem would (CreatedEvent only; a missing
        Message-ID stays missing); the item id."""
        target = self._state.folder(mailbox, folder)
        return self._state.store.create(target, raw, is_draft=is_draft, is_read=is_read).id

    def save_draft(self, mailbox: str, folder: str, raw: bytes) -> str:
        """Save raw MIME as a user's draft would be saved (a read draft; CreatedEvent only)."""
        return self.create_item(mailbox, folder, raw, is_draft=True, is_read=True)

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        """The folder's items in the order they entered it: id, changekey, message_id,
        subject, is_draft, received (ISO 8601), size."""
        return self._state.list_items(mailbox, folder)

    def folder_id(self, mailbox: str, folder: str) -> str:
        """The EWS id of an existing folder."""
        return self._state.folder(mailbox, folder).id

    def create_folder(self, path: str, mailbox: str | None = None) -> list[str]:
        """Create a folder path (in every mailbox when `mailbox` is None); its ids."""
        return self._state.ensure_folder(path, mailbox)

    # -- looking in --------------------------------------------------------------------------

    def snapshot(self) -> SimSnapshot:
        """Counters at this moment: items, active subscriptions, open streams, EWS requests
        in flight and served."""
        return self._state.snapshot()

    def fault_status(self) -> FaultStatus:
        """What is armed at this moment: busy replies left, latency, connection limit and
        the items that still fail."""
        return self._state.faults.status()

    def record_responses(self, recorder: Recorder | None) -> None:
        """Call `recorder(operation, body)` with every response document from now on
        ("Fault" for a request refused before dispatch; a stream one envelope at a time);
        None stops. It runs on the simulator's loop: keep it quick (and thread-safe when
        read from another thread)."""
        self._state.recorder = recorder

    # -- faults ------------------------------------------------------------------------------

    def set_busy(self, count: int, back_off_ms: int = DEFAULT_BACK_OFF_MS) -> None:
        """Refuse the next `count` EWS requests with ErrorServerBusy carrying `back_off_ms`."""
        self._state.faults.set_busy(count, back_off_ms)

    def set_latency(self, min_ms: float, max_ms: float | None = None) -> None:
        """Delay every EWS request by `min_ms` (or a random time up to `max_ms`); 0: off."""
        self._state.faults.set_latency(min_ms, max_ms)

    def drop_streams(self) -> int:
        """Cut every open GetStreamingEvents response mid-envelope; how many were open."""
        return self._state.streams.drop_all()

    def expire_subscriptions(
        self, code: str = "ErrorSubscriptionNotFound", ids: list[str] | None = None
    ) -> list[str]:
        """Lose subscriptions (all when `ids` is None): their next use answers `code`
        (ErrorSubscriptionNotFound or ErrorInvalidSubscription); the ids lost."""
        return self._state.subscriptions.expire(ids, code)

    def lose_events(self) -> int:
        """Forget every notification event not yet handed out (subscriptions stay valid);
        how many were lost."""
        return self._state.subscriptions.lose_events()

    def set_max_connections(self, limit: int | None) -> None:
        """Answer ErrorExceededConnectionCount beyond `limit` concurrent EWS requests (open
        streams count); 0 refuses every request, None: no limit."""
        self._state.faults.max_connections = limit

    def fail_items(
        self,
        item_ids: list[str],
        ops: tuple[str, ...] = ITEM_OPS,
        times: int | None = None,
        code: str = "ErrorItemNotFound",
    ) -> None:
        """Make `ops` (MoveItem, DeleteItem, CopyItem, GetItem) fail with `code` for these items,
        `times` times each (None: until reset_faults)."""
        self._state.faults.fail_items(list(ops), item_ids, code, times)

    def fail_requests(
        self,
        code: str,
        ops: tuple[str, ...] = (ANY_OP,),
        times: int | None = 1,
        back_off_ms: int | None = None,
    ) -> None:
        """Answer `ops` ("*": every operation) with an error response message `code` inside
        HTTP 200, `times` times (None: until reset_faults); `back_off_ms` puts
        BackOffMilliseconds in its MessageXml (ErrorServerBusy as Exchange sends it in a
        response message). Item operations get one message per item id."""
        self._state.faults.fail_requests(list(ops), code, times, back_off_ms)

    def set_http_error(
        self, status: int = 503, count: int = 1, retry_after_seconds: int | None = None
    ) -> None:
        """Answer the next `count` EWS requests with a bare HTTP `status` (503, 429),
        with Retry-After when given; count 0: off."""
        self._state.faults.set_http_error(status, count, retry_after_seconds)

    def set_half_open_streams(self, count: int) -> None:
        """The next `count` GetStreamingEvents send headers and one OK, then nothing."""
        self._state.faults.half_open_streams = count

    def set_subscription_limit(self, limit: int | None = EXCHANGE_ONLINE_SUBSCRIPTIONS) -> None:
        """ErrorExceededSubscriptionCount once a mailbox holds `limit` subscriptions (20 on
        Exchange Online; unsubscribed-never ones count); None: no limit."""
        self._state.faults.subscription_limit = limit

    def set_stream_limit(self, limit: int | None = EXCHANGE_ONLINE_STREAMS) -> None:
        """Refuse a GetStreamingEvents beyond `limit` open streams per mailbox with
        ErrorExceededConnectionCount (HangingConnectionLimit: 10 on Exchange Online)."""
        self._state.faults.stream_limit = limit

    def require_public_routing(self, required: bool = True) -> None:
        """Refuse public-folder content requests without X-AnchorMailbox and
        X-PublicFolderMailbox naming the content mailbox (routing.py), as Exchange Online
        does: ErrorNoPublicFolderReplicaAvailable."""
        self._state.faults.require_public_routing = required

    @property
    def public_content_mailbox_guid(self) -> str:
        """The GUID in every public folder's PR_REPLICA_LIST."""
        return PUBLIC_CONTENT_MAILBOX_GUID

    def reset_faults(self) -> None:
        """Disarm every injected fault set through the methods above (not lost
        subscriptions, streams or events)."""
        self._state.faults.reset()


class SimulatorThread:
    """A `Simulator` on its own event loop in a daemon thread. Every method is thread-safe
    (it runs the call on the simulator's loop)."""

    def __init__(self, config: SimConfig | None = None, **options: Any) -> None:
        self.sim = Simulator(config, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="exchange-sim", daemon=True
        )

    @property
    def ews_url(self) -> str:
        return self.sim.ews_url

    @property
    def base_url(self) -> str:
        return self.sim.base_url

    @property
    def graph_url(self) -> str:
        return self.sim.graph_url

    @property
    def graph(self) -> GraphControl:
        return GraphControl(self.sim._state, self.call)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self._loop).result(timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run `fn(*args, **kwargs)` on the simulator's loop and return its result."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:
                future.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    # The methods of `Simulator`, each run on the simulator's loop (see there).

    def deliver(self, mailbox: str, folder: str, raw: bytes) -> str:
        return self.call(self.sim.deliver, mailbox, folder, raw)

    def create_item(
        self, mailbox: str, folder: str, raw: bytes, *, is_draft: bool = False, is_read: bool = True
    ) -> str:
        return self.call(
            self.sim.create_item, mailbox, folder, raw, is_draft=is_draft, is_read=is_read
        )

    def save_draft(self, mailbox: str, folder: str, raw: bytes) -> str:
        return self.call(self.sim.save_draft, mailbox, folder, raw)

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        return self.call(self.sim.list_items, mailbox, folder)

    def folder_id(self, mailbox: str, folder: str) -> str:
        return self.call(self.sim.folder_id, mailbox, folder)

    def create_folder(self, path: str, mailbox: str | None = None) -> list[str]:
        return self.call(self.sim.create_folder, path, mailbox)

    def snapshot(self) -> SimSnapshot:
        return self.call(self.sim.snapshot)

    def fault_status(self) -> FaultStatus:
        return self.call(self.sim.fault_status)

    def record_responses(self, recorder: Recorder | None) -> None:
        self.call(self.sim.record_responses, recorder)

    def set_busy(self, count: int, back_off_ms: int = DEFAULT_BACK_OFF_MS) -> None:
        self.call(self.sim.set_busy, count, back_off_ms)

    def set_latency(self, min_ms: float, max_ms: float | None = None) -> None:
        self.call(self.sim.set_latency, min_ms, max_ms)

    def drop_streams(self) -> int:
        return self.call(self.sim.drop_streams)

    def expire_subscriptions(
        self, code: str = "ErrorSubscriptionNotFound", ids: list[str] | None = None
    ) -> list[str]:
        return self.call(self.sim.expire_subscriptions, code, ids)

    def lose_events(self) -> int:
        return self.call(self.sim.lose_events)

    def set_max_connections(self, limit: int | None) -> None:
        self.call(self.sim.set_max_connections, limit)

    def fail_items(
        self,
        item_ids: list[str],
        ops: tuple[str, ...] = ITEM_OPS,
        times: int | None = None,
        code: str = "ErrorItemNotFound",
    ) -> None:
        self.call(self.sim.fail_items, item_ids, ops, times, code)

    def fail_requests(
        self,
        code: str,
        ops: tuple[str, ...] = (ANY_OP,),
        times: int | None = 1,
        back_off_ms: int | None = None,
    ) -> None:
        self.call(self.sim.fail_requests, code, ops, times, back_off_ms)

    def set_http_error(
        self, status: int = 503, count: int = 1, retry_after_seconds: int | None = None
    ) -> None:
        self.call(self.sim.set_http_error, status, count, retry_after_seconds)

    def set_half_open_streams(self, count: int) -> None:
        self.call(self.sim.set_half_open_streams, count)

    def set_subscription_limit(self, limit: int | None = EXCHANGE_ONLINE_SUBSCRIPTIONS) -> None:
        self.call(self.sim.set_subscription_limit, limit)

    def set_stream_limit(self, limit: int | None = EXCHANGE_ONLINE_STREAMS) -> None:
        self.call(self.sim.set_stream_limit, limit)

    def require_public_routing(self, required: bool = True) -> None:
        self.call(self.sim.require_public_routing, required)

    def reset_faults(self) -> None:
        self.call(self.sim.reset_faults)
