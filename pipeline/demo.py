"""`emaillog demo`: the real service against an in-process Exchange simulator, on demo data.

    1. the embedded PostgreSQL under EMAILLOG_DATA_DIR/demo, emptied (same counts every run)
    2. the demo directory (pipeline/demo_data.py) through the product's CSV import
    3. exchange_sim with the queue mailbox; some samples wait in the queue (catch-up)
    4. `serve()` with the EWS source; once it is subscribed, the rest arrive (streaming)
    5. a live per-outcome view from disposal_log, until every sample is disposed of and the
       service's metrics registry agrees with disposal_log
    6. a summary: outcomes, each sample's fate, the interaction log entries, and a check
       that the storage folder holds exactly the logged messages the journal points at

Then the service keeps running (metrics URL printed) until Ctrl-C, or with
`--exit-when-drained` it stops and prints the per-outcome counts as one JSON object on the
last line of stdout. Exit 1 when the result differs from what demo_data expects.

The demo never touches EMAILLOG_DATABASE_URL: it empties its database on every run, so it
always uses its own embedded server in a directory of its own. exchange_sim is imported
lazily here and nowhere else in pipeline/: the service does not depend on the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import asyncpg

from pipeline.cli_support import configure_command_logging
from pipeline.config import Settings
from pipeline.demo_data import (
    MAILBOX,
    NEVER_LOG,
    QUEUE_FOLDER,
    SAMPLES,
    STORAGE_FOLDER,
    TEMPLATE_CODE,
    Sample,
    expected_counts,
    expected_entries,
    write_directory_csv,
)
from pipeline.errors import EmailLogError
from pipeline.mailparse import parse_mime
from pipeline.metrics import Metrics
from pipeline.model import Outcome
from pipeline.service import serve
from pipeline.store.db import open_database
from pipeline.store.directory_repo import KINDS, import_csv
from pipeline.store.journal import message_id_hash

if TYPE_CHECKING:  # for annotations only; the runtime import is lazy (see _run)
    from exchange_sim import Simulator

#: How often the live view reads disposal_log and the metrics registry.
REFRESH_SECONDS = 0.2
#: Pause between live deliveries, so the view visibly follows the stream.
LIVE_DELIVERY_GAP_SECONDS = 0.3
#: Safety nets: a broken setup ends the demo with an explanation instead of hanging it.
SUBSCRIBE_WAIT_SECONDS = 60.0
DRAIN_WAIT_SECONDS = 120.0

OUTCOMES = tuple(outcome.value for outcome in Outcome)

Say = Callable[[str], None]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the service on demo data against a built-in Exchange simulator",
        description="Start the embedded PostgreSQL and exchange_sim, load a demo directory, "
        "deliver sample messages covering every outcome, run the service and show its "
        "progress, then a summary. The demo empties its own database (EMAILLOG_DATA_DIR/demo) "
        "on every run and ignores EMAILLOG_DATABASE_URL. The service then keeps running "
        "until Ctrl-C.",
    )
    parser.add_argument(
        "--exit-when-drained",
        action="store_true",
        help="stop after the summary and print the per-outcome counts as one JSON object "
        "on the last line of stdout",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    configure_command_logging(settings)
    return asyncio.run(_run(settings, exit_when_drained=args.exit_when_drained, out=sys.stdout))


# --- settings -------------------------------------------------------------------------------


def demo_settings(settings: Settings, ews_url: str) -> Settings:
    """The user's settings, pointed at the demo database, simulator, folders and policy."""
    return dataclasses.replace(
        settings,
        database_url="",
        data_dir=settings.data_dir / "demo",
        ews_url=ews_url,
        ews_mailbox=MAILBOX,
        ews_auth="none",
        queue_folder=QUEUE_FOLDER,
        storage_folder=STORAGE_FOLDER,
        disposal="delete",
        never_log=NEVER_LOG,
        include_cc=False,
        email_template_code=TEMPLATE_CODE,
        http_host="127.0.0.1",
        http_port=_usable_port(settings.http_port),
    )


