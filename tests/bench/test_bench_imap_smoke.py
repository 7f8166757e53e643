"""Keeps `python -m bench --source imap` working: a small run on a real Dovecot, as a
subprocess. No timing assertions: only that every phase accounted for every message."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.timeout(240)
def test_small_imap_benchmark_run_accounts_for_every_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--source", "imap", "--n", "200", "--rate", "20",
         "--seconds", "2", "--salespersons", "100", "--contacts", "2000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["source"] == "imap" and result["n"] == 200
    assert sum(result["expected_outcomes"].values()) == 200
    for key in ("drain_accounted", "client_limit_accounted", "steady_accounted"):
        assert result[key] is True, key
    assert result["baseline_accounted"] is True
    assert result["service_exit_codes"] == [0, 0]
    assert result["drain_msgs_per_s"] > 0 and result["client_limit_msgs_per_s"] > 0
    assert "drain (service)" in done.stdout
