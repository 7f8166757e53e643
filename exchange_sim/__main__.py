"""exchange-sim: serve the EWS simulator until SIGINT/SIGTERM.

    exchange-sim --port 8765 --mailbox queue@example.com --folder "Email Logging/Queue" \\
                 --folder public:/Queue --user svc:secret --auth basic \\
                 --app CLIENT_ID:SECRET --app OTHER_ID:@cert.pem

A Graph app's credential is a secret, or `@PATH` to a PEM certificate: the app then signs
client assertions with that certificate's key (certificate credentials).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from exchange_sim.api import Simulator
from exchange_sim.config import DEFAULT_MAILBOX, DEFAULT_PORT, SimConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="exchange-sim", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--mailbox", action="append", default=None, help=f"repeatable (default {DEFAULT_MAILBOX})"
    )
    parser.add_argument(
        "--folder",
        action="append",
        default=[],
        help='folder path created in every mailbox, e.g. "Email Logging/Queue"; '
        '"public:/Queue" for a public folder (repeatable)',
    )
    parser.add_argument(
        "--user", action="append", default=[], help="NAME:PASSWORD (repeatable; default svc:svc)"
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        help="CLIENT_ID:SECRET or CLIENT_ID:@CERT.pem of a Graph app (repeatable); the Graph "
        "face then needs its tokens",
    )
    parser.add_argument(
        "--auth", default="none", choices=["none", "basic", "ntlm", "oauth2", "any"]
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="fixed latency per EWS request"
    )
    parser.add_argument(
        "--latency-max-ms",
        type=float,
        default=None,
        help="with --latency-ms: random latency between the two",
    )
    parser.add_argument(
        "--minute-seconds",
        type=float,
        default=60.0,
        help="length of an EWS minute (ConnectionTimeout, subscription lifetimes)",
    )
    parser.add_argument("--keepalive-seconds", type=float, default=30.0)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SimConfig:
    users: dict[str, str] = {}
    for spec in args.user or ["svc:svc"]:
        name, sep, password = spec.partition(":")
        if not sep:
            raise SystemExit(f"--user expects NAME:PASSWORD, got {spec!r}")
        users[name] = password
    apps: dict[str, str] = {}
    for spec in args.app:
        client_id, sep, secret = spec.partition(":")
        if not sep or not client_id:
            raise SystemExit(f"--app expects CLIENT_ID:SECRET or CLIENT_ID:@CERT.pem, got {spec!r}")
        apps[client_id] = Path(secret[1:]).read_text() if secret.startswith("@") else secret
    return SimConfig(
        mailboxes=args.mailbox or [DEFAULT_MAILBOX],
        apps=apps,
        folders=args.folder,
        users=users,
        auth_mode=args.auth,
        minute_seconds=args.minute_seconds,
        keepalive_seconds=args.keepalive_seconds,
        latency_min_ms=args.latency_ms,
        latency_max_ms=args.latency_ms if args.latency_max_ms is None else args.latency_max_ms,
    )


async def serve(sim: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    print(f"exchange-sim: EWS at {sim.ews_url}", flush=True)
    print(f"exchange-sim: Graph at {sim.graph_url}", flush=True)
    print(f"exchange-sim: side channel at {sim.base_url}/_sim/", flush=True)
    print(f"exchange-sim: mailboxes {', '.join(sim.config.mailboxes)}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        print("exchange-sim: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sim = Simulator(config_from_args(args), host=args.host, port=args.port)
    asyncio.run(serve(sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
