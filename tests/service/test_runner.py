"""The lane runner: micro-batches, per-item and whole-batch retries, poison isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pipeline.errors import DatabaseUnavailable, ItemGone, Retryable, SourceUnavailable
from pipeline.metrics import Metrics
from pipeline.runner import Busy, Pace, RetryPolicy, next_batch, run_batch

POLICY = RetryPolicy(max_attempts=3, max_wait_seconds=0.01)


async def test_next_batch_takes_what_is_there_up_to_the_limit() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    for i in range(7):
        inbox.put_nowait(i)
    assert await next_batch(inbox, 5, 0.0) == [0, 1, 2, 3, 4]
    assert await next_batch(inbox, 5, 0.0) == [5, 6]


#: Long enough that a batch which waited for it would fail the test's own timeout.
FOREVER = 60.0


def paced(gap_seconds: float) -> Pace:
    pace = Pace()
    pace.gap_seconds = gap_seconds
    return pace


async def test_an_idle_stage_never_waits_to_fill_a_batch() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    inbox.put_nowait(1)
    async with asyncio.timeout(5):
        assert await next_batch(inbox, 5, FOREVER, Busy()) == [1]


async def test_a_busy_stage_fills_until_its_running_batch_ends() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    busy = Busy()
    busy.started()
    inbox.put_nowait(1)
    collecting = asyncio.create_task(next_batch(inbox, 5, FOREVER, busy))
    await asyncio.sleep(0)
    inbox.put_nowait(2)  # arrives while the other batch runs: joins this one
    await asyncio.sleep(0)
    busy.finished()  # the running batch ends: this one goes, not after FOREVER
    async with asyncio.timeout(5):
        assert await collecting == [1, 2]


async def test_the_first_stage_fills_while_the_pipeline_is_busy_and_mail_comes_fast() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    busy = Busy(in_flight=lambda: 3, pace=paced(0.001))  # others in flight, 1 ms apart
    inbox.put_nowait(1)
    collecting = asyncio.create_task(next_batch(inbox, 3, FOREVER, busy, fill=True))
    for item in (2, 3):
        await asyncio.sleep(0.01)  # no batch of the stage runs: still waits to fill
        inbox.put_nowait(item)
    async with asyncio.timeout(5):
        assert await collecting == [1, 2, 3]  # full: goes


async def test_the_first_stage_does_not_wait_for_mail_that_comes_slowly() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    inbox.put_nowait(1)
    slow = Busy(in_flight=lambda: 3, pace=paced(FOREVER * 2))
    alone = Busy(in_flight=lambda: 1, pace=paced(0.001))
    async with asyncio.timeout(5):
        assert await next_batch(inbox, 3, FOREVER, slow, fill=True) == [1]
        inbox.put_nowait(2)
        assert await next_batch(inbox, 3, FOREVER, alone, fill=True) == [2]


def test_pace_is_a_moving_mean_of_the_gaps() -> None:
    pace = Pace()
    pace.arrived(10.0)
    assert pace.gap_seconds == float("inf")  # one arrival has no gap yet
    pace.arrived(10.1)
    assert pace.gap_seconds == pytest.approx(0.1)
    pace.arrived(11.1)  # a gap of 1 s moves the mean a tenth of the way
    assert pace.gap_seconds == pytest.approx(0.1 + Pace.WEIGHT * (1.0 - 0.1))


async def test_only_items_that_returned_a_retryable_are_retried() -> None:
    calls: list[list[int]] = []

    async def stage(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        # Item 2 fails transiently once; item 3 is gone for good.
        return [
            Retryable("busy") if i == 2 and len(calls) == 1 else ItemGone("x") if i == 3 else i * 10
            for i in items
        ]

    metrics = Metrics()
    results = await run_batch("fetch", stage, [1, 2, 3], POLICY, metrics)

    assert calls == [[1, 2, 3], [2]]
    assert results[:2] == [10, 20] and isinstance(results[2], ItemGone)
    assert metrics.registry.get_sample_value("emaillog_retries_total", {"stage": "fetch"}) == 1


async def test_an_item_still_failing_after_max_attempts_keeps_its_error() -> None:
    async def stage(items: Sequence[int]) -> list[int | Exception]:
        return [Retryable("always") if i == 2 else i for i in items]

    results = await run_batch("move", stage, [1, 2], POLICY, Metrics())

    assert results[0] == 1 and isinstance(results[1], Retryable)


async def test_a_batch_failing_as_a_whole_is_rerun_item_by_item() -> None:
    async def stage(items: Sequence[int]) -> list[int | Exception]:
        if 13 in items:
            raise ValueError("poison")
        return list(items)

    results = await run_batch("classify", stage, [1, 13, 2], POLICY, Metrics())

    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ValueError)


async def test_a_database_outage_is_retried_beyond_max_attempts() -> None:
    attempts = 0

    async def stage(items: Sequence[int]) -> list[int | Exception]:
        nonlocal attempts
        attempts += 1
        if attempts <= POLICY.max_attempts + 2:
            raise DatabaseUnavailable("restarting")
        return list(items)

    assert await run_batch("dedupe", stage, [1, 2], POLICY, Metrics()) == [1, 2]
    assert attempts == POLICY.max_attempts + 3


async def test_outage_items_of_a_batch_outlive_a_poison_neighbour() -> None:
    """Issue 11: the poison item's bounded error ends its attempts; the items that only met
    an outage (ErrorBatchProcessingStopped after it, say) keep being retried, never failed."""
    outage_left = {"b": 6}  # more outages than attempts

    async def stage(items: Sequence[str]) -> list[str | Exception]:
        out: list[str | Exception] = []
        for item in items:
            if item == "poison":
                out.append(Retryable("poison"))
            elif outage_left.get(item, 0) > 0:
                outage_left[item] -= 1
                out.append(SourceUnavailable("stopped batch"))
            else:
                out.append(item.upper())
        return out

    policy = RetryPolicy(max_attempts=3, max_wait_seconds=0.01)
    results = await run_batch("fetch", stage, ["poison", "b", "c"], policy, Metrics())
    assert isinstance(results[0], Retryable)
    assert results[1:] == ["B", "C"]
