"""Keeps `python -m bench --ui` working: a small fill, every kind of request answered 200,
and the JSON summary's keys. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SMALL = ("--entries", "3000", "--contacts", "500", "--salespersons", "20")


@pytest.mark.timeout(240)
def test_small_ui_benchmark_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--ui", *SMALL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["entries"] == 3000
    assert result["ui_failed_requests"] == 0
    for key in ("ui_list_p95_ms", "ui_search_p95_ms", "ui_list_p50_ms", "ui_search_p50_ms"):
        assert isinstance(result[key], int | float) and result[key] > 0, key
    assert result["ui_search_requests"] == 200
    assert {kind.split()[0] for kind in result["per_kind_p50_p95_ms"]} == {"list", "search"}
