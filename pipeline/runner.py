"""The thin wrapper around a stage's step: micro-batches and retries.

A step is `async (items) -> one result per item (a value or that item's exception)`; it
knows nothing of queues, retries or metrics. `next_batch` takes a micro-batch from a
stage's inbox; `run_batch` runs the step on it with retries. Where results go is
`flow.py`'s business.

Batches are sized by load. A stage with no batch in progress takes what its inbox holds
and goes at once, so an idle pipeline adds no wait to a message's latency; while one of its
batches is in progress, the next waits to fill (up to `batch_messages`) until that batch
ends or `batch_wait_seconds` pass (Nagle's rule). The first stage, where messages arrive
one at a time, also waits the whole `batch_wait_seconds` to fill while other messages are
in flight and messages arrive faster than one per `batch_wait_seconds` (`Pace`): a busy
pipeline then works in batches (later stages receive a batch's messages together), so
each message pays a fraction of a request; an idle or slow one never waits for company
that is not coming.

Retries (tenacity), per batch:
- a `Retryable` raised for the whole batch retries the batch; a `Retryable` returned for
  one item retries just the items that returned one;
- `Throttled.retry_after` is honoured; other waits back off exponentially with jitter,
  capped at `max_wait_seconds`;
- outages (`DatabaseUnavailable`, `SourceUnavailable`), `Throttled` and `SetupIncomplete`
  (the e-mail template is missing until someone imports it) are retried without
  limit: they are no message's fault (and recording a failure needs the database anyway),
  so the pipeline pauses, the queues fill and intake waits;
- any other `Retryable` stops after `max_attempts`; the items still failing keep their
  error (the flow has the ledger record them `failed`; they stay in the queue);
- a batch of several items that fails as a whole (a poison message tripping a bug, a
  database constraint, or a server error for the whole request) is re-run item by item, so
  only the poison one fails and the rest go on.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from pipeline.errors import (
    DatabaseUnavailable,
    Retryable,
    SetupIncomplete,
    SourceUnavailable,
    Throttled,
    describe,
)
from pipeline.logs import get_logger
from pipeline.metrics import Metrics

In = TypeVar("In")
Out = TypeVar("Out")

log = get_logger(__name__)

#: Retried until they pass: waiting is the only cure, and no message is to blame.
UNBOUNDED = (DatabaseUnavailable, SourceUnavailable, Throttled, SetupIncomplete)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    max_wait_seconds: float


class _ItemsToRetry(Retryable):
    """Some items of a batch returned a Retryable: retry those (carries the first one)."""

    def __init__(self, first: Retryable) -> None:
        self.first = first
        super().__init__(str(first))


class Pace:
    """The recent time between arrivals: an exponentially weighted mean (infinite until
    two have arrived)."""

    WEIGHT = 0.1  # of the newest gap: about the last ten arrivals count

    def __init__(self) -> None:
        self.gap_seconds = math.inf
        self._last: float | None = None

    def arrived(self, now: float | None = None) -> None:
        """One more arrival, at `now` (time.monotonic() when not given)."""
        now = time.monotonic() if now is None else now
        if self._last is not None:
            gap = now - self._last
            mean = self.gap_seconds
            self.gap_seconds = gap if math.isinf(mean) else mean + self.WEIGHT * (gap - mean)
        self._last = now


class Busy:
    """How many batches of one stage are in progress (wakes a batch waiting to fill when the
    last one ends), how many messages the whole pipeline has in flight, and how fast they
    arrive."""

    def __init__(self, in_flight: Callable[[], int] = lambda: 0, pace: Pace | None = None) -> None:
        self.in_flight = in_flight
        self.pace = pace if pace is not None else Pace()
        self.running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self) -> None:
        self.running += 1
        self._idle.clear()

    def finished(self) -> None:
        self.running -= 1
        if self.running == 0:
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


async def next_batch(
    inbox: asyncio.Queue[In],
    max_items: int,
    max_wait_seconds: float,
    busy: Busy | None = None,
    *,
    fill: bool = False,
) -> list[In]:
    """Wait for one item, then take what the inbox holds, up to `max_items`; while `busy`
    has a batch running, also what arrives until it ends or `max_wait_seconds` pass (with
    no `busy`, always until then). With `fill`, while other messages are in flight, what
    arrives until `max_wait_seconds` pass (the module docstring)."""
    batch = [await inbox.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_seconds
    if (
        fill
        and busy is not None
        and busy.in_flight() > len(batch)
        and busy.pace.gap_seconds < max_wait_seconds
    ):
        busy = None  # wait the whole time
    while len(batch) < max_items:
        try:
            batch.append(inbox.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - loop.time()
        if remaining <= 0 or (busy is not None and busy.running == 0):
            break
        got = await _get_unless_idle(inbox, remaining, busy)
        if not got:
            break
        batch.extend(got)
    return batch


async def _get_unless_idle(inbox: asyncio.Queue[In], timeout: float, busy: Busy | None) -> list[In]:
    """The next item of `inbox` ([] when `timeout` passes or `busy` turns idle first)."""
    getter = asyncio.ensure_future(inbox.get())
    idle = asyncio.ensure_future(busy.idle()) if busy is not None else None
    try:
        await asyncio.wait(
            [getter] if idle is None else [getter, idle],
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        if idle is not None:
            idle.cancel()
        # Queue.get leaves the item in the queue when cancelled before it took it.
        getter.cancel()
    return [getter.result()] if getter.done() and not getter.cancelled() else []


async def run_batch(
    name: str,
    stage: Callable[[Sequence[In]], Awaitable[Sequence[Out | Exception]]],
    batch: Sequence[In],
    policy: RetryPolicy,
    metrics: Metrics,
) -> list[Out | Exception]:
    """Run `stage` on `batch` with retries; one result per item, in order."""
    try:
        return await _with_retries(name, stage, batch, policy, metrics)
    except Exception as exc:
        if len(batch) == 1:
            return [exc]
        log.warning(
            "batch failed, retrying its items one by one",
            extra={"fields": {"stage": name, "items": len(batch), "error": describe(exc)}},
        )
        results: list[Out | Exception] = []
        for item in batch:
            results.extend(await run_batch(name, stage, [item], policy, metrics))
        return results


async def _with_retries(
    name: str,
    stage: Callable[[Sequence[In]], Awaitable[Sequence[Out | Exception]]],
    batch: Sequence[In],
    policy: RetryPolicy,
    metrics: Metrics,
) -> list[Out | Exception]:
    results: dict[int, Out | Exception] = {}
    pending = list(range(len(batch)))
    retrying = _retrying(name, policy, metrics, pending=lambda: len(pending))
    try:
        async for attempt in retrying:
            with attempt:
                out = await stage([batch[i] for i in pending])
                if len(out) != len(pending):
                    raise RuntimeError(f"stage {name}: {len(out)} results for {len(pending)} items")
                again: list[int] = []
                for i, result in zip(pending, out, strict=True):
                    results[i] = result
                    if isinstance(result, Retryable):
                        again.append(i)
                pending = again
                if pending:
                    first = results[pending[0]]
                    assert isinstance(first, Retryable)
                    raise _ItemsToRetry(first)
    except _ItemsToRetry:
        pass  # out of attempts: those items keep their last error
    # ...unless their error is an outage (a batch's poison item ran the attempts out while
    # the others only met ErrorBatchProcessingStopped, say): no message's fault, go on.
    unbounded = [i for i in pending if isinstance(results[i], UNBOUNDED)]
    if unbounded and len(unbounded) < len(batch):
        retried = await _with_retries(name, stage, [batch[i] for i in unbounded], policy, metrics)
        for i, outcome in zip(unbounded, retried, strict=True):
            results[i] = outcome
    return [results[i] for i in range(len(batch))]


def _retrying(
    name: str, policy: RetryPolicy, metrics: Metrics, pending: Callable[[], int]
) -> AsyncRetrying:
    """The tenacity policy of one batch (see the module docstring)."""
    backoff = wait_random_exponential(multiplier=0.2, max=policy.max_wait_seconds)

    def stop(state: RetryCallState) -> bool:
        if isinstance(_cause(state), UNBOUNDED):
            return False
        return state.attempt_number >= policy.max_attempts

    def wait(state: RetryCallState) -> float:
        cause = _cause(state)
        if isinstance(cause, Throttled):
            return max(cause.retry_after, 0.0)
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        metrics.retries.labels(name).inc()
        fields = {
            "stage": name,
            "attempt": state.attempt_number,
            "items": pending(),
            "error": describe(_cause(state)),
        }
        log.warning("retrying", extra={"fields": fields})

    return AsyncRetrying(
        retry=retry_if_exception_type(Retryable),
        stop=stop,
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )


def _cause(state: RetryCallState) -> BaseException | None:
    """What made the attempt fail: the batch's error, or the first item's Retryable."""
    exc = state.outcome.exception() if state.outcome else None
    return exc.first if isinstance(exc, _ItemsToRetry) else exc
