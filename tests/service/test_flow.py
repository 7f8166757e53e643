"""The service over the in-memory source: routing of every rule, backpressure, drain,
failures, and the accounting invariant, fast and with no HTTP to the mail side.

`MemorySource` is the test double (pipeline/sources/memory.py); PostgreSQL is real. The EWS
adapter end to end is tested in test_e2e.py and tests/reliability/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from pipeline.config import Settings
from pipeline.errors import Permanent, SourceUnavailable, Throttled
from pipeline.metrics import Metrics
from pipeline.model import MailRef, Outcome
from pipeline.service import serve
from pipeline.sources.memory import MemorySource
from tests.service.harness import (
    BOSS,
    BUYER,
    MAILBOX,
    OTHER,
    OTHER_HOME,
    SALES,
    STRANGER,
    WAIT_SECONDS,
    mime,
    service_settings,
)

AUDIT = "Audit"


def memory_settings(db: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"retry_max_wait_seconds": 0.2, "reconcile_interval_seconds": 3600}
    values.update(overrides)
    return service_settings(db, **values)


class Running:
    """A `serve()` task over a memory source, and what a test asks of it."""

    def __init__(self, task: asyncio.Task[None], metrics: Metrics, stop: asyncio.Event) -> None:
        self.task, self.metrics, self.stop = task, metrics, stop

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def counts(self) -> dict[str, int]:
        return {
            o.value: int(self.value("emaillog_messages_total", {"outcome": o.value}))
            for o in Outcome
        }

    def total(self) -> int:
        return sum(self.counts().values())

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while not condition():
                if self.task.done():
                    self.task.result()
                    raise AssertionError(f"service stopped before {what}")
                await asyncio.sleep(0.01)


@asynccontextmanager
async def running(settings: Settings, source: MemorySource) -> AsyncIterator[Running]:
    metrics = Metrics()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, shutdown=stop.wait, metrics=metrics, source=source))
    service = Running(task, metrics, stop)
    try:
        yield service
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_SECONDS):
            await task


async def disposal_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT outcome, count(*) AS n FROM disposal_log GROUP BY outcome")
    finally:
        await conn.close()
    counts = {o.value: 0 for o in Outcome}
    counts.update({r["outcome"]: r["n"] for r in rows})
    return counts


def minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def draft(raw: bytes) -> bytes:
    return b"X-Unsent: 1\r\n" + raw


async def test_every_rule_is_routed_to_its_end_and_counted_once(db: str) -> None:
    source = MemorySource(MAILBOX, disposal_folder=AUDIT)
    settings = memory_settings(db, never_log="blocked.test", disposal=f"move:{AUDIT}")
    messages = {
        "outbound": mime(sender=SALES, to=f"{BUYER}, {OTHER}", subject="Offer"),
        "inbound": mime(sender=OTHER_HOME, to=f"{SALES}, {BOSS}"),
        "sensitive": mime(sender=SALES, to=BUYER, sensitivity="Private"),
        "excluded": mime(sender=SALES, to=f"{BUYER}, someone@blocked.test"),
        "draft": (draft(mime(sender=SALES, to=BUYER)[0]), None),
        "no_parties": mime(sender=SALES, to=None),
        "address_too_long": mime(sender=STRANGER, to="x@" + "d" * 80 + ".test"),
        "unregistered": mime(sender=STRANGER, to=BUYER),
    }
    async with running(settings, source) as service:
        for raw, _ in messages.values():
            source.deliver(raw)
        await service.until(lambda: service.total() == len(messages), "all decided")
        # Rule 3: a later copy of a logged message.
        source.deliver(mime(sender=SALES, to=BUYER, message_id=messages["outbound"][1])[0])
        await service.until(lambda: service.total() == len(messages) + 1, "the copy decided")
        await service.until(lambda: not source.queue(), "the queue emptied")

        counts = service.counts()
        assert counts == {
            "logged": 2,
            "sensitive": 1,
            "excluded": 1,
            "draft": 1,
            "no_parties": 1,
            "duplicate": 1,
            "address_too_long": 1,
            "unregistered": 1,
            "failed": 0,
        }
        assert service.value("emaillog_interactions_logged_total") == 4
        assert service.value("emaillog_in_flight_messages") == 0
    assert counts == await disposal_counts(db)
    logged = {messages["outbound"][1], messages["inbound"][1]}
    assert {m.message_id for m in source.storage().values()} == logged
    # Disposed of into the audit folder, except the sensitive one: always hard-deleted.
    assert len(source.folder(AUDIT)) == 6
    assert source.trash() == {}
    assert "Private" not in repr(source.folder(AUDIT))


async def test_intake_waits_at_the_in_flight_cap(db: str) -> None:
    source = MemorySource(MAILBOX)
    settings = memory_settings(db, max_in_flight_messages=3, fetch_batch_messages=2)
    source.hold("fetch")
    async with running(settings, source) as service:
        for _ in range(10):
            source.deliver(mime(sender=SALES, to=BUYER)[0])
        await service.until(lambda: source.held("fetch") >= 1, "a fetch waits")
        await service.until(lambda: service.value("emaillog_in_flight_messages") == 3, "cap")
        for _ in range(20):  # intake gets every chance to overshoot; it must not
            await asyncio.sleep(0)
        assert service.value("emaillog_in_flight_messages") == 3
        assert len(source.queue()) == 10
        source.release("fetch")
        await service.until(lambda: service.counts()["logged"] == 10, "all logged")
        assert service.value("emaillog_in_flight_limit_messages") == 3


async def test_shutdown_drains_what_is_in_flight(db: str) -> None:
    source = MemorySource(MAILBOX)
    source.hold("move")
    async with running(memory_settings(db), source) as service:
        for _ in range(5):
            source.deliver(mime(sender=SALES, to=BUYER)[0])
        await service.until(lambda: source.held("move") >= 1, "the moves wait")
        service.stop.set()  # shutdown while five claimed messages wait to be moved
        await asyncio.sleep(0.05)
        assert not service.task.done()  # draining, not cut short
        source.release("move")
        await service.task
        assert service.counts()["logged"] == 5
    assert source.queue() == {} and len(source.storage()) == 5


async def test_a_poison_message_fails_alone_and_outages_are_waited_out(db: str) -> None:
    source = MemorySource(MAILBOX)
    settings = memory_settings(db, retry_max_attempts=2)
    poison = source.deliver(mime(sender=SALES, to=BUYER)[0])
    source.fail_item(poison.item_id, "fetch", Permanent("poison"))
    # More whole-call outages than attempts: they are no message's fault.
    source.fail_next("move", Throttled("busy", 0.01), times=3)
    source.fail_next("dispose", SourceUnavailable("down"), times=3)
    async with running(settings, source) as service:
        for _ in range(3):
            source.deliver(mime(sender=SALES, to=BUYER)[0])
        for _ in range(2):
            source.deliver(mime(sender=STRANGER, to=BUYER)[0])
        await service.until(lambda: service.total() == 6, "all accounted for")
        await service.until(lambda: len(source.queue()) == 1, "only the poison left")
        counts = service.counts()
        assert (counts["logged"], counts["unregistered"], counts["failed"]) == (3, 2, 1)
        assert service.value("emaillog_retries_total", {"stage": "move"}) >= 3
        assert service.value("emaillog_retries_total", {"stage": "dispose"}) >= 3
        assert service.value("emaillog_upstream_throttled_total") == 0  # no SourceEvents hook
    assert list(source.queue()) == [poison.item_id]
    assert counts == await disposal_counts(db)


async def test_metrics_equal_the_disposal_log_with_reconciled_items(db: str) -> None:
    """A run cut short by its drain timeout leaves claims 'moving'; the next run's
    reconciler finishes them. Each run's metrics equal the rows that run wrote."""
    source = MemorySource(MAILBOX)
    settings = memory_settings(db, drain_timeout_seconds=0.2)
    source.hold("move")
    before = await disposal_counts(db)
    async with running(settings, source) as first:
        logged = [source.deliver(mime(sender=SALES, to=BUYER)[0]) for _ in range(4)]
        for raw in (
            mime(sender=STRANGER, to=BUYER)[0],
            mime(sender=SALES, sensitivity="Private")[0],
        ):
            source.deliver(raw)
        await first.until(lambda: first.total() == 2, "the others disposed of")
        await first.until(lambda: source.held("move") >= 1, "the claims wait for their move")
    after_first = await disposal_counts(db)
    assert first.counts() == minus(after_first, before)
    assert first.counts()["logged"] == 0 and len(source.queue()) == 4

    # As if the crash came after one move: that message is in storage, its link unrecorded.
    source.release("move")
    await source.open()
    moved = await source.move_to_storage([MailRef(logged[0].item_id)])
    await source.close()
    assert not isinstance(moved[0], Exception)
    async with running(settings, source) as second:
        await second.until(lambda: second.counts()["logged"] == 4, "the claims finished")
    assert second.counts() == minus(await disposal_counts(db), after_first)
    assert source.queue() == {} and len(source.storage()) == 4
