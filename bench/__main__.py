"""`python -m bench`: throughput, latency and memory of `emaillog run`, with its references.

    python -m bench [--n 5000] [--latency-ms 10] [--rate 100] [--seconds 30] [--seed 1]
    python -m bench --scaling      drain rate and peak RSS at N = 1,000, 5,000 and 20,000

One run, in order: drain (the service, N queued messages), client limit (bare exchangelib
GetItem + MoveItem of N ids), steady (RATE msg/s for SECONDS), knee (bench/knee.py: the
highest rate kept up with), baseline (NAV-style, one message at a time, on the first
BASELINE_N messages: its rate does not depend on N). Everything runs against an
exchange_sim process with LATENCY_MS injected per EWS request and an embedded PostgreSQL
in a temporary directory, with a directory of 1,000 salespersons and 50,000 contacts
imported through the product's CSV import.
Prints a table, then one JSON object as the last line. Ratios are what to compare across
machines; absolute figures drift with whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench import db, knee, phases
from bench.breakdown import mean_batch_messages, p50_breakdown_ms
from bench.corpus import NEVER_LOG, Directory, expected_counts, generate
from bench.procs import SimProcess, free_port
from pipeline.config import Settings
from pipeline.store.db import open_database
from pipeline.store.directory_repo import load_directory

MAILBOX = "queue@ourco.example"
#: --scaling: queued messages per drain.
SCALING_SIZES = (1_000, 5_000, 20_000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="messages in the drain phases")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="per EWS request")
    parser.add_argument("--rate", type=float, default=100.0, help="steady phase, msg/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="steady phase duration")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--salespersons", type=int, default=1_000)
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--baseline-n", type=int, default=1000, help="messages for the one-at-a-time baseline"
    )
    parser.add_argument("--no-knee", action="store_true", help="skip the knee search")
    parser.add_argument(
        "--scaling", action="store_true", help="drain at N = 1,000, 5,000, 20,000 instead"
    )
    parser.add_argument(
        "--source",
        choices=("ews", "graph", "imap"),
        default="ews",
        help="imap: a real Dovecot (bench/imap.py); graph: exchange_sim's Graph face "
        "(bench/graph.py)",
    )
    return parser.parse_args(argv)


def service_env(data_dir: Path, database_url: str) -> phases.EnvFor:
    """The environment of `emaillog run` for one simulator (and a fresh HTTP port)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMAILLOG_")}

    def env_for(sim: SimProcess) -> tuple[dict[str, str], int]:
        port = free_port()
        env = base | {
            "EMAILLOG_DATA_DIR": str(data_dir),
            "EMAILLOG_DATABASE_URL": database_url,
            "EMAILLOG_EWS_URL": sim.ews_url,
            "EMAILLOG_EWS_MAILBOX": MAILBOX,
            "EMAILLOG_EWS_AUTH": "none",
            "EMAILLOG_NEVER_LOG": ",".join(NEVER_LOG),
            "EMAILLOG_HTTP_HOST": "127.0.0.1",
            "EMAILLOG_HTTP_PORT": str(port),
        }
        return env, port

    return env_for


@asynccontextmanager
async def bench_context(
    args: argparse.Namespace, tmp: Path
) -> AsyncIterator[tuple[phases.Context, Directory]]:
    """An embedded PostgreSQL with the directory imported, and what the phases need."""
    logs = tmp / "logs"
    logs.mkdir()
    data_dir = tmp / "data"
    setup_started = time.perf_counter()
    people = Directory(args.seed, args.salespersons, args.contacts)
    settings = Settings.from_env(
        {
            "EMAILLOG_DATA_DIR": str(data_dir),
            "EMAILLOG_EWS_MAILBOX": MAILBOX,
            "EMAILLOG_NEVER_LOG": ",".join(NEVER_LOG),
        }
    )
    async with open_database(settings.database) as database:
        imported = await db.import_directory(database.pool, people.write_csv(tmp / "directory"))
        async with database.pool.acquire() as conn:
            directory = await load_directory(conn)
        ctx = phases.Context(
            settings=settings,
            pool=database.pool,
            directory=directory,
            env_for=service_env(data_dir, database.url),
            latency_ms=args.latency_ms,
            logs=logs,
        )
        setup_seconds = time.perf_counter() - setup_started
        progress(f"set-up {setup_seconds:.1f} s: directory {imported}; temp dir {tmp}")
        yield ctx, people