def _usable_port(preferred: int) -> int:
    """`preferred` if it can be bound on 127.0.0.1 now, else a free port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = probe.getsockname()[1]
            return bound
    raise EmailLogError("no free TCP port on 127.0.0.1 for the demo's HTTP server")


# --- the run --------------------------------------------------------------------------------


@dataclass
class _Deliveries:
    done: int = 0


async def _run(settings: Settings, *, exit_when_drained: bool, out: TextIO) -> int:
    try:
        from exchange_sim import Simulator
    except ImportError as exc:
        raise EmailLogError(
            f"emaillog demo needs the simulator's dependencies ({exc}): "
            "pip install 'emaillog[dev]' (make demo does)"
        ) from exc

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if settings.database_url:
        print(
            "note: the demo ignores EMAILLOG_DATABASE_URL; it empties its own embedded "
            "database on every run",
            file=sys.stderr,
        )
    try:
        async with Simulator(mailboxes=[MAILBOX], folders=[QUEUE_FOLDER, STORAGE_FOLDER]) as sim:
            demo = demo_settings(settings, sim.ews_url)
            async with open_database(demo) as db:
                return await _demo(demo, db.pool, sim, stop, exit_when_drained, out)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _demo(
    demo: Settings,
    pool: asyncpg.Pool,
    sim: Simulator,
    stop: asyncio.Event,
    exit_when_drained: bool,
    out: TextIO,
) -> int:
    say = _printer(out)
    say(
        f"emaillog demo: database in {demo.data_dir / 'pg'} (emptied), "
        f"Exchange simulator at {sim.ews_url}"
    )
    loaded = await _reset_and_load_directory(pool)
    say("directory imported: " + ", ".join(f"{n} {kind.replace('_', '. ')}" for kind, n in loaded))

    waiting = [s for s in SAMPLES if not s.streaming]
    live = [s for s in SAMPLES if s.streaming]
    for sample in waiting:
        _put(sim, sample)
    say(f"{len(waiting)} messages wait in {MAILBOX} / {QUEUE_FOLDER} (the service catches up)")
    say(f"starting the service; metrics at {_url(demo, '/metrics')}")

    metrics = Metrics()
    service = asyncio.create_task(serve(demo, shutdown=stop.wait, metrics=metrics))
    deliveries = _Deliveries(done=len(waiting))
    feeder = asyncio.create_task(_deliver_live(sim, live, metrics, service, deliveries))
    view = LiveView(out, tty=out.isatty())
    drained = False  # until _watch says so; False after Ctrl-C or an error
    try:
        drained = await _watch(pool, sim, metrics, service, feeder, stop, deliveries, view)
    finally:
        feeder.cancel()
        if exit_when_drained or not drained:
            stop.set()
            await service

    counts = await disposal_counts(pool)
    problems = await _summary(pool, sim, counts, say)
    if not drained:
        problems.insert(0, "the demo was stopped before every sample was disposed of")
    for problem in problems:
        print(f"emaillog demo: {problem}", file=sys.stderr)
    if exit_when_drained or not drained:
        say(json.dumps(counts))
        return 130 if not drained else 1 if problems else 0

    say("")
    say(f"The service keeps running: {_url(demo, '/metrics')}  (also /livez and /readyz)")
    say(
        "Deliver more mail: curl --data-binary @message.eml "
        f"'{sim.base_url}/_sim/deliver?mailbox={MAILBOX}&folder={QUEUE_FOLDER.replace(' ', '%20')}'"
    )
    say("Ctrl-C stops it.")
    await _follow(pool, counts, stop, say)
    await service
    return 1 if problems else 0


def _printer(out: TextIO) -> Say:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say


def _url(settings: Settings, path: str) -> str:
    return f"http://{settings.http_host}:{settings.http_port}{path}"


async def _reset_and_load_directory(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    """Empty the demo database and import the demo directory with the product's CSV import."""
    loaded: list[tuple[str, int]] = []
    async with pool.acquire() as conn:
        await conn.execute(
            "TRUNCATE disposal_log, interaction_log_entry, stored_message, contact_alt_address,"
            " contact, salesperson, interaction_template RESTART IDENTITY"
        )
        with tempfile.TemporaryDirectory(prefix="emaillog-demo-") as folder:
            paths = write_directory_csv(Path(folder))
            for kind in KINDS:
                loaded.append((kind, await import_csv(conn, kind, paths[kind])))
    return loaded


