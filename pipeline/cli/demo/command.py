"""`emaillog demo`: the real service against an in-process Exchange simulator, on demo data.

    1. the embedded PostgreSQL under EMAILLOG_DATA_DIR/demo, emptied (same counts every run)
    2. the demo directory (`data.py`) through the product's CSV import
    3. exchange_sim with the queue mailbox; some samples wait in the queue (catch-up)
    4. `serve()` with the EWS source; once it is subscribed, the rest arrive (streaming)
    4a. the web UI (ui.py) on 127.0.0.1 with a fresh token, printed with its address
    5. a live per-outcome view from disposal_log (`view.py`), until every sample is disposed
       of and the service's metrics registry agrees with disposal_log
    6. a summary (`checks.py`): outcomes, each sample's fate, the interaction log entries, and
       a check that the storage folder holds exactly the logged messages the journal points at

Then the service keeps running (metrics URL printed) until Ctrl-C, or with
`--exit-when-drained` it stops and prints the per-outcome counts as one JSON object on the
last line of stdout. Exit 1 when the result differs from what `data.py` expects.

This module holds the command line and the orchestration. The demo never touches
EMAILLOG_DATABASE_URL: it empties its database on every run, so it always uses its own
embedded server in a directory of its own. exchange_sim is imported lazily here and nowhere
else in pipeline/: the service does not depend on the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import asyncpg

from pipeline.cli.common import Subparsers, configure_command_logging, until_signalled
from pipeline.cli.demo.checks import disposal_counts, drained, metric_counts, summary
from pipeline.cli.demo.data import (
    MAILBOX,
    NEVER_LOG,
    QUEUE_FOLDER,
    SAMPLES,
    STORAGE_FOLDER,
    TEMPLATE_CODE,
    Sample,
    expected_counts,
    write_directory_csv,
)
from pipeline.cli.demo.graph_world import GraphWorld, graph_settings
from pipeline.cli.demo.imap_world import DovecotWorld
from pipeline.cli.demo.ui import ui_url, with_demo_ui
from pipeline.cli.demo.view import LiveView, Say, Snapshot, counts_text, disposed, printer
from pipeline.config import DisposalSetting, EwsAuth, FolderPath, RuleSettings, Settings
from pipeline.errors import EmailLogError
from pipeline.metrics import Metrics
from pipeline.service import serve
from pipeline.store.db import open_database
from pipeline.store.directory_repo import KINDS, import_csv

if TYPE_CHECKING:  # for annotations only; the runtime import is lazy (see _run)
    from exchange_sim import Simulator

#: How often the live view reads disposal_log and the metrics registry.
REFRESH_SECONDS = 0.2
#: Pause between live deliveries, so the view visibly follows the stream.
LIVE_DELIVERY_GAP_SECONDS = 0.3
#: Safety nets: a broken setup ends the demo with an explanation instead of hanging it.
SUBSCRIBE_WAIT_SECONDS = 60.0
DRAIN_WAIT_SECONDS = 120.0


def add_parser(subparsers: Subparsers) -> None:
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
    parser.add_argument(
        "--source",
        choices=("ews", "graph", "imap"),
        default="ews",
        help="graph: the Exchange simulator through Microsoft Graph instead of EWS; imap: a "
        "real Dovecot (Debian's dovecot-imapd) instead of the Exchange simulator",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    configure_command_logging(settings)
    if getattr(args, "source", "ews") == "imap":
        return asyncio.run(_run_imap(settings, args.exit_when_drained, sys.stdout))
    graph = getattr(args, "source", "ews") == "graph"
    return asyncio.run(
        _run(settings, exit_when_drained=args.exit_when_drained, out=sys.stdout, graph=graph)
    )


# --- settings -------------------------------------------------------------------------------


def demo_settings(settings: Settings, ews_url: str) -> Settings:
    """The user's settings, pointed at the demo database, simulator, folders and policy."""
    replace = dataclasses.replace
    source = settings.source
    return replace(
        settings,
        database=replace(settings.database, url="", data_dir=settings.database.data_dir / "demo"),
        source=replace(
            source,
            ews=replace(source.ews, url=ews_url, mailbox=MAILBOX, auth=EwsAuth.NONE),
            queue_folder=FolderPath.parse(QUEUE_FOLDER),
            storage_folder=FolderPath.parse(STORAGE_FOLDER),
            disposal=DisposalSetting(),
        ),
        rules=RuleSettings(
            include_cc=False, never_log=NEVER_LOG, email_template_code=TEMPLATE_CODE
        ),
        http=replace(settings.http, host="127.0.0.1", port=_usable_port(settings.http.port)),
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


@dataclass(frozen=True, slots=True)
class _Demo:
    """What every step of one demo run works with."""

    settings: Settings  # demo_settings(): the demo's database, simulator and folders
    pool: asyncpg.Pool
    sim: Simulator | DovecotWorld | GraphWorld  # exchange_sim, or Dovecot with --source imap
    stop: asyncio.Event  # set by SIGINT/SIGTERM, or by the demo to stop the service
    say: Say
    ui_token: str = ""  # the web UI's sign-in token for this run (ui.py)


@dataclass
class _Deliveries:
    """How many samples are in the queue so far; the feeder counts up, the view reads it."""

    done: int = 0


async def _run(
    settings: Settings, *, exit_when_drained: bool, out: TextIO, graph: bool = False
) -> int:
    try:
        from exchange_sim import Simulator
    except ImportError as exc:
        raise EmailLogError(
            f"emaillog demo needs the simulator's dependencies ({exc}): "
            "pip install 'emaillog[dev]' (make demo does)"
        ) from exc

    if settings.database.url:
        print(
            "note: the demo ignores EMAILLOG_DATABASE_URL; it empties its own embedded "
            "database on every run",
            file=sys.stderr,
        )
    async with (
        until_signalled() as stop,
        Simulator(mailboxes=[MAILBOX], folders=[QUEUE_FOLDER, STORAGE_FOLDER]) as sim,
    ):
        settings = demo_settings(settings, sim.ews_url)
        world: Simulator | GraphWorld = GraphWorld(sim) if graph else sim
        if isinstance(world, GraphWorld):
            settings = graph_settings(settings, world, MAILBOX)
        async with open_database(settings.database) as db:
            demo = _Demo(settings, db.pool, world, stop, printer(out))
            return await _demo(demo, exit_when_drained, out)


async def _run_imap(settings: Settings, exit_when_drained: bool, out: TextIO) -> int:
    """As `_run`, with the mail on a real Dovecot and the service's IMAP source."""
    from pipeline.cli.demo.imap_world import dovecot_world, imap_settings

    async with until_signalled() as stop:
        with dovecot_world([QUEUE_FOLDER, STORAGE_FOLDER]) as world:
            settings = imap_settings(demo_settings(settings, ""), world)
            async with open_database(settings.database) as db:
                demo = _Demo(settings, db.pool, world, stop, printer(out))
                return await _demo(demo, exit_when_drained, out)


def _mail_server(sim: Simulator | DovecotWorld | GraphWorld) -> str:
    if isinstance(sim, DovecotWorld):
        return f"Dovecot at {sim.address}"
    if isinstance(sim, GraphWorld):
        return f"Exchange simulator's Graph face at {sim.graph_url}"
    return f"Exchange simulator at {sim.ews_url}"


async def _demo(demo: _Demo, exit_when_drained: bool, out: TextIO) -> int:
    """Steps 1-5: load, queue the waiting samples, start the service and the live feeder,
    and watch until drained (or stopped); then `_finish`."""
    say, sim = demo.say, demo.sim
    say(
        f"emaillog demo: database in {demo.settings.database.data_dir / 'pg'} (emptied), "
        + _mail_server(sim)
    )
    loaded = await _reset_and_load_directory(demo.pool)
    say("directory imported: " + ", ".join(f"{n} {kind.replace('_', '. ')}" for kind, n in loaded))

    waiting = [s for s in SAMPLES if not s.streaming]
    live = [s for s in SAMPLES if s.streaming]
    for sample in waiting:
        _put(sim, sample)
    say(f"{len(waiting)} messages wait in {MAILBOX} / {QUEUE_FOLDER} (the service catches up)")
    say(f"starting the service; metrics at {_url(demo.settings, '/metrics')}")
    settings, token = with_demo_ui(demo.settings, _usable_port(demo.settings.ui.port))
    demo = dataclasses.replace(demo, settings=settings, ui_token=token)
    say(f"web UI and REST API at {ui_url(settings)}  (sign in with token {token})")

    metrics = Metrics()
    service = asyncio.create_task(serve(demo.settings, shutdown=demo.stop.wait, metrics=metrics))
    deliveries = _Deliveries(done=len(waiting))
    feeder = asyncio.create_task(_deliver_live(sim, live, metrics, service, deliveries))
    view = LiveView(out, tty=out.isatty())
    is_drained = False  # until _watch says so; False after Ctrl-C or an error
    try:
        is_drained = await _watch(demo, metrics, service, feeder, deliveries, view)
    finally:
        feeder.cancel()
        if exit_when_drained or not is_drained:
            demo.stop.set()
            await service
    return await _finish(demo, service, is_drained=is_drained, exit_when_drained=exit_when_drained)


async def _finish(
    demo: _Demo, service: asyncio.Task[None], *, is_drained: bool, exit_when_drained: bool
) -> int:
    """The summary; then either the JSON line and the exit code, or the service keeps
    running until Ctrl-C."""
    say = demo.say
    counts = await disposal_counts(demo.pool)
    problems = await summary(demo.pool, demo.sim, counts, say)
    if not is_drained:
        problems.insert(0, "the demo was stopped before every sample was disposed of")
    for problem in problems:
        print(f"emaillog demo: {problem}", file=sys.stderr)
    if exit_when_drained or not is_drained:
        say(json.dumps(counts))
        return 130 if not is_drained else 1 if problems else 0

    say("")
    say(f"The service keeps running: {_url(demo.settings, '/metrics')}  (also /livez and /readyz)")
    say(f"Browse the log at {ui_url(demo.settings)}  (token {demo.ui_token})")
    if isinstance(demo.sim, DovecotWorld | GraphWorld):
        say(demo.sim.hint(QUEUE_FOLDER))
    else:
        say(
            "Deliver more mail: curl --data-binary @message.eml "
            f"'{demo.sim.base_url}/_sim/deliver?mailbox={MAILBOX}"
            f"&folder={QUEUE_FOLDER.replace(' ', '%20')}'"
        )
    say("Ctrl-C stops it.")
    await _follow(demo, counts)
    await service
    return 1 if problems else 0


def _url(settings: Settings, path: str) -> str:
    return f"http://{settings.http.host}:{settings.http.port}{path}"


async def _reset_and_load_directory(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    """Empty the demo database and import the demo directory with the product's CSV import."""
    loaded: list[tuple[str, int]] = []
    async with pool.acquire() as conn:
        await conn.execute(
            "TRUNCATE disposal_log, interaction_log_entry, stored_message_access, stored_message,"
            " contact_alt_address, contact, salesperson, interaction_template RESTART IDENTITY"
        )
        with tempfile.TemporaryDirectory(prefix="emaillog-demo-") as folder:
            paths = write_directory_csv(Path(folder))
            for kind in KINDS:
                loaded.append((kind, await import_csv(conn, kind, paths[kind])))
    return loaded


def _put(sim: Simulator | DovecotWorld | GraphWorld, sample: Sample) -> None:
    """Deliver a sample into the queue, or save it there as a draft.

    Transport delivery never makes a draft (in Exchange or in exchange_sim): a draft gets
    into the queue folder when a user saves one there, which is a CreateItem."""
    if sample.draft:
        sim.save_draft(MAILBOX, QUEUE_FOLDER, sample.raw)
    else:
        sim.deliver(MAILBOX, QUEUE_FOLDER, sample.raw)


async def _deliver_live(
    sim: Simulator | DovecotWorld | GraphWorld,
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
    demo: _Demo,
    metrics: Metrics,
    service: asyncio.Task[None],
    feeder: asyncio.Task[None],
    deliveries: _Deliveries,
    view: LiveView,
) -> bool:
    """Redraw the live view until everything is disposed of (True, see `checks.drained`) or
    the user stops (False)."""
    expected = expected_counts()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_WAIT_SECONDS
    while True:
        if feeder.done():
            feeder.result()  # raises what stopped the deliveries, if anything
        if service.done():
            service.result()  # raises what ended the service
            raise EmailLogError("the service stopped on its own")
        counts = await disposal_counts(demo.pool)
        in_queue = len(demo.sim.list_items(MAILBOX, QUEUE_FOLDER))
        view.show(Snapshot(counts, expected, deliveries.done, len(SAMPLES), in_queue))
        if drained(counts, metrics, delivered=deliveries.done, in_queue=in_queue):
            return True
        if demo.stop.is_set():
            return False
        if loop.time() > deadline:
            raise EmailLogError(
                f"not drained after {DRAIN_WAIT_SECONDS:g} s: {disposed(counts)} of "
                f"{len(SAMPLES)} disposed, {in_queue} in the queue; disposal_log {counts}, "
                f"metrics {metric_counts(metrics)}"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(demo.stop.wait(), REFRESH_SECONDS)


async def _follow(demo: _Demo, counts: Mapping[str, int]) -> None:
    """While the service keeps running: one line whenever the counts change."""
    last = dict(counts)
    while not demo.stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(demo.stop.wait(), 1.0)
        current = await disposal_counts(demo.pool)
        if current != last:
            demo.say(counts_text(current))
            last = current
