"""An in-memory `MailSource`: the test double for everything above the source.

Like httpx's `MockTransport`, it is a seam instead of monkeypatching: the service's routing,
drain, backpressure and failure tests run against it, fast and with no HTTP. It keeps the
semantics `EwsSource` has (tests/source/test_contract.py runs both through one suite), and
messages go through the product's own `parse_mime`. The hooks a test drives it with:

    src = MemorySource("queue@example.com", disposal_folder="Audit", events=recorder)
    ref = src.deliver(raw)            transport delivery into the queue (pushed when live)
    src.queue() / storage() / trash() / folder(name)   {item id: Mail}, in arrival order
    src.remove(item_id)               someone else deleted the item (no event)
    src.fail_next("move", Throttled("busy", 2.0), times=3)     whole-call failures
    src.fail_item(ref.item_id, "fetch", Permanent("poison"))  per-item failures
    src.clear_faults()                disarm both kinds
    src.drop_connection()             the subscription is lost: resubscribe, catch up again
    src.hold("dispose"); src.held("dispose"); src.release("dispose")   a gate on calls
    src.calls("fetch")                how many calls an operation received

Operations (`Op`): open, subscribe (arrivals' (re)subscription), fetch, move, dispose, find
(all four lookups), backlog and mime (fetch_stored_mime: the delivered bytes, kept). A held
or failing "subscribe" keeps arrivals disconnected; a failed one is retried like the EWS
stream retries (Throttled waits `retry_after`).

Differences from EWS, on purpose: `deliver` keeps a message without a Message-ID as it is
(Exchange transport would add one), so the by-key lookups are reached without a CreateItem;
`move_to_storage` always returns a web link. Everything runs on the event loop: no threads.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar
from urllib.parse import quote

from pipeline.errors import ItemGone, SourceUnavailable, Throttled
from pipeline.mailparse import parse_mime
from pipeline.model import Mail, MailRef
from pipeline.sources import Disposal, Fetched, NoEvents, SourceEvents, Stored

T = TypeVar("T")

#: What a test can hold or make fail as a whole call.
Op = Literal["open", "subscribe", "fetch", "move", "dispose", "find", "backlog", "mime"]
#: What a test can make fail for one item.
ItemOp = Literal["fetch", "move", "dispose"]

QUEUE = "Queue"
STORAGE = "Storage"
TRASH = "Deleted Items"
#: Items never change here, so one ChangeKey does (EWS refs carry one too).
CHANGEKEY = "ck1"


def _ref(item_id: str, mail: Mail) -> MailRef:
    return MailRef(item_id=item_id, changekey=CHANGEKEY, received_at=mail.received_at)


class MemorySource:
    """`MailSource` over dictionaries, with test hooks. See the module docstring."""

    def __init__(
        self,
        mailbox: str,
        *,
        disposal_folder: str | None = None,
        events: SourceEvents | None = None,
        resubscribe_delay_seconds: float = 0.01,
    ) -> None:
        if disposal_folder in (QUEUE, STORAGE):
            raise ValueError(f"disposal folder {disposal_folder!r} is the queue or storage")
        self._mailbox = mailbox
        self._disposal_folder = disposal_folder
        self._events: SourceEvents = events if events is not None else NoEvents()
        self._resubscribe_delay = resubscribe_delay_seconds
        names = [QUEUE, STORAGE, TRASH] + ([disposal_folder] if disposal_folder else [])
        self._folders: dict[str, dict[str, Mail]] = {name: {} for name in names}
        self._raw: dict[str, bytes] = {}  # item id -> the bytes delivered, in any folder
        self._numbers = itertools.count(1)
        self._last_received = datetime.min.replace(tzinfo=UTC)
        self._open = False
        self._consumed = False  # arrivals() has its consumer for this open()
        # The live subscription: deliveries are pushed into it; None (in it) means "lost".
        self._subscription: asyncio.Queue[MailRef | None] | None = None
        self._connected = False
        self._mode: str | None = None
        self._calls: Counter[Op] = Counter()
        self._failures: dict[Op, deque[Exception]] = {}
        self._item_failures: dict[tuple[ItemOp, str], tuple[Exception, int | None]] = {}
        self._gates: dict[Op, asyncio.Event] = {}
        self._held: Counter[Op] = Counter()

    # --- MailSource: identity, state, lifecycle ---

    @property
    def mailbox(self) -> str:
        return self._mailbox

    @property
    def connected(self) -> bool:
        return self._connected

    async def open(self) -> None:
        await self._enter("open")
        self._open = True
        self._consumed = False

    async def close(self) -> None:
        self._open = False
        self._lose_subscription()

    # --- MailSource: arrivals ---

    async def arrivals(self) -> AsyncIterator[MailRef]:
        """As `EwsSource.arrivals`: starts at the first `anext()`; never ends, not even at
        close() (cancel the consumer); one consumer per open(). An item comes out once."""
        if not self._open:
            raise RuntimeError("MemorySource.arrivals() before open()")
        if self._consumed:
            raise RuntimeError("MemorySource.arrivals() supports one consumer per open()")
        self._consumed = True
        seen: set[str] = set()
        subscribed_before = False
        while (subscription := await self._subscribe(subscribed_before)) is not None:
            subscribed_before = True
            # Catch-up: a snapshot taken right after subscribing (no await between), so later
            # deliveries come by push; `seen` drops what a repeated catch-up reports again.
            for item_id, mail in list(self._folders[QUEUE].items()):
                if subscription is not self._subscription:
                    break  # lost (or closed) meanwhile: a new catch-up follows the resubscribe
                if item_id not in seen:
                    seen.add(item_id)
                    yield _ref(item_id, mail)
            while (ref := await subscription.get()) is not None:
                if ref.item_id not in seen:
                    seen.add(ref.item_id)
                    yield ref
        await asyncio.get_running_loop().create_future()  # closed: wait to be cancelled

    async def _subscribe(self, subscribed_before: bool) -> asyncio.Queue[MailRef | None] | None:
        """A new subscription, retrying failures as the EWS stream does; None once closed."""
        while self._open:
            try:
                await self._enter("subscribe")
            except Throttled as exc:  # `_enter` reported it to on_throttled
                await asyncio.sleep(exc.retry_after)
                continue
            except Exception:  # the EWS stream retries any failure after a pause, so do we
                await asyncio.sleep(self._resubscribe_delay)
                continue
            subscription: asyncio.Queue[MailRef | None] = asyncio.Queue()
            self._subscription = subscription
            self._set_connected(True)
            if self._mode != "streaming":  # the memory source always streams
                self._mode = "streaming"
                self._events.on_mode(self._mode)
            if subscribed_before:
                self._events.on_reconnect()
            return subscription
        return None

    def _lose_subscription(self) -> bool:
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return False
        subscription.put_nowait(None)
        self._set_connected(False)
        return True

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            self._events.on_connected(connected)

    # --- MailSource: batch operations ---

    async def backlog(self) -> int:
        await self._enter("backlog")
        return len(self._folders[QUEUE])

    async def fetch(self, refs: Sequence[MailRef]) -> list[Fetched | Exception]:
        if not refs:
            return []
        await self._enter("fetch")
        return self._each("fetch", refs, lambda ref, mail: Fetched(ref=ref, mail=mail))

    async def move_to_storage(self, refs: Sequence[MailRef]) -> list[Stored | Exception]:
        if not refs:
            return []
        await self._enter("move")
        return self._each("move", refs, lambda ref, _: self._stored(self._move(ref, STORAGE)))

    async def dispose(self, refs: Sequence[MailRef], how: Disposal) -> list[Exception | None]:
        if not refs:
            return []
        if how is Disposal.MOVE and self._disposal_folder is None:
            raise RuntimeError("Disposal.MOVE needs MemorySource(disposal_folder=...)")
        await self._enter("dispose")
        target = {Disposal.TRASH: TRASH, Disposal.MOVE: self._disposal_folder}.get(how)

        def dispose_one(ref: MailRef, _: Mail) -> None:
            if target is None:
                del self._folders[QUEUE][ref.item_id]
                del self._raw[ref.item_id]
            else:
                self._move(ref, target)

        return self._each("dispose", refs, dispose_one)

    async def fetch_stored_mime(self, item_id: str) -> bytes:
        await self._enter("mime")
        if item_id not in self._folders[STORAGE]:
            raise ItemGone(f"{item_id} is not in the storage folder")
        return self._raw[item_id]

    async def find_in_queue(self, message_id: str) -> list[MailRef]:
        await self._enter("find")
        return [_ref(i, m) for i, m in self._folders[QUEUE].items() if m.message_id == message_id]

    async def find_in_storage(self, message_id: str) -> list[Stored]:
        await self._enter("find")
        items = self._folders[STORAGE].items()
        return [self._stored(i) for i, m in items if m.message_id == message_id]

    async def find_in_queue_by_key(self, dedupe_key: str) -> list[MailRef]:
        await self._enter("find")
        items = self._folders[QUEUE].items()
        return [_ref(i, m) for i, m in items if not m.message_id and m.dedupe_key == dedupe_key]

    async def find_in_storage_by_key(self, dedupe_key: str) -> list[Stored]:
        await self._enter("find")
        items = self._folders[STORAGE].items()
        return [
            self._stored(i) for i, m in items if not m.message_id and m.dedupe_key == dedupe_key
        ]

    def _each(
        self, op: ItemOp, refs: Sequence[MailRef], action: Callable[[MailRef, Mail], T]
    ) -> list[T | Exception]:
        """One result per ref, in input order: an injected failure, ItemGone, or `action`."""
        out: list[T | Exception] = []
        for ref in refs:
            failure = self._item_failure(op, ref.item_id)
            mail = self._folders[QUEUE].get(ref.item_id)
            if failure is not None:
                out.append(failure)
            elif mail is None:
                out.append(ItemGone(f"{ref.item_id} is not in the queue"))
            else:
                out.append(action(ref, mail))
        return out

    def _move(self, ref: MailRef, folder: str) -> str:
        """Move a queue item; like an EWS move, it gets a new id. Returns the new id."""
        mail = self._folders[QUEUE].pop(ref.item_id)
        new_id = self._new_id()
        self._folders[folder][new_id] = mail
        self._raw[new_id] = self._raw.pop(ref.item_id)
        return new_id

    def _stored(self, item_id: str) -> Stored:
        # Shaped like an OWA read-form link; the .invalid host (RFC 2606) can never resolve.
        link = f"https://mail.invalid/owa/?ItemID={quote(item_id)}&viewmodel=ReadMessageItem"
        return Stored(item_id=item_id, web_link=link)

    def _new_id(self) -> str:
        return f"mem-{next(self._numbers)}"

    # --- test hooks: mail ---

    def deliver(self, raw: bytes, *, received_at: datetime | None = None) -> MailRef:
        """Deliver raw RFC 5322 bytes into the queue as transport would, pushed to a live
        subscription. `received_at` (the queue arrival time) defaults to now, increasing."""
        if received_at is None:
            received_at = max(datetime.now(UTC), self._last_received + timedelta(microseconds=1))
            self._last_received = received_at
        item_id = self._new_id()
        mail = parse_mime(raw, received_at=received_at)
        self._folders[QUEUE][item_id] = mail
        self._raw[item_id] = raw
        ref = _ref(item_id, mail)
        if self._subscription is not None:
            self._subscription.put_nowait(ref)
        return ref

    def folder(self, name: str) -> dict[str, Mail]:
        """A copy of folder `name` (QUEUE, STORAGE, TRASH or the disposal folder)."""
        return dict(self._folders[name])

    def queue(self) -> dict[str, Mail]:
        return self.folder(QUEUE)

    def storage(self) -> dict[str, Mail]:
        return self.folder(STORAGE)

    def trash(self) -> dict[str, Mail]:
        return self.folder(TRASH)

    def remove(self, item_id: str) -> None:
        """Delete an item from whichever folder holds it, as another client would: the
        subscription reports nothing (EWS filters out events for items leaving the queue)."""
        for items in self._folders.values():
            if items.pop(item_id, None) is not None:
                del self._raw[item_id]
                return
        raise KeyError(item_id)

    # --- test hooks: faults and gates ---

    def fail_next(self, op: Op, exc: Exception, *, times: int = 1) -> None:
        """The next `times` calls of `op` raise `exc` as a whole-call failure."""
        self._failures.setdefault(op, deque()).extend([exc] * times)

    def fail_item(
        self, item_id: str, op: ItemOp, exc: Exception, *, times: int | None = None
    ) -> None:
        """`op` reports `exc` for this item (in its place), `times` times or for ever (None)."""
        self._item_failures[(op, item_id)] = (exc, times)

    def clear_faults(self) -> None:
        self._failures.clear()
        self._item_failures.clear()

    def drop_connection(self) -> bool:
        """Lose the subscription (False if there was none): `connected` turns False, what is
        delivered meanwhile is not pushed; arrivals resubscribe and catch up again."""
        return self._lose_subscription()

    def hold(self, op: Op) -> None:
        """Park every call of `op` at a gate, before it does anything, until `release(op)`."""
        self._gates.setdefault(op, asyncio.Event())

    def release(self, op: Op) -> None:
        gate = self._gates.pop(op, None)
        if gate is not None:
            gate.set()

    def held(self, op: Op) -> int:
        """How many calls of `op` wait at its gate now."""
        return self._held[op]

    def calls(self, op: Op) -> int:
        """How many calls of `op` were made (empty batches make none, as with EWS)."""
        return self._calls[op]

    async def _enter(self, op: Op) -> None:
        """Every call starts here: counted, parked at a gate, then an injected failure."""
        self._calls[op] += 1
        gate = self._gates.get(op)
        if gate is not None:
            self._held[op] += 1
            try:
                await gate.wait()
            finally:
                self._held[op] -= 1
        if op != "open" and not self._open:
            raise SourceUnavailable("memory source is not open")
        failures = self._failures.get(op)
        if failures:
            exc = failures.popleft()
            if isinstance(exc, Throttled):
                self._events.on_throttled(exc.retry_after)
            raise exc.with_traceback(None)  # the same instance may be raised again

    def _item_failure(self, op: ItemOp, item_id: str) -> Exception | None:
        failure = self._item_failures.get((op, item_id))
        if failure is None:
            return None
        exc, times = failure
        if times is not None:
            if times <= 1:
                del self._item_failures[(op, item_id)]
            else:
                self._item_failures[(op, item_id)] = (exc, times - 1)
        if isinstance(exc, Throttled):
            self._events.on_throttled(exc.retry_after)
        return exc