def _put(sim: Simulator, sample: Sample) -> None:
    """Deliver a sample into the queue, or save it there as a draft.

    Transport delivery never makes a draft (in Exchange or in exchange_sim): a draft gets
    into the queue folder when a user saves one there, which is a CreateItem."""
    if sample.draft:
        sim.save_draft(MAILBOX, QUEUE_FOLDER, sample.raw)
    else:
        sim.deliver(MAILBOX, QUEUE_FOLDER, sample.raw)


async def _deliver_live(
    sim: Simulator,
    samples: Sequence[Sample],
    metrics: Metrics,
    service: asyncio.Task[None],
    deliveries: _Deliveries,
) -> None:
    """Once the service holds its subscription, deliver `samples` one by one."""
    try:
        async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
            while not metrics.registry.get_sample_value("emaillog_source_connected"):
                if service.done():
                    return
                await asyncio.sleep(REFRESH_SECONDS)
    except TimeoutError:
        raise EmailLogError(
            f"the service did not subscribe to the queue folder within {SUBSCRIBE_WAIT_SECONDS:g} s"
        ) from None
    for sample in samples:
        _put(sim, sample)
        deliveries.done += 1
        await asyncio.sleep(LIVE_DELIVERY_GAP_SECONDS)


async def _watch(
    pool: asyncpg.Pool,
    sim: Simulator,
    metrics: Metrics,
    service: asyncio.Task[None],
    feeder: asyncio.Task[None],
    stop: asyncio.Event,
    deliveries: _Deliveries,
    view: LiveView,
) -> bool:
    """Redraw the live view until everything is disposed of (True) or the user stops (False).

    Drained means: every sample delivered and recorded in disposal_log, the queue folder
    empty, and the service's metrics counting exactly what disposal_log holds."""
    expected = expected_counts()
    total = len(SAMPLES)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_WAIT_SECONDS
    while True:
        if feeder.done():
            feeder.result()  # raises what stopped the deliveries, if anything
        if service.done():
            service.result()  # raises what ended the service
            raise EmailLogError("the service stopped on its own")
        counts = await disposal_counts(pool)
        in_queue = len(sim.list_items(MAILBOX, QUEUE_FOLDER))
        snapshot = Snapshot(counts, expected, deliveries.done, total, in_queue)
        view.show(snapshot)
        disposed = _disposed(counts)
        if (
            deliveries.done == total
            and disposed == total
            and in_queue == 0
            and metric_counts(metrics) == counts
        ):
            return True
        if stop.is_set():
            return False
        if loop.time() > deadline:
            raise EmailLogError(
                f"not drained after {DRAIN_WAIT_SECONDS:g} s: {disposed} of {total} disposed, "
                f"{in_queue} in the queue; disposal_log {counts}, metrics {metric_counts(metrics)}"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)


async def _follow(
    pool: asyncpg.Pool, counts: Mapping[str, int], stop: asyncio.Event, say: Say
) -> None:
    """While the service keeps running: one line whenever the counts change."""
    last = dict(counts)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        current = await disposal_counts(pool)
        if current != last:
            say(_counts_text(current))
            last = current


# --- what the database and the metrics say --------------------------------------------------


