"""What the Graph face keeps between requests: armed faults, the concurrency limit and who
holds it, the delta-token epoch and the response recorder. Plain data; `control.py` is the
Python API over it and `web.py` applies it to each request."""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Outlook's documented limit: 4 concurrent requests per app and mailbox.
OUTLOOK_CONCURRENCY = 4

# Sees every JSON body the Graph face answers: (type spec for validate_graph, body).
GraphRecorder = Callable[[str, object], None]


@dataclass(frozen=True, slots=True)
class ArmedError:
    """One injected answer: 429 TooManyRequests or 503 ServiceUnavailable."""

    status: int
    retry_after_seconds: float | None


@dataclass
class GraphState:
    armed: deque[ArmedError] = field(default_factory=deque)
    concurrency_limit: int | None = OUTLOOK_CONCURRENCY
    in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Delta and skip tokens carry the epoch they were issued in; older ones are expired.
    delta_epoch: int = 0
    # Tokens carry it too: a token of another simulator (a restarted one) is unknown here.
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    latency_seconds: float = 0.0
    recorder: GraphRecorder | None = None
    requests_served: int = 0  # Graph requests (batch parts included) that passed auth
    # Change-notification subscriptions by id (webhooks.py), and notifications to drop.
    subscriptions: dict[str, Any] = field(default_factory=dict)
    drop_notifications: int = 0
    notifications_sent: int = 0
    watching: bool = False  # webhooks.py listens to the store
    throttled: int = 0  # 429/503 answers sent, injected or for concurrency

    def take_armed(self) -> ArmedError | None:
        return self.armed.popleft() if self.armed else None

    def enter(self, key: tuple[str, str]) -> bool:
        """Count a request for (app, mailbox); False (and not counted) over the limit."""
        limit = self.concurrency_limit
        if limit is not None and self.in_flight[key] >= limit:
            return False
        self.in_flight[key] += 1
        return True

    def leave(self, key: tuple[str, str]) -> None:
        self.in_flight[key] -= 1
        if self.in_flight[key] <= 0:
            del self.in_flight[key]
