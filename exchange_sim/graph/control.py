"""The Python API of the Graph face: `Simulator.graph` / `SimulatorThread.graph`.

    sim.graph.register_app("client-id", "secret")   # then the face needs its bearer tokens
    sim.graph.throttle(3, retry_after_seconds=2)    # the next 3 requests get 429
    sim.graph.expire_delta_tokens()                 # every issued token now gets 410

`call` runs each method on the simulator's loop (the identity for `Simulator`, the
thread hop for `SimulatorThread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from exchange_sim.graph.state import OUTLOOK_CONCURRENCY, ArmedError, GraphRecorder
from exchange_sim.graph.webhooks import remove_all
from exchange_sim.state import SimState

R = TypeVar("R")
Call = Callable[..., Any]


def _direct(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    return fn(*args, **kwargs)


class GraphControl:
    def __init__(self, state: SimState, call: Call = _direct) -> None:
        self._state = state
        self._call = call

    def register_app(self, client_id: str, secret: str) -> None:
        """Register an app (as `exchange-sim --app ID:SECRET`): the token endpoint
        /{tenant}/oauth2/v2.0/token grants it tokens (client credentials), and from now on
        the Graph face answers only requests bearing a registered app's token."""
        self._call(self._state.config.apps.__setitem__, client_id, secret)

    def register_app_certificate(self, client_id: str, certificate_pem: str) -> None:
        """Register an app with certificate credentials (as `exchange-sim --app ID:@cert.pem`):
        the token endpoint grants it tokens for client assertions signed with that
        certificate's key, as Entra ID does."""
        self._call(self._state.config.apps.__setitem__, client_id, certificate_pem)

    def throttle(
        self, count: int, retry_after_seconds: float | None = 1.0, status: int = 429
    ) -> None:
        """The next `count` Graph requests (each $batch part counts) get `status` (429
        TooManyRequests or 503 ServiceUnavailable) with Retry-After (None: no header)."""
        if status not in (429, 503):
            raise ValueError("status must be 429 or 503")
        armed = [ArmedError(status, retry_after_seconds)] * count
        self._call(self._state.graph.armed.extend, armed)

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token issued so far gets 410 Gone / SyncStateNotFound."""

        def expire() -> None:
            self._state.graph.delta_epoch += 1

        self._call(expire)

    def set_concurrency_limit(self, limit: int | None = OUTLOOK_CONCURRENCY) -> None:
        """Concurrent requests allowed per app and mailbox (None: unlimited)."""
        self._call(setattr, self._state.graph, "concurrency_limit", limit)

    def set_latency(self, ms: float) -> None:
        """Added to every Graph request (and $batch part) while it holds its slot."""
        self._call(setattr, self._state.graph, "latency_seconds", ms / 1000.0)

    def record_responses(self, recorder: GraphRecorder | None) -> None:
        """Call `recorder(type_spec, body)` with every JSON body the face answers (each
        $batch part and the batch); None stops. Runs on the simulator's loop."""
        self._call(setattr, self._state.graph, "recorder", recorder)

    def drop_notifications(self, count: int) -> None:
        """The next `count` change notifications are lost (never POSTed)."""
        self._call(setattr, self._state.graph, "drop_notifications", count)

    def remove_subscriptions(self) -> int:
        """Remove every subscription, as Exchange Online may; those with a lifecycle URL
        get a `subscriptionRemoved` event. The number removed."""

        def remove() -> int:
            removed = list(self._state.graph.subscriptions.values())
            self._state.graph.subscriptions.clear()
            asyncio.get_running_loop().create_task(remove_all(self._state, removed))
            return len(removed)

        result: int = self._call(remove)
        return result

    def counters(self) -> dict[str, int]:
        """requests_served, throttled (429/503 sent), in_flight, subscriptions (live) and
        notifications_sent at this moment."""

        def read() -> dict[str, int]:
            graph = self._state.graph
            return {
                "requests_served": graph.requests_served,
                "throttled": graph.throttled,
                "in_flight": sum(graph.in_flight.values()),
                "subscriptions": len(graph.subscriptions),
                "notifications_sent": graph.notifications_sent,
            }

        result: dict[str, int] = self._call(read)
        return result

    def reset_faults(self) -> None:
        """Disarm injected answers and latency; the concurrency limit back to Outlook's."""

        def reset() -> None:
            graph = self._state.graph
            graph.armed.clear()
            graph.latency_seconds = 0.0
            graph.concurrency_limit = OUTLOOK_CONCURRENCY

        self._call(reset)
