"""Keeps `python -m bench --source graph` working: a small run end to end, as a subprocess.
No timing assertions: every message of every phase accounted for, clean exits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import ACCOUNTED
from tests.conftest import REPO

#: The Graph run has no second, low-rate steady phase (that one is the EWS run's).
GRAPH_ACCOUNTED = tuple(key for key in ACCOUNTED if key != "steady_low_accounted")


@pytest.mark.timeout(240)
def test_small_graph_benchmark_run_accounts_for_every_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--source", "graph", "--n", "200", "--seconds", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["source"] == "graph"
    assert all(result[key] is True for key in GRAPH_ACCOUNTED), {
        k: result[k] for k in GRAPH_ACCOUNTED
    }
    assert result["service_exit_codes"] == [0, 0]
