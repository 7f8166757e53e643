"""The flow of a queue item, top-down: the stages as data, and the loop that runs them.

    intake ─▶ fetch ─▶ classify ─▶ dedupe ─┬─ claimed ─▶ move ─▶ store ─▶ end (logged)
                                           └─ otherwise ──────▶ dispose ─▶ end

`topology()` is the whole picture in one block: each `Stage` names its step (a function in
`pipeline/stages/`, its dependencies bound here), its batch size, its concurrency and its
route out (the next stage, or `END`). Everything else is generic:

- each stage has one bounded inbox (EMAILLOG_STAGE_QUEUE_MESSAGES); a worker takes a
  micro-batch from it (sized by load, `runner.next_batch`: it waits to fill a batch only
  while another of the stage's batches is in progress, or, at the first stage, while a busy
  pipeline brings mail fast), runs the step with retries (`runner.run_batch`) and hands each
  result to the stage its route names, so a slow stage fills its inbox and blocks the ones
  before it: that backpressure reaches intake, which also waits for an in-flight slot;
- an item that reaches `END` is finished by the ledger; an item whose step returned an
  exception is failed by the ledger (or let go when the item is gone). The ledger is the
  only accounting path (`pipeline/ledger.py`).

Concurrency follows the limits already there: mail-server stages run as many batches as
the source has worker threads (EMAILLOG_EWS_WORKER_THREADS), database stages half of
EMAILLOG_DB_POOL_CONNECTIONS each (two of them share the pool), classify one (pure CPU).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from typing import Any

from pipeline.config import Settings
from pipeline.directory import Directory, Template
from pipeline.errors import ItemGone
from pipeline.ledger import Ledger
from pipeline.logs import get_logger
from pipeline.metrics import Metrics
from pipeline.model import Disposal, Mail, MailRef
from pipeline.rules import Policy
from pipeline.runner import Busy, Pace, RetryPolicy, next_batch, run_batch
from pipeline.setup_check import email_template
from pipeline.sources import MailSource
from pipeline.stages import Decided, Tracked
from pipeline.stages.classify import classify
from pipeline.stages.dedupe import dedupe_and_claim
from pipeline.stages.dispose import dispose
from pipeline.stages.fetch import fetch
from pipeline.stages.move import move_to_storage
from pipeline.stages.store import record_storage

log = get_logger(__name__)

#: The route of an item whose story is over: the ledger finishes it.
END = "end"

Step = Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: its step, its limits, and where each of its results goes next."""

    name: str
    step: Step
    _: KW_ONLY
    batch_messages: int
    concurrency: int
    route: Callable[[Any], str]
    #: Wait the whole batch wait to fill a batch while other messages are in flight (the
    #: stage where messages arrive one at a time: `runner.next_batch`).
    fill_when_busy: bool = False


def then(name: str) -> Callable[[object], str]:
    """A route that sends every result to the same place."""
    return lambda _: name


def claimed_or_not(decided: Decided) -> str:
    """After the journal's decision: claimed messages go to storage, the rest are disposed of."""
    return "move" if decided.to_storage else "dispose"


@dataclass(frozen=True, slots=True)
class Deps:
    """What the steps need, bound once."""

    source: MailSource
    ledger: Ledger
    directory: Callable[[], Directory]
    policy: Policy
    template_code: str
    disposal: Disposal

    def template(self) -> Template:
        """The e-mail interaction template (EMAILLOG_EMAIL_TEMPLATE_CODE) of the current
        directory; `SetupIncomplete` (waited out by the runner) when it is not set up."""
        return email_template(self.directory(), self.template_code)


