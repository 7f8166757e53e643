"""The processes the benchmark runs: exchange_sim and `emaillog run`, each in its own process.

    async with SimProcess(mailbox, latency_ms) as sim:    # python -m exchange_sim
        await sim.deliver_all(messages)                   # POST /_sim/deliver, in order
    service = ServiceProcess(env, log_path); await service.start(); ...; await service.stop()

`ProcStats` reads /proc/<pid> (psutil is not installed): peak RSS (VmHWM) and CPU seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiohttp

from bench.corpus import BenchMessage

QUEUE_FOLDER = "Email Logging/Queue"
STORAGE_FOLDER = "Email Logging/Storage"
#: Concurrent side-channel deliveries when filling the queue before a drain.
DELIVERY_CONCURRENCY = 8
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: How the service is started (the product's own entry point, as in production).
SERVICE_COMMAND = (sys.executable, "-m", "pipeline", "run")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class ProcStats:
    """What /proc says about a live process."""

    peak_rss_mb: float
    rss_mb: float
    cpu_seconds: float

    @classmethod
    def read(cls, pid: int) -> ProcStats:
        status = Path(f"/proc/{pid}/status").read_text()
        kb = {
            line.split(":")[0]: int(line.split()[1])
            for line in status.splitlines()
            if line.startswith(("VmHWM", "VmRSS"))
        }
        # Fields after the parenthesised command name; utime and stime are 14th and 15th.
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
        return cls(kb["VmHWM"] / 1024, kb["VmRSS"] / 1024, cpu)


class SimProcess:
    """`python -m exchange_sim` on a free port with per-request latency injected."""

    def __init__(self, mailbox: str, latency_ms: float, log_path: Path) -> None:
        self.mailbox = mailbox
        self.latency_ms = latency_ms
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ews_url = f"{self.base_url}/EWS/Exchange.asmx"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimProcess:
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exchange_sim",
                    "--port",
                    str(self.port),
                    "--mailbox",
                    self.mailbox,
                    "--folder",
                    QUEUE_FOLDER,
                    "--folder",
                    STORAGE_FOLDER,
                    "--latency-ms",
                    str(self.latency_ms),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=DELIVERY_CONCURRENCY * 2)
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"exchange_sim exited at start; see {self._log_path}")
            try:
                async with self._http.get(f"{self.base_url}/_sim/state") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"exchange_sim did not start; see {self._log_path}")
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def deliver(self, raw: bytes, folder: str = QUEUE_FOLDER) -> str:
        """Deliver one message as transport would; its item id."""
        assert self._http is not None
        params = {"mailbox": self.mailbox, "folder": folder}
        async with self._http.post(f"{self.base_url}/_sim/deliver", params=params, data=raw) as r:
            r.raise_for_status()
            item_id: str = (await r.json())["item_id"]
            return item_id

    async def deliver_all(self, messages: list[BenchMessage]) -> list[str]:
        """Deliver every message (a few at a time); item ids in message order."""
        ids: list[str] = [""] * len(messages)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(messages):
                i = next_index
                next_index += 1
                ids[i] = await self.deliver(messages[i].raw)

        async with asyncio.TaskGroup() as tg:
            for _ in range(DELIVERY_CONCURRENCY):
                tg.create_task(worker())
        return ids

    async def requests_served(self) -> int:
        """EWS requests the simulator has answered so far (its /_sim/state counter)."""
        assert self._http is not None
        async with self._http.get(f"{self.base_url}/_sim/state") as r:
            r.raise_for_status()
            served: int = (await r.json())["requests_served"]
            return served

    async def count(self, folder: str) -> int:
        assert self._http is not None
        params = {"mailbox": self.mailbox, "folder": folder}
        async with self._http.get(f"{self.base_url}/_sim/items", params=params) as r:
            r.raise_for_status()
            return len((await r.json())["items"])


class ServiceProcess:
    """`python -m pipeline run` with the given environment; stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], http_port: int, log_path: Path) -> None:
        self._env = env
        self._http_url = f"http://127.0.0.1:{http_port}"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.time() just before the process was created
        self.ready_at = 0.0  # time.time() of the first /readyz 200
        self.ready_stats: ProcStats | None = None
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        """Start the service and wait until /readyz answers 200 (database and source up)."""
        with self._log_path.open("ab") as log:
            self.started_at = time.time()
            self._proc = subprocess.Popen(
                list(SERVICE_COMMAND),
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        async with aiohttp.ClientSession() as http:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"emaillog run exited at start; see {self._log_path}")
                try:
                    async with http.get(f"{self._http_url}/readyz") as response:
                        if response.status == 200:
                            self.ready_at = time.time()
                            self.ready_stats = ProcStats.read(self._proc.pid)
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"emaillog run not ready in time; see {self._log_path}")
                await asyncio.sleep(0.02)

    def stats(self) -> ProcStats:
        return ProcStats.read(self.pid)

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self._http_url}/metrics") as response,
        ):
            response.raise_for_status()
            return await response.text()

    async def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; the exit code (killed after the timeout: -9)."""
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self._proc.wait, STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait)
        self.exit_code = self._proc.returncode
        return self.exit_code
