"""`python -m bench --scaling`: the drain at growing N, one fresh simulator and service
each. The rate should stay flat and peak RSS bounded by the settings (the in-flight cap,
the inbox sizes), not by N."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import phases
from bench.context import bench_context, progress
from bench.corpus import expected_counts, generate


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rows = []
    async with bench_context(args, tmp) as (ctx, people):
        for n in args.scaling_sizes:
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


def table(r: dict[str, Any]) -> str:
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
