"""`emaillog demo --source graph|imap --exit-when-drained`: the demo with the service reading
exchange_sim through its Graph face, or a real Dovecot through IMAP, as a user runs it (a
subprocess with its own data directory and HTTP port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipeline.cli.demo.data import expected_counts
from tests.demo.test_demo_run import RUN_LIMIT_SECONDS, _free_port


@pytest.mark.parametrize(
    ("source", "banner"),
    [("graph", "Graph face at http://127.0.0.1:"), ("imap", "Dovecot at imaps://localhost:")],
)
def test_demo_through_another_source_gives_the_expected_counts(source: str, banner: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"emaillog-demo-{source}-test-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMAILLOG_")}
        env |= {"EMAILLOG_DATA_DIR": str(Path(folder)), "EMAILLOG_HTTP_PORT": str(_free_port())}
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "demo", "--source", source, "--exit-when-drained"],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT_SECONDS,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert banner in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == expected_counts()
    logged = expected_counts()["logged"]
    assert f"Storage folder: {logged} messages; journal: {logged} stored" in result.stdout
