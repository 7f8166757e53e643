"""A PostgreSQL server of its own that a test can stop and start (pgserver ships pg_ctl).

The session's shared server (tests/conftest.py) must never go down under other tests, so the
outage scenario gets this one. `stop()` is an immediate shutdown: to the service it looks
like a crash of the database (connections reset, recovery on start). The socket directory
stays the same, so the service's URL is valid again after `start()`.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import asyncpg
import pgserver
from pgserver._commands import pg_ctl

from tests.reliability import invariants
from tests.reliability.scenario import prepare


class RestartablePostgres:
    def __init__(self, data_dir: Path) -> None:
        self._server = pgserver.get_server(data_dir, cleanup_mode="stop")
        info = self._server.get_postmaster_info()
        self._socket_dir = info.socket_dir
        self.url = self._server.get_uri()
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl(list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=30)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "immediate", "stop")
        self.running = False

    def start(self) -> None:
        if self.running:
            return
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self._server.log),
            "start",
        )
        self.running = True

    @staticmethod
    def pause(seconds: float) -> None:
        time.sleep(seconds)

    def new_database(self) -> str:
        """A fresh database, migrated and with the test directory loaded."""

        async def create() -> str:
            name = "outage_" + uuid.uuid4().hex[:10]
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()
            base, _, query = self.url.partition("?")
            url = base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")
            await prepare(url)
            return url

        url: str = invariants.run(create())
        return url

    def close(self) -> None:
        self.start()
        self._server.cleanup()
