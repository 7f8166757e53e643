"""`python -m bench --source imap`: the same questions as the EWS benchmark, on a real Dovecot.

    drain         `emaillog run` (EMAILLOG_SOURCE=imap, TLS) on N queued messages
    client limit  a bare imapclient doing what the service must: header-only UID FETCH and
                  UID MOVE to storage, in batches of 50, nothing else
    steady        RATE msg/s APPENDed while the service IDLEs: latency per message
                  (disposal_log.disposed_at minus the time just before its APPEND)
    baseline      NAV-style: one message at a time, the whole message fetched, one commit,
                  COPY to storage, STORE \\Deleted + UID EXPUNGE

Dovecot (tests/dovecot.py: Debian's dovecot-imapd, unprivileged, generated configuration)
runs on this machine: no latency is injected (`--latency-ms` applies to EWS only), so the
IMAP figures are for a server next door. Each phase starts from an empty queue and storage
folder (deleted and created again) and a fresh journal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from imapclient import IMAPClient

from bench import db
from bench.context import run_env
from bench.corpus import NEVER_LOG, BenchMessage, Directory, expected_counts, generate
from bench.procs import ServiceProcess
from exchange_sim.dovecot import PASSWORD, USER, Dovecot
from pipeline.config import Settings
from pipeline.directory import Directory as PeopleIndex
from pipeline.ledger import Ledger
from pipeline.mailparse import parse_mime
from pipeline.metrics import Metrics
from pipeline.model import Candidate, message_id_hash
from pipeline.rules import Policy, decide
from pipeline.sources.imap_ops import FETCH_ITEMS
from pipeline.stages.dedupe import record_decisions
from pipeline.store.db import open_database
from pipeline.store.directory_repo import load_directory
from pipeline.store.journal import StorageLink
from pipeline.store.queries import is_logged

QUEUE = "Email Logging/Queue"
STORAGE = "Email Logging/Storage"
BATCH = 50
POLL_SECONDS = 0.025


@dataclass
class Phase:
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    queue_left: int = -1
    stored: int = -1
    latencies_ms: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def env_for(server: Dovecot, data_dir: Path, database_url: str) -> tuple[dict[str, str], int]:
    return run_env(
        data_dir,
        database_url,
        {
            "EMAILLOG_SOURCE": "imap",
            "EMAILLOG_IMAP_HOST": "localhost",
            "EMAILLOG_IMAP_PORT": str(server.tls_port),
            "EMAILLOG_IMAP_SECURITY": "tls",
            "EMAILLOG_IMAP_CA_FILE": server.ca_file,
            "EMAILLOG_IMAP_USERNAME": USER,
            "EMAILLOG_IMAP_PASSWORD": PASSWORD,
            "EMAILLOG_QUEUE_FOLDER": QUEUE,
            "EMAILLOG_STORAGE_FOLDER": STORAGE,
        },
    )


def fresh_folders(server: Dovecot) -> None:
    server.recreate(QUEUE)
    server.recreate(STORAGE)


def append_all(server: Dovecot, messages: Sequence[BenchMessage]) -> list[str]:
    """APPEND every message on one connection: the queue item ids ("UIDVALIDITY:UID")."""
    validity = server.uidvalidity(QUEUE)
    ids = []
    with server.session() as client:
        for message in messages:
            typ, data = client.append(f'"{QUEUE}"', "", None, message.raw)
            assert typ == "OK", data
            code = client.untagged_responses.pop("APPENDUID", [b""])[-1]
            ids.append(f"{validity}:{int(code.split()[1])}")
    return ids


def count(server: Dovecot, folder: str) -> int:
    return len(server.uids(folder))


async def drain(server: Dovecot, pool: asyncpg.Pool, env: dict[str, str], port: int,
                messages: list[BenchMessage], logs: Path) -> Phase:  # fmt: skip
    await db.reset_journal(pool)
    fresh_folders(server)
    append_all(server, messages)
    service = ServiceProcess(env, port, logs / "service-imap-drain.log")
    phase = Phase()
    try:
        await service.start()
        deadline = time.monotonic() + 120 + len(messages) / 20
        while time.monotonic() < deadline:
            if await db.disposed_count(pool) >= len(messages) and count(server, QUEUE) == 0:
                break
            await asyncio.sleep(POLL_SECONDS)
        end = time.time()
        phase.seconds = end - service.started_at
        phase.extra["startup_seconds"] = service.ready_at - service.started_at
        phase.extra["peak_rss_mb"] = service.stats().peak_rss_mb
    finally:
        phase.extra["exit_code"] = await service.stop()
    phase.outcomes = (await db.disposals(pool)).outcomes
    phase.queue_left, phase.stored = count(server, QUEUE), count(server, STORAGE)
    return phase


async def steady(server: Dovecot, pool: asyncpg.Pool, env: dict[str, str], port: int,
                 messages: list[BenchMessage], rate: float, logs: Path) -> Phase:  # fmt: skip
    await db.reset_journal(pool)
    fresh_folders(server)
    service = ServiceProcess(env, port, logs / "service-imap-steady.log")
    phase = Phase()
    delivered_at: dict[str, float] = {}
    try:
        await service.start()
        first = time.monotonic()
        for i, message in enumerate(messages):
            delay = first + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            at = time.time()
            [item_id] = await asyncio.to_thread(append_all, server, [message])
            delivered_at[item_id] = at
        phase.seconds = time.monotonic() - first
        deadline = time.monotonic() + 30 + len(messages) / 20
        while time.monotonic() < deadline:
            if await db.disposed_count(pool) >= len(messages) and count(server, QUEUE) == 0:
                break
            await asyncio.sleep(POLL_SECONDS)
    finally:
        phase.extra["exit_code"] = await service.stop()
    disposed = await db.disposal_times(pool)
    phase.latencies_ms = sorted(
        (disposed[i] - at) * 1000 for i, at in delivered_at.items() if i in disposed
    )
    phase.outcomes = (await db.disposals(pool)).outcomes
    phase.queue_left = count(server, QUEUE)
    return phase


@contextlib.contextmanager
def bare_client(server: Dovecot) -> Iterator[IMAPClient]:
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, use_uid=True)
    client.login(USER, PASSWORD)
    try:
        yield client
    finally:
        client.logout()


def client_limit(server: Dovecot, messages: list[BenchMessage]) -> Phase:
    """What the source must do at least, on one plain connection (set-up not timed)."""
    fresh_folders(server)
    append_all(server, messages)
    with bare_client(server) as client:
        client.select_folder(QUEUE)
        uids = sorted(client.search(["ALL"]))
        started = time.perf_counter()
        for i in range(0, len(uids), BATCH):
            batch = uids[i : i + BATCH]
            for data in client.fetch(batch, FETCH_ITEMS).values():
                parse_mime(next(v for k, v in data.items() if k.startswith(b"BODY[")))
            client.move(batch, STORAGE)
        seconds = time.perf_counter() - started
    return Phase(seconds=seconds, queue_left=count(server, QUEUE), stored=count(server, STORAGE))


async def baseline(server: Dovecot, pool: asyncpg.Pool, people: PeopleIndex,
                   settings: Settings, messages: list[BenchMessage]) -> Phase:  # fmt: skip
    """NAV-style: per message FETCH of the whole message, one commit, COPY, expunge."""
    await db.reset_journal(pool)
    fresh_folders(server)
    ids = append_all(server, messages)
    template = people.template(settings.rules.email_template_code)
    assert template is not None
    policy = Policy.from_settings(settings.rules)
    ledger = Ledger(pool, mailbox=USER, metrics=Metrics(), max_in_flight_messages=1,
                    retry_max_wait_seconds=1.0)  # fmt: skip
    outcomes: dict[str, int] = {}
    with bare_client(server) as client:
        client.select_folder(QUEUE)
        started = time.perf_counter()
        for item_id in ids:
            uid = int(item_id.split(":")[1])
            raw = (await asyncio.to_thread(client.fetch, [uid], ["BODY.PEEK[]"]))[uid][b"BODY[]"]
            mail = parse_mime(raw)
            async with pool.acquire() as conn:
                seen = await is_logged(conn, USER, [mail.dedupe_key])
            decision = decide(mail, people, policy, already_logged=bool(seen))
            if decision.is_logged:
                await asyncio.to_thread(client.copy, [uid], STORAGE)
            async with ledger.transaction() as book:
                [recorded] = await record_decisions(
                    book, [Candidate(item_id, mail, decision)], template
                )
                if recorded.stored_message_id is not None:
                    link = StorageLink(recorded.stored_message_id, item_id, None, None,
                                       recorded.decision.rule, message_id_hash(mail))  # fmt: skip
                    await book.record_stored([link])
            await asyncio.to_thread(client.add_flags, [uid], [b"\\Deleted"], True)
            await asyncio.to_thread(client.uid_expunge, [uid])
            outcome = recorded.decision.outcome.value
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        seconds = time.perf_counter() - started
    return Phase(seconds, dict(sorted(outcomes.items())), count(server, QUEUE),
                 count(server, STORAGE))  # fmt: skip


async def run_imap(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    logs, data_dir = tmp / "logs", tmp / "data"
    logs.mkdir(exist_ok=True)
    people = Directory(args.seed, args.salespersons, args.contacts)
    messages = generate(people, args.n, args.seed, tag="drain")
    steady_messages = generate(people, int(args.rate * args.seconds), args.seed + 1, tag="steady")
    settings = Settings.from_env(
        {"EMAILLOG_DATA_DIR": str(data_dir), "EMAILLOG_NEVER_LOG": ",".join(NEVER_LOG)}
    )
    # Its own temporary directory: Dovecot runs as `nobody` under root, and must reach it.
    with (
        tempfile.TemporaryDirectory(prefix="dovecot-") as root,
        Dovecot.start(Path(root)) as server,
    ):
        async with open_database(settings.database) as database:
            await db.import_directory(database.pool, people.write_csv(tmp / "directory"))
            async with database.pool.acquire() as conn:
                index = await load_directory(conn)
            env, port = env_for(server, data_dir, database.url)
            d = await drain(server, database.pool, env, port, messages, logs)
            _progress(f"drain {d.seconds:.1f} s")
            c = await asyncio.to_thread(client_limit, server, messages)
            _progress(f"client limit {c.seconds:.1f} s")
            env, port = env_for(server, data_dir, database.url)
            s = await steady(server, database.pool, env, port, steady_messages, args.rate, logs)
            _progress(f"steady {s.seconds:.1f} s")
            b = await baseline(server, database.pool, index, settings, messages)
            _progress(f"baseline {b.seconds:.1f} s")
    return summarise(messages, steady_messages, d, c, s, b)


def _progress(text: str) -> None:
    import sys

    print(f"bench (imap): {text}", file=sys.stderr, flush=True)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    return values[max(1, min(len(values), round(p / 100 * len(values) + 0.5))) - 1]


def summarise(messages: list[BenchMessage], steady_messages: list[BenchMessage], d: Phase,
              c: Phase, s: Phase, b: Phase) -> dict[str, Any]:  # fmt: skip
    n = len(messages)
    expected = expected_counts(messages)
    rate = n / d.seconds if d.seconds else 0.0
    base = n / b.seconds if b.seconds else 0.0
    client = n / c.seconds if c.seconds else 0.0
    lat = s.latencies_ms
    return {
        "source": "imap",
        "n": n,
        "drain_msgs_per_s": round(rate, 1),
        "drain_seconds": round(d.seconds, 3),
        "startup_seconds": round(d.extra.get("startup_seconds", 0.0), 3),
        "client_limit_msgs_per_s": round(client, 1),
        "efficiency_vs_client_limit": round(rate / client, 3) if client else 0.0,
        "baseline_msgs_per_s": round(base, 2),
        "speedup_vs_baseline": round(rate / base, 2) if base else 0.0,
        "steady_p50_ms": round(_pct(lat, 50), 1),
        "steady_p95_ms": round(_pct(lat, 95), 1),
        "steady_p99_ms": round(_pct(lat, 99), 1),
        "steady_max_ms": round(lat[-1], 1) if lat else 0.0,
        "peak_rss_mb": round(d.extra.get("peak_rss_mb", 0.0), 1),
        "expected_outcomes": expected,
        "drain_accounted": d.outcomes == expected and d.queue_left == 0,
        "client_limit_accounted": c.queue_left == 0 and c.stored == n,
        "steady_accounted": s.queue_left == 0
        and s.outcomes == expected_counts(steady_messages)
        and len(lat) == len(steady_messages),
        "baseline_accounted": b.outcomes == expected
        and b.queue_left == 0
        and b.stored == expected.get("logged", 0),
        "service_exit_codes": [d.extra.get("exit_code"), s.extra.get("exit_code")],
    }


def table(r: dict[str, Any]) -> str:
    accounted = all(r[k] for k in r if k.endswith("_accounted"))
    return "\n".join(
        [
            f"emaillog benchmark (IMAP, Dovecot on this machine): n={r['n']}",
            f"  drain (service)       {r['drain_msgs_per_s']:>10.1f} msg/s  "
            f"{r['drain_seconds']:.2f} s incl. start-up {r['startup_seconds']:.2f} s",
            f"  client limit          {r['client_limit_msgs_per_s']:>10.1f} msg/s  "
            f"efficiency {r['efficiency_vs_client_limit']:.3f}",
            f"  baseline (NAV-style)  {r['baseline_msgs_per_s']:>10.2f} msg/s  "
            f"speedup {r['speedup_vs_baseline']:.1f}x",
            f"  steady (IDLE)         p50 {r['steady_p50_ms']:.0f} / p95 {r['steady_p95_ms']:.0f}"
            f" / p99 {r['steady_p99_ms']:.0f} ms",
            f"  memory                {r['peak_rss_mb']:>10.1f} MB peak RSS while draining",
            f"  every message accounted for: {accounted}",
        ]
    )
