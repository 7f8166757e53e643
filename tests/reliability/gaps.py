"""The "no stall" invariant: no stretch longer than `MAX_GAP_SECONDS` in which mail waited
in the queue folder while the service disposed of none.

`GapMonitor` samples, from a thread, the queue folder (through the simulator) and the
service's disposal counter (its /metrics); `longest` is the longest such stretch seen.
"""

from __future__ import annotations

import threading
import time

from exchange_sim import SimulatorThread
from tests.reliability.process import ServiceProcess
from tests.service.harness import MAILBOX, QUEUE

MAX_GAP_SECONDS = 60.0
SAMPLE_SECONDS = 0.5


class GapMonitor:
    def __init__(self, sim: SimulatorThread, service: ServiceProcess, queue: str = QUEUE) -> None:
        self._sim = sim
        self._queue = queue
        self._service = service
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gap-monitor", daemon=True)
        self.longest = 0.0

    def __enter__(self) -> GapMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _disposed(self) -> float | None:
        try:
            return sum(self._service.messages_total().values())
        except Exception:  # the process is stopping: no sample
            return None

    def _run(self) -> None:
        waiting_since: float | None = None
        last_count: float | None = None
        while not self._stop.wait(SAMPLE_SECONDS):
            count = self._disposed()
            queued = bool(self._sim.list_items(MAILBOX, self._queue))
            now = time.monotonic()
            if count is None:
                continue
            if not queued or count != last_count:
                waiting_since = now if queued else None
                last_count = count
                continue
            if waiting_since is None:
                waiting_since = now
            self.longest = max(self.longest, now - waiting_since)

    def check(self) -> None:
        assert self.longest <= MAX_GAP_SECONDS, (
            f"mail waited {self.longest:.1f}s in the queue with nothing disposed of"
        )