async def disposal_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows of disposal_log per outcome, every outcome present."""
    rows = await pool.fetch("SELECT outcome, count(*) AS n FROM disposal_log GROUP BY outcome")
    found = {row["outcome"]: int(row["n"]) for row in rows}
    return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}


def metric_counts(metrics: Metrics) -> dict[str, int]:
    """emaillog_messages_total per outcome, read from the service's registry."""
    registry = metrics.registry
    return {
        outcome: int(
            registry.get_sample_value("emaillog_messages_total", {"outcome": outcome}) or 0
        )
        for outcome in OUTCOMES
    }


# --- the live view --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    counts: Mapping[str, int]  # disposal_log rows per outcome
    expected: Mapping[str, int]
    delivered: int
    total: int
    in_queue: int


def render_block(snap: Snapshot) -> list[str]:
    """The live view on a terminal: one row per outcome, with a bar toward its expected count."""
    lines = [f"  {'outcome':<18}{'count':>6}  {'expected':>8}"]
    for outcome in OUTCOMES:
        done, want = snap.counts.get(outcome, 0), snap.expected.get(outcome, 0)
        bar = "█" * min(done, want) + "·" * max(want - done, 0) + "!" * max(done - want, 0)
        lines.append(f"  {outcome:<18}{done:>6}  {want:>8}  {bar}")
    lines.append(
        f"  delivered {snap.delivered}/{snap.total}, in the queue folder {snap.in_queue}, "
        f"disposed of {_disposed(snap.counts)}"
    )
    return lines


def render_line(snap: Snapshot) -> str:
    """The live view when stdout is not a terminal: one line."""
    return (
        f"progress: delivered {snap.delivered}/{snap.total}, in queue {snap.in_queue}, "
        + _counts_text(snap.counts)
    )


def _disposed(counts: Mapping[str, int]) -> int:
    return sum(n for outcome, n in counts.items() if outcome != Outcome.FAILED)


def _counts_text(counts: Mapping[str, int]) -> str:
    shown = ", ".join(f"{o} {counts[o]}" for o in OUTCOMES if counts.get(o))
    return f"disposed of {_disposed(counts)}: {shown or 'nothing yet'}"


