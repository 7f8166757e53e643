"""The thin wrapper around stages: micro-batches, bounded concurrency, retries, timing.

A stage is `async (items) -> one result per item (a value or that item's exception)`; it
knows nothing of queues, retries or metrics. A `Lane` runs one stage: `concurrency` workers
each take a micro-batch (one worker collecting at a time) from the lane's bounded inbox (up
to `batch_messages`, waiting at most `batch_wait_seconds` to fill it), call the stage, and
hand every item to `on_done` or `on_failed`. `on_done` usually puts into the next lane's
bounded inbox, so a slow stage blocks the ones before it: that is the backpressure that
slows intake.

Retries (tenacity), per batch:
- a `Retryable` raised for the whole batch retries the batch; a `Retryable` returned for
  one item retries just the items that returned one;
- `Throttled.retry_after` is honoured; other waits back off exponentially with jitter,
  capped at `max_wait_seconds`;
- outages (`DatabaseUnavailable`, `SourceUnavailable`) and `Throttled` are retried without
  limit: they are no message's fault (and recording a failure needs the database anyway),
  so the pipeline pauses, the queues fill and intake waits;
- any other `Retryable` stops after `max_attempts`; the items still failing go to
  `on_failed` (recorded as `failed`, left in the queue);
- a batch of several items that fails as a whole (a poison message tripping a bug, a
  database constraint, or a server error for the whole request) is re-run item by item, so
  only the poison one fails and the rest go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from pipeline.errors import DatabaseUnavailable, Retryable, SourceUnavailable, Throttled
from pipeline.metrics import Metrics

In = TypeVar("In")
Out = TypeVar("Out")

log = logging.getLogger("emaillog.runner")

#: Retried until they pass: waiting is the only cure, and no message is to blame.
UNBOUNDED = (DatabaseUnavailable, SourceUnavailable, Throttled)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    max_wait_seconds: float


@dataclass(frozen=True, slots=True)
class Lane(Generic[In, Out]):
    """One stage, its inbox, its limits and where its items go next."""

    name: str
    inbox: asyncio.Queue[In]
    stage: Callable[[Sequence[In]], Awaitable[Sequence[Out | Exception]]]
    on_done: Callable[[In, Out], Awaitable[None]]
    on_failed: Callable[[In, Exception], Awaitable[None]]
    batch_messages: int
    batch_wait_seconds: float
    concurrency: int
    #: One worker fills a batch at a time. Otherwise a burst is split between every idle
    #: worker and batches come out a fraction of `batch_messages` (more EWS round trips).
    collecting: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False)


class _ItemsToRetry(Retryable):
    """Some items of a batch returned a Retryable: retry those (carries the first one)."""

    def __init__(self, first: Retryable) -> None:
        self.first = first
        super().__init__(str(first))


async def next_batch(inbox: asyncio.Queue[In], max_items: int, max_wait_seconds: float) -> list[In]:
    """Wait for one item, then take what arrives within `max_wait_seconds`, up to `max_items`."""
    batch = [await inbox.get()]
    deadline = asyncio.get_running_loop().time() + max_wait_seconds
    while len(batch) < max_items:
        try:
            batch.append(inbox.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            # Queue.get leaves the item in the queue if cancelled, so a timeout loses nothing.
            async with asyncio.timeout(remaining):
                batch.append(await inbox.get())
        except TimeoutError:
            break
    return batch


async def run_worker(lane: Lane[In, Out], policy: RetryPolicy, metrics: Metrics) -> None:
    """One of the lane's `concurrency` workers; runs until cancelled."""
    while True:
        async with lane.collecting:
            batch = await next_batch(lane.inbox, lane.batch_messages, lane.batch_wait_seconds)
        started = time.perf_counter()
        results = await run_batch(lane.name, lane.stage, batch, policy, metrics)
        metrics.stage_duration.labels(lane.name).observe(time.perf_counter() - started)
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                await lane.on_failed(item, result)
            else:
                await lane.on_done(item, result)


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
            extra={"fields": {"stage": name, "items": len(batch), "error": _describe(exc)}},
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
    backoff = wait_random_exponential(multiplier=0.2, max=policy.max_wait_seconds)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _ItemsToRetry):
            exc = exc.first
        if isinstance(exc, UNBOUNDED):
            return False
        return state.attempt_number >= policy.max_attempts

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _ItemsToRetry):
            exc = exc.first
        if isinstance(exc, Throttled):
            return max(exc.retry_after, 0.0)
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        metrics.retries.labels(name).inc()
        cause = exc.first if isinstance(exc, _ItemsToRetry) else exc
        log.warning(
            "retrying",
            extra={
                "fields": {
                    "stage": name,
                    "attempt": state.attempt_number,
                    "items": len(pending),
                    "error": _describe(cause),
                }
            },
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(Retryable),
        stop=stop,
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
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
    return [results[i] for i in range(len(batch))]


def _describe(exc: BaseException | None) -> str:
    return "" if exc is None else f"{type(exc).__name__}: {exc}"
