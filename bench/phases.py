"""The four measured phases. Each starts its own exchange_sim process and a fresh journal.

Timing rules (stated once, applied everywhere):
- drain: from the moment `emaillog run` is spawned until the benchmark sees every message
  recorded in disposal_log AND the queue folder empty (polled every POLL_SECONDS). Start-up
  (imports, pool, directory load, subscribe) is therefore inside the figure; it is also
  reported on its own, with the rate measured from /readyz = 200.
- steady: per message, disposal_log.disposed_at minus the wall-clock time just before its
  delivery POST. disposed_at is the commit's transaction time: for logged messages after the
  move to storage, for the others after the decision is committed and just before their
  DeleteItem (one round trip early; the queue-empty check bounds that).
- baseline and client limit: the processing loop only; connecting and resolving folders
  is not timed (in their favour).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import db
from bench.baseline import run_baseline
from bench.client_limit import run_client_limit
from bench.corpus import BenchMessage
from bench.procs import QUEUE_FOLDER, STORAGE_FOLDER, ProcStats, ServiceProcess, SimProcess
from pipeline.config import Settings
from pipeline.directory import Directory

POLL_SECONDS = 0.025
#: After the last steady delivery, how long the service may take to catch up and still
#: count as having kept up.
KEPT_UP_WITHIN_SECONDS = 5.0

EnvFor = Callable[[SimProcess], tuple[dict[str, str], int]]
#: One step of the knee search (bench/knee.py): deliver at a rate, say how it went.
StepFn = Callable[[float], Awaitable[Any]]


@dataclass
class DrainResult:
    seconds: float = 0.0
    startup_seconds: float = 0.0
    after_ready_seconds: float = 0.0
    disposals: db.Disposals | None = None
    queue_left: int = -1
    ready: ProcStats | None = None
    end: ProcStats | None = None
    metrics_total: int = -1
    exit_code: int | None = None
    timed_out: bool = False
    ews_requests: int = 0


@dataclass
class SteadyResult:
    sent: int = 0
    send_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    backlog_at_stop: int = 0
    caught_up_after_stop_s: float | None = None
    disposals: db.Disposals | None = None
    queue_left: int = -1
    end: ProcStats | None = None
    exit_code: int | None = None
    cpu_seconds: float = 0.0  # the service's, while the messages were being sent
    ews_requests: int = 0  # from the first delivery until caught up
    metrics: str = ""  # the service's /metrics once caught up


@dataclass
class Context:
    settings: Settings
    pool: asyncpg.Pool
    directory: Directory
    env_for: EnvFor
    latency_ms: float
    logs: Path
    # The simulator process class (bench/graph.py passes one that answers with Graph ids).
    sim_class: type[SimProcess] = SimProcess


async def drain(ctx: Context, messages: list[BenchMessage]) -> DrainResult:
    await db.reset_journal(ctx.pool)
    result = DrainResult()
    async with ctx.sim_class(
        ctx.settings.source.ews.mailbox, ctx.latency_ms, ctx.logs / "sim-drain.log"
    ) as sim:
        await sim.deliver_all(messages)
        requests_before = await sim.requests_served()
        env, port = ctx.env_for(sim)
        service = ServiceProcess(env, port, ctx.logs / "service-drain.log")
        try:
            await service.start()
            result.ready = service.ready_stats
            n = len(messages)
            deadline = time.monotonic() + 120 + n / 20
            while True:
                if await db.disposed_count(ctx.pool) >= n and await sim.count(QUEUE_FOLDER) == 0:
                    end_at = time.time()
                    break
                if time.monotonic() > deadline:
                    end_at = time.time()
                    result.timed_out = True
                    break
                await asyncio.sleep(POLL_SECONDS)
            result.end = service.stats()
            result.ews_requests = await sim.requests_served() - requests_before
            result.metrics_total = _messages_total(await service.metrics())
            result.seconds = end_at - service.started_at
            result.startup_seconds = service.ready_at - service.started_at
            result.after_ready_seconds = end_at - service.ready_at
        finally:
            result.exit_code = await service.stop()
        result.queue_left = await sim.count(QUEUE_FOLDER)
    result.disposals = await db.disposals(ctx.pool)
    return result


async def steady(ctx: Context, messages: list[BenchMessage], rate: float) -> SteadyResult:
    await db.reset_journal(ctx.pool)
    result = SteadyResult()
    async with ctx.sim_class(
        ctx.settings.source.ews.mailbox, ctx.latency_ms, ctx.logs / "sim-steady.log"
    ) as sim:
        env, port = ctx.env_for(sim)
        service = ServiceProcess(env, port, ctx.logs / "service-steady.log")
        try:
            await service.start()
            requests_before = await sim.requests_served()
            cpu_before = service.stats().cpu_seconds
            delivered_at, result.send_seconds = await send_at_rate(sim, messages, rate)
            result.cpu_seconds = service.stats().cpu_seconds - cpu_before
            result.sent = len(delivered_at)
            result.backlog_at_stop = result.sent - await db.disposed_count(ctx.pool)
            result.caught_up_after_stop_s = await caught_up(ctx.pool, sim, result.sent)
            result.ews_requests = await sim.requests_served() - requests_before
            result.end = service.stats()
            result.metrics = await service.metrics()
        finally:
            result.exit_code = await service.stop()
        result.queue_left = await sim.count(QUEUE_FOLDER)
    result.latencies_ms = await latencies_ms(ctx.pool, delivered_at)
    result.disposals = await db.disposals(ctx.pool)
    return result


async def send_at_rate(
    sim: SimProcess, messages: list[BenchMessage], rate: float
) -> tuple[dict[str, float], float]:
    """Deliver `messages` at `rate` a second; (item id -> time.time() just before its
    delivery, seconds the sending took)."""
    delivered_at: dict[str, float] = {}

    async def deliver(message: BenchMessage) -> None:
        at = time.time()
        delivered_at[await sim.deliver(message.raw)] = at

    loop = asyncio.get_running_loop()
    first = loop.time()
    async with asyncio.TaskGroup() as tg:
        for i, message in enumerate(messages):
            delay = first + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tg.create_task(deliver(message))
    return delivered_at, loop.time() - first


async def caught_up(pool: asyncpg.Pool, sim: SimProcess, total: int) -> float | None:
    """Seconds until `total` messages are disposed of and the queue is empty (None: not
    within the limit)."""
    stopped_at = time.time()
    deadline = time.monotonic() + 30 + total / 20
    while time.monotonic() < deadline:
        if await db.disposed_count(pool) >= total and await sim.count(QUEUE_FOLDER) == 0:
            return time.time() - stopped_at
        await asyncio.sleep(POLL_SECONDS)
    return None


async def latencies_ms(pool: asyncpg.Pool, delivered_at: dict[str, float]) -> list[float]:
    """Delivery to disposal of each delivered message that was disposed of, ascending."""
    disposed = await db.disposal_times(pool)
    return sorted(
        (disposed[item_id] - at) * 1000
        for item_id, at in delivered_at.items()
        if item_id in disposed
    )


@dataclass(frozen=True, slots=True)
class BaselinePhase:
    seconds: float
    outcomes: dict[str, int]
    queue_left: int
    stored: int


async def baseline(ctx: Context, messages: list[BenchMessage]) -> BaselinePhase:
    await db.reset_journal(ctx.pool)
    async with SimProcess(
        ctx.settings.source.ews.mailbox, ctx.latency_ms, ctx.logs / "sim-baseline.log"
    ) as sim:
        ids = await sim.deliver_all(messages)
        env, _ = ctx.env_for(sim)
        settings = Settings.from_env(env)
        result = await run_baseline(settings, ctx.pool, ctx.directory, ids)
        queue_left = await sim.count(QUEUE_FOLDER)
        stored = await sim.count(STORAGE_FOLDER)
    return BaselinePhase(result.seconds, result.outcomes, queue_left, stored)


@dataclass(frozen=True, slots=True)
class ClientLimitPhase:
    seconds: float
    fetched: int
    moved: int
    stored: int
    ews_requests: int
    cpu_seconds: float = 0.0  # the bare client's thread CPU (0: not measured)


async def client_limit(ctx: Context, messages: list[BenchMessage]) -> ClientLimitPhase:
    async with SimProcess(
        ctx.settings.source.ews.mailbox, ctx.latency_ms, ctx.logs / "sim-client.log"
    ) as sim:
        ids = await sim.deliver_all(messages)
        env, _ = ctx.env_for(sim)
        requests_before = await sim.requests_served()
        result = await asyncio.to_thread(run_client_limit, Settings.from_env(env), ids)
        requests = await sim.requests_served() - requests_before
        stored = await sim.count(STORAGE_FOLDER)
    return ClientLimitPhase(
        result.seconds, result.fetched, result.moved, stored, requests, result.cpu_seconds
    )


_TOTAL = re.compile(r'^emaillog_messages_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)


def _messages_total(text: str) -> int:
    """Sum of emaillog_messages_total over the non-failed outcomes."""
    return int(sum(float(v) for outcome, v in _TOTAL.findall(text) if outcome != "failed"))


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]