async def run_scaling(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The drain at growing N, one fresh simulator and service each: the rate should stay
    flat and peak RSS bounded by the settings (in-flight cap, inbox sizes), not by N."""
    rows = []
    async with bench_context(args, tmp) as (ctx, people):
        for n in SCALING_SIZES:
            messages = generate(people, n, args.seed, tag=f"scale{n}")
            drain = await phases.drain(ctx, messages)
            outcomes = drain.disposals.outcomes if drain.disposals else {}
            rows.append(
                {
                    "n": n,
                    "drain_msgs_per_s": round(n / drain.seconds, 1) if drain.seconds else 0.0,
                    "drain_msgs_per_s_after_ready": round(n / drain.after_ready_seconds, 1)
                    if drain.after_ready_seconds
                    else 0.0,
                    "peak_rss_mb": round(drain.end.peak_rss_mb, 1) if drain.end else 0.0,
                    "accounted": outcomes == expected_counts(messages)
                    and drain.queue_left == 0
                    and not drain.timed_out,
                }
            )
            progress(f"scaling n={n}: {rows[-1]}")
    rates = [r["drain_msgs_per_s_after_ready"] for r in rows]
    rss = [r["peak_rss_mb"] for r in rows]
    return {
        "latency_ms": args.latency_ms,
        "scaling": rows,
        "rate_min_over_max": round(min(rates) / max(rates), 3) if max(rates) else 0.0,
        "peak_rss_mb_max": max(rss),
        "peak_rss_mb_growth": round(max(rss) / min(rss), 3) if min(rss) else 0.0,
    }


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    async with bench_context(args, tmp) as (ctx, people):
        messages = generate(people, args.n, args.seed, tag="drain")
        steady_messages = generate(
            people, int(args.rate * args.seconds), args.seed + 1, tag="steady"
        )
        drain = await phases.drain(ctx, messages)
        progress(f"drain {drain.seconds:.1f} s")
        client = await phases.client_limit(ctx, messages)
        progress(f"client limit {client.seconds:.1f} s")
        steady = await phases.steady(ctx, steady_messages, args.rate)
        progress(f"steady {steady.send_seconds:.1f} s")
        found = None if args.no_knee else await knee.knee(ctx, people, seed=args.seed + 7)
        base_messages = messages[: args.baseline_n]
        base = await phases.baseline(ctx, base_messages)
        progress(f"baseline {base.seconds:.1f} s")
    return summarise(
        args, messages, steady_messages, drain, client, steady, base, found, base_messages
    )


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def summarise(
    args: argparse.Namespace,
    messages: list[Any],
    steady_messages: list[Any],
    drain: phases.DrainResult,
    client: phases.ClientLimitPhase,
    steady: phases.SteadyResult,
    base: phases.BaselinePhase,
    found: knee.KneeResult | None = None,
    base_messages: list[Any] | None = None,
) -> dict[str, Any]:
    n = len(messages)
    base_messages = messages if base_messages is None else base_messages
    expected = expected_counts(messages)
    drain_outcomes = drain.disposals.outcomes if drain.disposals else {}
    drain_rate = n / drain.seconds if drain.seconds else 0.0
    baseline_rate = len(base_messages) / base.seconds if base.seconds else 0.0
    client_rate = n / client.seconds if client.seconds else 0.0
    cpu = drain.end.cpu_seconds - drain.ready.cpu_seconds if drain.end and drain.ready else 0.0
    lat = steady.latencies_ms
    steady_expected = expected_counts(steady_messages)
    steady_outcomes = steady.disposals.outcomes if steady.disposals else {}
    caught_up = steady.caught_up_after_stop_s
    base_expected = expected_counts(base_messages)
    client_cpu = client.cpu_seconds / n if client.cpu_seconds else 0.0
    return {
        "n": n,
        "latency_ms": args.latency_ms,
        "drain_msgs_per_s": round(drain_rate, 1),
        "drain_seconds": round(drain.seconds, 3),
        "startup_seconds": round(drain.startup_seconds, 3),
        "drain_msgs_per_s_after_ready": round(n / drain.after_ready_seconds, 1)
        if drain.after_ready_seconds
        else 0.0,
        "drain_ews_requests": drain.ews_requests,
        "baseline_msgs_per_s": round(baseline_rate, 2),
        "speedup_vs_baseline": round(drain_rate / baseline_rate, 2) if baseline_rate else 0.0,
        "client_limit_msgs_per_s": round(client_rate, 1),
        "efficiency_vs_client_limit": round(drain_rate / client_rate, 3) if client_rate else 0.0,
        "client_limit_ews_requests": client.ews_requests,
        "steady_rate_per_s": round(steady.sent / steady.send_seconds, 1)
        if steady.send_seconds
        else 0.0,
        "steady_p50_ms": round(phases.percentile(lat, 50), 1),
        "steady_p95_ms": round(phases.percentile(lat, 95), 1),
        "steady_p99_ms": round(phases.percentile(lat, 99), 1),
        "steady_max_ms": round(lat[-1], 1) if lat else 0.0,
        "steady_kept_up": caught_up is not None and caught_up <= phases.KEPT_UP_WITHIN_SECONDS,
        "steady_backlog_at_stop": steady.backlog_at_stop,
        "steady_caught_up_after_stop_s": round(caught_up, 3) if caught_up is not None else None,
        "peak_rss_mb": round(drain.end.peak_rss_mb, 1) if drain.end else 0.0,
        "steady_peak_rss_mb": round(steady.end.peak_rss_mb, 1) if steady.end else 0.0,
        "cpu_s_per_1000_msgs": round(cpu / n * 1000, 3) if n else 0.0,
        "startup_cpu_s": round(drain.ready.cpu_seconds, 2) if drain.ready else 0.0,
        "expected_outcomes": expected,
        "drain_outcomes": drain_outcomes,
        "baseline_outcomes": base.outcomes,
        "drain_accounted": drain_outcomes == expected
        and drain.queue_left == 0
        and drain.metrics_total == n
        and not drain.timed_out,
        "client_limit_accounted": client.fetched == client.moved == client.stored == n,
        "steady_sent": steady.sent,
        "steady_accounted": steady.sent == len(steady_messages)
        and steady_outcomes == steady_expected
        and steady.queue_left == 0
        and len(lat) == steady.sent,
        "baseline_accounted": base.outcomes == base_expected
        and base.queue_left == 0
        and base.stored == base_expected.get("logged", 0),
        "service_exit_codes": [drain.exit_code, steady.exit_code],
        "baseline_n": len(base_messages),
        "steady_cpu_cores": round(steady.cpu_seconds / steady.send_seconds, 3)
        if steady.send_seconds
        else 0.0,
        "steady_requests_per_msg": round(steady.ews_requests / steady.sent, 3)
        if steady.sent
        else 0.0,
        "p50_breakdown_ms": p50_breakdown_ms(steady.metrics),
        "steady_batch_messages": mean_batch_messages(steady.metrics),
        "client_limit_cpu_s_per_1000_msgs": round(client_cpu * 1000, 3),
        "cpu_vs_client_limit": round(cpu / n / client_cpu, 3) if client_cpu and n else None,
        "steady_knee_msgs_per_s": round(found.knee, 1) if found else None,
        "knee_limited_by_delivery": found.limited_by_delivery if found else None,
        "knee_steps": [
            [round(s.rate), round(s.achieved, 1), round(s.p99_ms, 1), s.passed] for s in found.steps
        ]
        if found
        else None,
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        (
            "drain (service)",
            f"{r['drain_msgs_per_s']:.1f} msg/s",
            f"{r['drain_seconds']:.2f} s "
            f"incl. start-up {r['startup_seconds']:.2f} s; {r['drain_msgs_per_s_after_ready']:.1f} "
            f"msg/s from ready; {r['drain_ews_requests']} EWS requests",
        ),
        (
            "client limit",
            f"{r['client_limit_msgs_per_s']:.1f} msg/s",
            f"efficiency {r['efficiency_vs_client_limit']:.3f} (target >= 0.85); "
            f"{r['client_limit_ews_requests']} EWS requests",
        ),
        (
            "baseline (NAV-style)",
            f"{r['baseline_msgs_per_s']:.2f} msg/s",
            f"speedup {r['speedup_vs_baseline']:.1f}x (target >= 30; "
            f"on the first {r['baseline_n']} messages)",
        ),
        (
            "steady",
            f"{r['steady_rate_per_s']:.1f} msg/s",
            f"p50 {r['steady_p50_ms']:.0f} / p95 {r['steady_p95_ms']:.0f} / p99 "
            f"{r['steady_p99_ms']:.0f} ms (target p99 <= 250); kept up: {r['steady_kept_up']}",
        ),
        (
            "steady cost",
            f"{r['steady_cpu_cores']:.3f} cores",
            f"service CPU per wall second at {r['steady_rate_per_s']:.0f} msg/s (target <= 0.35); "
            f"{r['steady_requests_per_msg']:.2f} EWS requests per message",
        ),
        (
            "knee",
            f"{r['steady_knee_msgs_per_s'] or 0:.1f} msg/s",
            "highest rate kept up with, p99 <= 1 s (target >= 300)"
            + ("; limited by delivery" if r["knee_limited_by_delivery"] else ""),
        ),
        ("p50 breakdown", "ms", breakdown_text(r["p50_breakdown_ms"])),
        ("memory", f"{r['peak_rss_mb']:.1f} MB", "peak RSS while draining (target <= 150)"),
        (
            "cpu",
            f"{r['cpu_s_per_1000_msgs']:.3f} s",
            "service CPU per 1,000 messages (drain, "
            f"after ready; start-up {r['startup_cpu_s']:.2f} s); vs the bare client "
            f"{r['cpu_vs_client_limit']} (target <= 1.3)",
        ),
    ]
    width = max(len(a) for a, _, _ in rows)
    lines = [f"emaillog benchmark: n={r['n']}, latency {r['latency_ms']:g} ms per EWS request"]
    lines += [f"  {a:<{width}}  {b:>14}  {c}" for a, b, c in rows]
    accounted = all(
        r[k]
        for k in (
            "drain_accounted",
            "client_limit_accounted",
            "steady_accounted",
            "baseline_accounted",
        )
    )
    lines.append(
        f"  outcomes expected {r['expected_outcomes']}; every message accounted for: {accounted}"
    )
    return "\n".join(lines)


def breakdown_text(breakdown: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{stage} " + "/".join(f"{part} {ms:g}" for part, ms in parts.items())
        for stage, parts in breakdown.items()
    )


def scaling_table(r: dict[str, Any]) -> str:
    lines = [f"emaillog benchmark --scaling: latency {r['latency_ms']:g} ms per EWS request"]
    lines += [
        f"  n={row['n']:>6}  {row['drain_msgs_per_s']:>7.1f} msg/s "
        f"({row['drain_msgs_per_s_after_ready']:.1f} from ready)  peak RSS "
        f"{row['peak_rss_mb']:.1f} MB  accounted: {row['accounted']}"
        for row in r["scaling"]
    ]
    lines.append(
        f"  rate min/max {r['rate_min_over_max']:.3f}; "
        f"peak RSS growth {r['peak_rss_mb_growth']:.3f}x"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="emaillog-bench-"))
    render = table
    try:
        if args.source == "imap":
            from bench import imap

            result, render = asyncio.run(imap.run_imap(args, tmp)), imap.table
        elif args.source == "graph":
            from bench import graph

            result = asyncio.run(graph.run_graph(args, tmp, service_env, summarise))
        elif args.scaling:
            result, render = asyncio.run(run_scaling(args, tmp)), scaling_table
        else:
            result = asyncio.run(run(args, tmp))
    except BaseException:
        progress(f"failed; logs kept in {tmp / 'logs'}")
        raise
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(result))
    print(json.dumps(result, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
