"""Pull and streaming subscriptions: event filtering, buffering, watermarks and expiry.

Subscriptions live in memory, like on a mailbox server: losing them (a fault, or a restart)
gives ErrorSubscriptionNotFound / ErrorInvalidSubscription, as Exchange does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from exchange_sim.model import Event, Mailbox, StoreError

EVENT_TYPES = frozenset(
    {
        "CopiedEvent",
        "CreatedEvent",
        "DeletedEvent",
        "ModifiedEvent",
        "MovedEvent",
        "NewMailEvent",
        "FreeBusyChangedEvent",
    }
)
# A streaming subscription without an open connection lives this long (minutes).
STREAMING_IDLE_MINUTES = 30


def encode_watermark(seq: int) -> str:
    return base64.b64encode(b"WM" + seq.to_bytes(8, "big")).decode("ascii")


def decode_watermark(value: str) -> int | None:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if len(raw) != 10 or not raw.startswith(b"WM"):
        return None
    return int.from_bytes(raw[2:], "big")


@dataclass(eq=False)
class Subscription:
    id: str
    kind: str  # "streaming" or "pull"
    mailbox: Mailbox | None
    folder_ids: frozenset[str] | None  # None: every folder of the mailbox
    event_types: frozenset[str]
    timeout_minutes: int
    last_used: float
    events: deque[tuple[int, Event]] = field(default_factory=deque)
    next_seq: int = 1
    pull_cursor: int = 0  # last event handed out by GetEvents
    open_streams: int = 0
    waiters: set[asyncio.Event] = field(default_factory=set)

    def matches(self, event: Event) -> bool:
        if event.kind not in self.event_types:
            return False
        if self.folder_ids is None:
            return event.mailbox is self.mailbox and event.mailbox is not None
        return event.parent_id in self.folder_ids or (
            event.old_parent_id is not None and event.old_parent_id in self.folder_ids
        )

    @property
    def watermark(self) -> str:
        return encode_watermark(self.next_seq - 1)


class Subscriptions:
    def __init__(self, minute_seconds: float = 60.0) -> None:
        self.minute_seconds = minute_seconds
        self.active: dict[str, Subscription] = {}
        # Ids lost to an injected fault (or expired) -> the error code to answer with.
        self.gone: dict[str, str] = {}

    def subscribe(
        self,
        kind: str,
        mailbox: Mailbox | None,
        folder_ids: frozenset[str] | None,
        event_types: frozenset[str],
        timeout_minutes: int = STREAMING_IDLE_MINUTES,
    ) -> Subscription:
        sub = Subscription(
            id=base64.b64encode(uuid.uuid4().bytes + b"\x10SIMSUB").decode("ascii"),
            kind=kind,
            mailbox=mailbox,
            folder_ids=folder_ids,
            event_types=event_types,
            timeout_minutes=timeout_minutes,
            last_used=time.monotonic(),
        )
        self.active[sub.id] = sub
        return sub

    def on_event(self, event: Event) -> None:
        for sub in self.active.values():
            if sub.matches(event):
                sub.events.append((sub.next_seq, event))
                sub.next_seq += 1
                for waiter in sub.waiters:
                    waiter.set()

    def _expire_idle(self) -> None:
        now = time.monotonic()
        for sub in list(self.active.values()):
            if sub.open_streams:
                continue
            if now - sub.last_used > sub.timeout_minutes * self.minute_seconds:
                del self.active[sub.id]
                self.gone[sub.id] = "ErrorSubscriptionNotFound"

    def get(
        self, sub_id: str, kind: str | None = None, unknown: str = "ErrorSubscriptionNotFound"
    ) -> Subscription:
        """An active subscription; a lost one raises the code it was lost with, an id never
        issued raises `unknown`."""
        self._expire_idle()
        sub = self.active.get(sub_id)
        if sub is None:
            code = self.gone.get(sub_id, unknown)
            raise StoreError(code, "The specified subscription was not found.")
        if kind is not None and sub.kind != kind:
            raise StoreError(
                "ErrorInvalidSubscription", "The subscription is not of the right kind."
            )
        sub.last_used = time.monotonic()
        return sub

    def unsubscribe(self, sub_id: str) -> None:
        self.get(sub_id)
        del self.active[sub_id]
        self.gone[sub_id] = "ErrorSubscriptionNotFound"

    def expire(self, sub_ids: list[str] | None, code: str) -> list[str]:
        """Drop subscriptions (all when `sub_ids` is None); later use answers `code`."""
        targets = list(self.active) if sub_ids is None else [s for s in sub_ids if s in self.active]
        for sub_id in targets:
            sub = self.active.pop(sub_id)
            self.gone[sub_id] = code
            for waiter in sub.waiters:
                waiter.set()
        return targets

    def lose_events(self) -> int:
        """Forget every buffered event, as a server that loses notifications does (the
        subscriptions stay valid); how many were lost."""
        lost = 0
        for sub in self.active.values():
            lost += len(sub.events)
            sub.events.clear()
        return lost
