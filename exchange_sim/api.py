"""Python API: run the simulator inside an event loop (`Simulator`) or in a background thread
with its own loop (`SimulatorThread`, for blocking code such as exchangelib in plain tests).

    async with Simulator(folders=["Email Logging/Queue"]) as sim:
        item_id = sim.deliver("queue@example.com", "Email Logging/Queue", raw)
        ...  # point exchangelib at sim.ews_url (from a worker thread)

    with SimulatorThread(folders=["public:/Queue"]) as sim:
        sim.deliver("queue@example.com", "public:/Queue", raw)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from exchange_sim.app import EWS_PATH, SimState, create_app
from exchange_sim.config import SimConfig
from exchange_sim.sideband import item_summary, resolve_folder

R = TypeVar("R")


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
        self.state = SimState(self.config)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ews_url(self) -> str:
        return self.base_url + EWS_PATH

    async def start(self) -> None:
        self._runner = web.AppRunner(create_app(self.config, self.state), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1.0)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            self.state.streams.drop_all()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- mail and folders --------------------------------------------------------------------

    def deliver(self, mailbox: str, folder: str, raw: bytes) -> str:
        """Deliver raw MIME as transport would (CreatedEvent + NewMailEvent); the item id."""
        target = resolve_folder(self.state.store, mailbox, folder)
        return self.state.store.deliver(target, raw).id

    def save_draft(self, mailbox: str, folder: str, raw: bytes) -> str:
        """Save raw MIME as a user's draft would be saved (CreateItem: CreatedEvent only)."""
        target = resolve_folder(self.state.store, mailbox, folder)
        return self.state.store.create(target, raw, is_draft=True, is_read=True).id

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        target = resolve_folder(self.state.store, mailbox, folder)
        return [item_summary(i) for i in target.items.values()]

    def folder_id(self, mailbox: str, folder: str) -> str:
        return resolve_folder(self.state.store, mailbox, folder).id

    def create_folder(self, path: str, mailbox: str | None = None) -> list[str]:
        return self.state.ensure_folder(path, mailbox)

    # -- faults ------------------------------------------------------------------------------

    def set_busy(self, count: int, back_off_ms: int = 1500) -> None:
        self.state.faults.busy_remaining = count
        self.state.faults.busy_back_off_ms = back_off_ms

    def set_latency(self, min_ms: float, max_ms: float | None = None) -> None:
        self.state.faults.latency_min_ms = min_ms
        self.state.faults.latency_max_ms = min_ms if max_ms is None else max_ms

    def drop_streams(self) -> int:
        return self.state.streams.drop_all()

    def expire_subscriptions(
        self, code: str = "ErrorSubscriptionNotFound", ids: list[str] | None = None
    ) -> list[str]:
        return self.state.subscriptions.expire(ids, code)

    def set_max_connections(self, limit: int | None) -> None:
        self.state.faults.max_connections = limit

    def fail_items(
        self,
        item_ids: list[str],
        ops: tuple[str, ...] = ("MoveItem", "DeleteItem"),
        times: int | None = None,
        code: str = "ErrorItemNotFound",
    ) -> None:
        self.state.faults.fail_items(list(ops), item_ids, code, times)

    def reset_faults(self) -> None:
        self.state.faults.reset()


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
    def state(self) -> SimState:
        return self.sim.state

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

    def deliver(self, mailbox: str, folder: str, raw: bytes) -> str:
        return self.call(self.sim.deliver, mailbox, folder, raw)

    def save_draft(self, mailbox: str, folder: str, raw: bytes) -> str:
        return self.call(self.sim.save_draft, mailbox, folder, raw)

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        return self.call(self.sim.list_items, mailbox, folder)

    def folder_id(self, mailbox: str, folder: str) -> str:
        return self.call(self.sim.folder_id, mailbox, folder)

    def create_folder(self, path: str, mailbox: str | None = None) -> list[str]:
        return self.call(self.sim.create_folder, path, mailbox)

    def set_busy(self, count: int, back_off_ms: int = 1500) -> None:
        self.call(self.sim.set_busy, count, back_off_ms)

    def set_latency(self, min_ms: float, max_ms: float | None = None) -> None:
        self.call(self.sim.set_latency, min_ms, max_ms)

    def drop_streams(self) -> int:
        return self.call(self.sim.drop_streams)

    def expire_subscriptions(
        self, code: str = "ErrorSubscriptionNotFound", ids: list[str] | None = None
    ) -> list[str]:
        return self.call(self.sim.expire_subscriptions, code, ids)

    def set_max_connections(self, limit: int | None) -> None:
        self.call(self.sim.set_max_connections, limit)

    def fail_items(
        self,
        item_ids: list[str],
        ops: tuple[str, ...] = ("MoveItem", "DeleteItem"),
        times: int | None = None,
        code: str = "ErrorItemNotFound",
    ) -> None:
        self.call(self.sim.fail_items, item_ids, ops, times, code)

    def reset_faults(self) -> None:
        self.call(self.sim.reset_faults)
