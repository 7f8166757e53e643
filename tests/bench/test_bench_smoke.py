"""Keeps `python -m bench` working: a small run end to end, as a subprocess.

No timing assertions (timings live in the benchmark's output, not in the test suite): only
that the last line is the JSON summary with every key and a sane type, that every message
of every phase was accounted for with the outcome the generator expected, and that the
service exited cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

NUMBERS = (
    "drain_msgs_per_s",
    "baseline_msgs_per_s",
    "speedup_vs_baseline",
    "client_limit_msgs_per_s",
    "efficiency_vs_client_limit",
    "steady_p50_ms",
    "steady_p95_ms",
    "steady_p99_ms",
    "steady_rate_per_s",
    "peak_rss_mb",
    "cpu_s_per_1000_msgs",
    "latency_ms",
    "startup_seconds",
    "drain_seconds",
    "steady_cpu_cores",
    "steady_requests_per_msg",
    "cpu_vs_client_limit",
    "client_limit_cpu_s_per_1000_msgs",
    "steady_knee_msgs_per_s",
    "steady_low_p50_ms",
    "steady_low_p99_ms",
)
ACCOUNTED = (
    "drain_accounted",
    "client_limit_accounted",
    "steady_accounted",
    "steady_low_accounted",
    "baseline_accounted",
)
#: Short phases: 3 s steady, 2 s at the low rate, a knee search of 1 s steps up to 200 msg/s.
SMALL = (
    "--n", "200", "--seconds", "3", "--low-seconds", "2",
    "--knee-step-seconds", "1", "--knee-max-rate", "200",
)  # fmt: skip


@pytest.mark.timeout(240)
def test_small_benchmark_run_accounts_for_every_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *SMALL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])

    for key in NUMBERS:
        assert isinstance(result[key], int | float), key
        assert result[key] >= 0, key
    assert result["drain_msgs_per_s"] > 0 and result["client_limit_msgs_per_s"] > 0
    assert result["baseline_msgs_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert result["n"] == 200
    assert isinstance(result["steady_kept_up"], bool)

    expected = result["expected_outcomes"]
    assert sum(expected.values()) == 200
    assert set(expected) == {
        "logged",
        "unregistered",
        "duplicate",
        "sensitive",
        "excluded",
        "address_too_long",
    }
    assert result["drain_outcomes"] == expected
    assert result["baseline_outcomes"] == expected
    assert result["steady_sent"] == 300  # 100 msg/s for 3 s
    # Where a message's time goes, per stage, and how large the batches were.
    assert {"fetch", "classify", "dedupe"} <= set(result["p50_breakdown_ms"])
    assert set(result["p50_breakdown_ms"]["fetch"]) == {"wait", "work"}
    assert all(size >= 1 for size in result["steady_batch_messages"].values())
    # The knee search ran its steps: 100 then 200 msg/s (the cap).
    assert [step[0] for step in result["knee_steps"]][:2] == [100, 200]
    for key in ACCOUNTED:
        assert result[key] is True, key
    assert result["service_exit_codes"] == [0, 0]
    assert "drain (service)" in done.stdout  # the table comes before the JSON


@pytest.mark.timeout(240)
def test_scaling_mode_drains_each_size() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--scaling", "--scaling-sizes", "60,120"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["n"] for row in result["scaling"]] == [60, 120]
    for row in result["scaling"]:
        assert row["accounted"] is True
        assert row["drain_msgs_per_s"] > 0 and row["peak_rss_mb"] > 0
    assert result["peak_rss_mb_max"] == max(r["peak_rss_mb"] for r in result["scaling"])