class LiveView:
    """Redraws `render_block` in place on a terminal; otherwise prints `render_line`.
    Either way only when something changed."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._last: list[str] = []

    def show(self, snap: Snapshot) -> None:
        lines = render_block(snap) if self._tty else [render_line(snap)]
        if lines == self._last:
            return
        if self._tty and self._last:
            self._out.write(f"\x1b[{len(self._last)}F")  # back to the block's first line
        prefix = "\x1b[2K" if self._tty else ""  # clear the old line before writing
        self._out.write("".join(f"{prefix}{line}\n" for line in lines))
        self._out.flush()
        self._last = lines


# --- the summary ----------------------------------------------------------------------------


async def _summary(
    pool: asyncpg.Pool, sim: Simulator, counts: Mapping[str, int], say: Say
) -> list[str]:
    """Print the summary; return the differences from what the demo data expects."""
    problems: list[str] = []
    expected = expected_counts()
    say("")
    say(f"{'outcome':<18}{'count':>6}  {'expected':>8}")
    for outcome in OUTCOMES:
        mark = "" if counts[outcome] == expected[outcome] else "   <- differs"
        say(f"{outcome:<18}{counts[outcome]:>6}  {expected[outcome]:>8}{mark}")
        if mark:
            problems.append(f"{outcome}: {counts[outcome]}, expected {expected[outcome]}")

    say("")
    say("Each sample message (* = waiting before the service started, catch-up):")
    recorded = await pool.fetch(
        "SELECT message_id_hash, outcome FROM disposal_log WHERE outcome <> 'failed' ORDER BY id"
    )
    for number, (sample, got) in enumerate(sample_outcomes(recorded), start=1):
        mark = "" if got == sample.expect else f"   <- expected {sample.expect.value}"
        when = " " if sample.streaming else "*"
        say(f"{number:>3}{when} {sample.label:<46} {got or 'not disposed'}{mark}")

    entries = await pool.fetch(
        """
        SELECT e.entry_no, e.salesperson_code, s.name AS salesperson, e.contact_no,
               c.name AS contact, e.contact_company_no, e.contact_alt_address_code,
               e.information_flow, e.description
        FROM interaction_log_entry e
        LEFT JOIN salesperson s ON s.code = e.salesperson_code
        LEFT JOIN contact c ON c.no = e.contact_no
        ORDER BY e.entry_no
        """
    )
    want_entries = expected_entries()
    say("")
    say(f"Interaction log entries ({len(entries)}, expected {want_entries}):")
    say(f"{'no.':>4}  {'salesperson':<24}{'contact':<36}{'flow':<10}description")
    for e in entries:
        contact = f"{e['contact_no']} {e['contact'] or ''}"
        if e["contact_alt_address_code"]:
            contact += f" [{e['contact_alt_address_code']}]"
        contact += f" ({e['contact_company_no']})" if e["contact_company_no"] else ""
        salesperson = f"{e['salesperson_code']} {e['salesperson'] or ''}"
        say(
            f"{e['entry_no']:>4}  {salesperson[:23]:<24}{contact[:35]:<36}"
            f"{e['information_flow']:<10}{e['description']}"
        )
    if len(entries) != want_entries:
        problems.append(f"{len(entries)} interaction log entries, expected {want_entries}")

    problems += await _check_storage(pool, sim, counts, say)
    return problems


def sample_outcomes(recorded: Sequence[Mapping[str, str]]) -> list[tuple[Sample, str | None]]:
    """Each sample with the outcome disposal_log recorded for it (None: not disposed of).

    disposal_log keeps only a hash of the Message-ID, so samples are matched by that hash.
    Copies of one message share it (the duplicate): within such a group a sample gets its
    expected outcome when one was recorded, else whatever is left."""
    left: dict[str, list[str]] = {}
    for row in recorded:
        left.setdefault(row["message_id_hash"], []).append(row["outcome"])
    hashes = [message_id_hash(parse_mime(sample.raw)) for sample in SAMPLES]
    result: list[tuple[Sample, str | None]] = []
    for sample, hashed in zip(SAMPLES, hashes, strict=True):
        outcomes = left.get(hashed, [])
        if sample.expect.value in outcomes:
            outcomes.remove(sample.expect.value)
            result.append((sample, sample.expect.value))
        else:
            result.append((sample, outcomes.pop(0) if outcomes else None))
    return result


async def _check_storage(
    pool: asyncpg.Pool, sim: Simulator, counts: Mapping[str, int], say: Say
) -> list[str]:
    """The storage folder must hold exactly the logged messages, each linked from the journal."""
    stored = await pool.fetch("SELECT state, storage_item_id FROM stored_message")
    storage_ids = {item["id"] for item in sim.list_items(MAILBOX, STORAGE_FOLDER)}
    linked = {row["storage_item_id"] for row in stored if row["state"] == "stored"}
    in_queue = len(sim.list_items(MAILBOX, QUEUE_FOLDER))
    say("")
    say(
        f"Storage folder: {len(storage_ids)} messages; journal: {len(linked)} stored messages "
        f"linked to them, {len(stored) - len(linked)} still moving; queue folder: {in_queue} left"
    )
    problems = []
    if linked != storage_ids or len(stored) != len(linked):
        problems.append("the storage folder and the journal's stored messages differ")
    if len(storage_ids) != counts[Outcome.LOGGED]:
        problems.append(f"{len(storage_ids)} in storage but {counts[Outcome.LOGGED]} logged")
    if in_queue:
        problems.append(f"{in_queue} messages left in the queue folder")
    return problems
