"""`emaillog run` as a real subprocess: start, scrape, SIGTERM, SIGKILL, and its log.

The simulator runs in the test process (`SimulatorThread`), PostgreSQL is a real server;
only the service is a separate process, so a SIGKILL loses exactly what a crash loses.
Every wait has a deadline that guards against hangs (never a measurement).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exchange_sim import SimulatorThread
from pipeline.config import PREFIX, Settings
from pipeline.crashpoints import CRASH_VARIABLE
from tests.service.harness import settings_for

#: Safety net for every wait in this suite; a healthy run needs a small fraction of it.
DEADLINE_SECONDS = 60.0
POLL_SECONDS = 0.05
EMAILLOG = Path(sys.executable).parent / "emaillog"

#: The suite's defaults on top of the service harness's (small batches, short intervals).
RELIABILITY_SETTINGS: dict[str, Any] = {
    "reconcile_interval_seconds": 1.0,
    "catch_up_interval_seconds": 5.0,
    "retry_max_attempts": 5,
    "retry_max_wait_seconds": 0.5,
    "drain_timeout_seconds": 10.0,
    "db_pool_connections": 4,
    "fetch_batch_messages": 5,
    "move_batch_messages": 5,
    "store_batch_messages": 5,
    "never_log": ("blocked.test",),
    "log_level": "INFO",
}


def environment(settings: Settings, crash_at: str | None = None) -> dict[str, str]:
    """The process environment for `settings` (every field as its EMAILLOG_ variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(settings.environment())
    if crash_at:
        env[CRASH_VARIABLE] = crash_at
    return env


def reliability_settings(sim: SimulatorThread, database_url: str, **overrides: Any) -> Settings:
    values = dict(RELIABILITY_SETTINGS)
    values.update(overrides)
    return settings_for(sim.sim, database_url, **values)


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE_SECONDS) -> None:
    """Poll `condition` until true; AssertionError naming `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


class ServiceProcess:
    """One `emaillog run` process; its output goes to `log_path` (shown when a test fails)."""

    def __init__(self, settings: Settings, log_path: Path, crash_at: str | None = None) -> None:
        self.settings = settings
        self.crash_at = crash_at
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(EMAILLOG), "run"],
            env=environment(settings, crash_at),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")  # the child writes straight to it

    def _check_alive(self, what: str) -> None:
        if not self.alive():
            tail = "\n".join(self.log_text().splitlines()[-30:])
            raise AssertionError(f"service exited ({self.proc.returncode}) before {what}:\n{tail}")

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> bool:
        self._check_alive("it was ready")
        try:
            status, _ = self._get("/readyz")
        except OSError:
            return False
        return status == 200

    def wait_ready(self) -> None:
        wait_for(self.ready, "/readyz 200")

    def wait_ready_or_gone(self) -> None:
        """For a process meant to crash: until it is ready, or already dead."""
        wait_for(lambda: not self.alive() or self.ready(), "/readyz 200 or exit")

    def readiness(self) -> dict[str, Any]:
        _, body = self._get("/readyz")
        result: dict[str, Any] = json.loads(body)
        return result

    def metrics(self) -> dict[str, float]:
        """Every sample on /metrics: name{label="v",...} -> value (labels sorted)."""
        self._check_alive("scraping /metrics")
        _, text = self._get("/metrics")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def messages_total(self) -> dict[str, float]:
        """emaillog_messages_total by outcome, as this process counted them."""
        prefix = 'emaillog_messages_total{outcome="'
        return {
            name[len(prefix) : -2]: value
            for name, value in self.metrics().items()
            if name.startswith(prefix)
        }

    def in_flight(self) -> float:
        return self.metrics().get("emaillog_in_flight_messages", -1.0)

    def wait_exit(self, deadline: float = DEADLINE_SECONDS) -> int:
        try:
            code = self.proc.wait(timeout=deadline)
        finally:
            self._log.close()
        return code

    def wait_crashed(self) -> None:
        """The process must die by its own crash point (SIGKILL), not otherwise."""
        code = self.wait_exit()
        text = self.log_text()
        assert code == -signal.SIGKILL, f"expected SIGKILL at {self.crash_at}, exit {code}"
        assert f"crash point {self.crash_at.split(':')[0] if self.crash_at else ''}" in text

    def stop(self) -> None:
        """SIGTERM: the service drains and must exit 0."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit()
        assert code == 0, f"exit {code} after SIGTERM:\n{self.log_text()[-3000:]}"

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.wait_exit()
