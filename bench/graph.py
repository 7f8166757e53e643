"""`python -m bench --source graph`: the EWS benchmark's questions, with the service reading
exchange_sim through its Graph face (EMAILLOG_SOURCE=graph, app-only, delta query).

    drain         `emaillog run` on N queued messages (phases.drain)
    client limit  the same library the service uses (GraphSource, plain aiohttp): $batch
                  fetch of `fetch_batch_messages`, then $batch move, one after the other
    steady        RATE msg/s delivered while the service polls delta: latency per message
    baseline      NAV-style, as in the EWS benchmark (one message at a time over EWS: NAV
                  has no Graph client), so the speed-up is against the same reference

The simulator's `--latency-ms` applies to every Graph request (and $batch part) too. No app
is registered, so the Graph face is open; the service still fetches a token (as the
simulator's default user). Steady latency waits on EMAILLOG_GRAPH_POLL_SECONDS (0.5 s here)
rather than a push, unless notifications are configured.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from bench import db, phases
from bench.context import run_env
from bench.corpus import NEVER_LOG, BenchMessage, Directory, generate
from bench.procs import STORAGE_FOLDER, SimProcess
from pipeline.config import Settings
from pipeline.model import MailRef
from pipeline.sources import Fetched, Stored
from pipeline.sources.graph import GraphSource
from pipeline.store.db import open_database
from pipeline.store.directory_repo import load_directory

#: The simulator's default user doubles as the app the token endpoint grants.
APP_ID = APP_SECRET = "svc"
MAILBOX = "queue@ourco.example"  # as the EWS benchmark (bench/__main__.py)


def graph_id(ews_id: str) -> str:
    return ews_id.replace("/", "-").replace("+", "_")


class GraphSimProcess(SimProcess):
    """exchange_sim as the Graph source sees it: deliveries answer with Graph ids."""

    async def deliver(self, raw: bytes, folder: str = "Email Logging/Queue") -> str:
        return graph_id(await super().deliver(raw, folder))


def graph_env(data_dir: Path, database_url: str) -> phases.EnvFor:
    def env_for(sim: SimProcess) -> tuple[dict[str, str], int]:
        return run_env(
            data_dir,
            database_url,
            {
                "EMAILLOG_SOURCE": "graph",
                "EMAILLOG_GRAPH_MAILBOX": MAILBOX,
                "EMAILLOG_GRAPH_TENANT_ID": "bench.onmicrosoft.com",
                "EMAILLOG_GRAPH_CLIENT_ID": APP_ID,
                "EMAILLOG_GRAPH_CLIENT_SECRET": APP_SECRET,
                "EMAILLOG_GRAPH_URL": f"{sim.base_url}/v1.0",
                "EMAILLOG_GRAPH_AUTHORITY_URL": sim.base_url,
                "EMAILLOG_GRAPH_POLL_SECONDS": "0.5",
            },
        )

    return env_for


async def client_limit(
    ctx: phases.Context, messages: list[BenchMessage]
) -> phases.ClientLimitPhase:
    """GraphSource alone: $batch fetch, then $batch move, batch after batch (not timed:
    the token and the folder lookups)."""
    async with GraphSimProcess(MAILBOX, ctx.latency_ms, ctx.logs / "sim-client.log") as sim:
        ids = await sim.deliver_all(messages)
        env, _ = ctx.env_for(sim)
        settings = Settings.from_env(env)
        source = GraphSource(settings)
        await source.open()
        fetched = moved = 0
        size = settings.limits.fetch_batch_messages
        try:
            started = time.perf_counter()
            for start in range(0, len(ids), size):
                refs = [MailRef(i) for i in ids[start : start + size]]
                fetched += sum(isinstance(f, Fetched) for f in await source.fetch(refs))
                moved += sum(isinstance(m, Stored) for m in await source.move_to_storage(refs))
            seconds = time.perf_counter() - started
        finally:
            await source.close()
        stored = await sim.count(STORAGE_FOLDER)
    return phases.ClientLimitPhase(seconds, fetched, moved, stored, 0)


async def run_graph(
    args: argparse.Namespace, tmp: Path, ews_env: Any, summarise: Any
) -> dict[str, Any]:
    """The four phases; `ews_env` (the EWS benchmark's env_for factory) serves the NAV-style
    baseline, `summarise` is the EWS benchmark's."""
    logs = tmp / "logs"
    logs.mkdir()
    data_dir = tmp / "data"
    people = Directory(args.seed, args.salespersons, args.contacts)
    messages = generate(people, args.n, args.seed, tag="drain")
    steady_messages = generate(people, int(args.rate * args.seconds), args.seed + 1, tag="steady")
    env = {"EMAILLOG_DATA_DIR": str(data_dir), "EMAILLOG_NEVER_LOG": ",".join(NEVER_LOG)}
    settings = Settings.from_env(env | {"EMAILLOG_EWS_MAILBOX": MAILBOX})
    async with open_database(settings.database) as database:
        await db.import_directory(database.pool, people.write_csv(tmp / "directory"))
        async with database.pool.acquire() as conn:
            directory = await load_directory(conn)
        ctx = phases.Context(
            settings=settings,
            pool=database.pool,
            directory=directory,
            env_for=graph_env(data_dir, database.url),
            latency_ms=args.latency_ms,
            logs=logs,
            sim_class=GraphSimProcess,
        )
        drain = await phases.drain(ctx, messages)
        client = await client_limit(ctx, messages)
        steady = await phases.steady(ctx, steady_messages, args.rate)
        ews_ctx = dataclasses.replace(
            ctx, env_for=ews_env(data_dir, database.url), sim_class=SimProcess
        )
        base = await phases.baseline(ews_ctx, messages)
    result: dict[str, Any] = summarise(args, messages, steady_messages, drain, client, steady, base)
    return {"source": "graph"} | result
