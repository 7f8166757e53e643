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
)
ACCOUNTED = ("drain_accounted", "client_limit_accounted", "steady_accounted", "baseline_accounted")


@pytest.mark.timeout(240)
def test_small_benchmark_run_accounts_for_every_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--n", "200", "--seconds", "3"],
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
    for key in ACCOUNTED:
        assert result[key] is True, key
    assert result["service_exit_codes"] == [0, 0]
    assert "drain (service)" in done.stdout  # the table comes before the JSON