def topology(deps: Deps, settings: Settings) -> tuple[Stage, ...]:
    """The stages in flow order; the first takes the arrivals."""
    limits = settings.limits
    mail_server = settings.source.ews.worker_threads  # a mail-server batch holds a thread
    database = max(1, settings.database.pool_connections // 2)  # two stages share the pool
    source, ledger = deps.source, deps.ledger
    return (
        Stage(
            "fetch",
            partial(fetch, source=source),
            batch_messages=limits.fetch_batch_messages,
            concurrency=mail_server,
            route=then("classify"),
            fill_when_busy=True,
        ),
        Stage(
            "classify",
            partial(classify, directory=deps.directory, policy=deps.policy),
            batch_messages=limits.fetch_batch_messages,
            concurrency=1,
            route=then("dedupe"),
        ),
        Stage(
            "dedupe",
            partial(dedupe_and_claim, ledger=ledger, template=deps.template),
            batch_messages=limits.store_batch_messages,
            concurrency=database,
            route=claimed_or_not,
        ),
        Stage(
            "move",
            partial(move_to_storage, source=source),
            batch_messages=limits.move_batch_messages,
            concurrency=mail_server,
            route=then("store"),
        ),
        Stage(
            "store",
            partial(record_storage, ledger=ledger),
            batch_messages=limits.store_batch_messages,
            concurrency=database,
            route=then(END),
        ),
        Stage(
            "dispose",
            partial(dispose, source=source, configured=deps.disposal),
            batch_messages=limits.move_batch_messages,
            concurrency=mail_server,
            route=then(END),
        ),
    )


@dataclass
class Flow:
    """Runs a topology: one bounded inbox per stage, its workers, intake, and the ends."""

    stages: tuple[Stage, ...]
    ledger: Ledger
    metrics: Metrics
    retry: RetryPolicy
    inbox_messages: int
    batch_wait_seconds: float
    #: Each item with the time.perf_counter() it was put in (its wait is measured).
    inboxes: dict[str, asyncio.Queue[tuple[float, Any]]] = field(init=False)
    #: One worker of a stage fills a batch at a time. Otherwise a burst is split between
    #: every idle worker and batches come out a fraction of `batch_messages`.
    collecting: dict[str, asyncio.Lock] = field(init=False)
    busy: dict[str, Busy] = field(init=False)
    pace: Pace = field(init=False)

    def __post_init__(self) -> None:
        self.inboxes = {s.name: asyncio.Queue(self.inbox_messages) for s in self.stages}
        self.collecting = {s.name: asyncio.Lock() for s in self.stages}
        self.pace = Pace()  # of arrivals
        self.busy = {s.name: Busy(lambda: len(self.ledger), self.pace) for s in self.stages}

    def workers(self) -> list[Coroutine[Any, Any, None]]:
        """Every stage's workers, to be run as tasks until cancelled."""
        return [self._work(s) for s in self.stages for _ in range(s.concurrency)]

    async def take_in(self, source: MailSource, gate: asyncio.Event | None = None) -> None:
        """Admit each arrival (waiting while the in-flight cap is reached, and while `gate`
        is closed) into the first stage; skip repeats of items in flight and items that
        failed this run."""
        first = self.inboxes[self.stages[0].name]
        async for ref in source.arrivals():
            if gate is not None:
                await gate.wait()  # setup incomplete: the item waits in the queue
            if ref.item_id in self.ledger.failed_ids or not await self.ledger.admit(ref.item_id):
                continue
            self.pace.arrived()
            try:
                await self._put(first, ref)
            except BaseException:
                self.ledger.let_go(ref.item_id, "intake stopped")
                raise

    async def _put(self, inbox: asyncio.Queue[tuple[float, Any]], item: Any) -> None:
        await inbox.put((time.perf_counter(), item))

    async def _work(self, stage: Stage) -> None:
        inbox, busy = self.inboxes[stage.name], self.busy[stage.name]
        waited = self.metrics.message_stage.labels(stage.name, "wait")
        worked = self.metrics.message_stage.labels(stage.name, "work")
        while True:
            async with self.collecting[stage.name]:
                stamped = await next_batch(
                    inbox,
                    stage.batch_messages,
                    self.batch_wait_seconds,
                    busy,
                    fill=stage.fill_when_busy,
                )
            started = time.perf_counter()
            batch = [item for _, item in stamped]
            busy.started()
            try:
                results = await run_batch(stage.name, stage.step, batch, self.retry, self.metrics)
            finally:
                busy.finished()
            took = time.perf_counter() - started
            self.metrics.stage_duration.labels(stage.name).observe(took)
            for put_at, _ in stamped:
                waited.observe(started - put_at)
                worked.observe(took)
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    await self._failed(item, result)
                    continue
                to = stage.route(result)
                if to == END:
                    self._end(result)
                else:
                    await self._put(self.inboxes[to], result)

    def _end(self, item: Decided) -> None:
        self.ledger.finish(
            item.ref.item_id, item.recorded, item.message_id_hash, item.ref.received_at
        )

    async def _failed(self, item: MailRef | Tracked, exc: Exception) -> None:
        ref, mail = _ref_and_mail(item)
        if isinstance(exc, ItemGone):
            # Someone else handled it (or a repeated arrival of a message we disposed of). A
            # logged one whose move found it gone stays 'moving' for the reconciler.
            self.ledger.let_go(ref.item_id, "gone from the queue")
            return
        await self.ledger.fail(ref.item_id, mail, exc)


def _ref_and_mail(item: MailRef | Tracked) -> tuple[MailRef, Mail | None]:
    """Any stage's input: a bare queue item (fetch's) or an item that carries its message."""
    return (item, None) if isinstance(item, MailRef) else (item.ref, item.mail)
