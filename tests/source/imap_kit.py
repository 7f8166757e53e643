"""The IMAP kit: `ImapSource` against a real Dovecot (tests/dovecot.py), through a proxy
(tests/imap_proxy.py) that drops the IDLE connection and answers "busy" on request.
Mail arrives by IMAP APPEND straight into Dovecot, as another client or LMTP would put it.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.sources import MailSource, SourceEvents
from pipeline.sources.imap import ImapSource
from tests.dovecot import PASSWORD, USER, Dovecot
from tests.imap_proxy import ImapProxy
from tests.settings import make_settings
from tests.source.conftest import AUDIT, QUEUE, STORAGE

TRASH = "Trash"


def imap_settings(server: Dovecot, port: int | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "source": "imap",
        "imap_host": "127.0.0.1",
        "imap_port": port or server.port,
        "imap_security": "none",
        "imap_username": USER,
        "imap_password": PASSWORD,
        "imap_timeout_seconds": 10,
        "queue_folder": QUEUE,
        "storage_folder": STORAGE,
        "poll_interval_seconds": 0.5,
    }
    values.update(overrides)
    return make_settings(**values)


class ImapKit:
    def __init__(self, server: Dovecot, proxy: ImapProxy, events: SourceEvents) -> None:
        self.server = server
        self.proxy = proxy
        self.events = events
        self.opened: list[ImapSource] = []

    async def open_source(self) -> MailSource:
        settings = imap_settings(self.server, self.proxy.port, disposal=f"move:{AUDIT}")
        source = ImapSource(settings, self.events)
        self.opened.append(source)
        await source.open()
        return source

    def _id(self, folder: str, uid: int) -> str:
        return f"{self.server.uidvalidity(folder)}:{uid}"

    def deliver(self, raw: bytes) -> str:
        return self._id(QUEUE, self.server.append(QUEUE, raw))

    def create(self, raw: bytes) -> str:
        return self.deliver(raw)  # Dovecot adds no Message-ID on APPEND

    def save_draft(self, raw: bytes) -> str:
        return self._id(QUEUE, self.server.append(QUEUE, raw, flags="\\Draft"))

    async def remove(self, item_id: str) -> None:
        uid = item_id.split(":")[1]
        with self.server.session() as client:
            client.select(f'"{QUEUE}"')
            client.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
            client.uid("EXPUNGE", uid)

    def drop_connection(self) -> None:
        # The watcher is the connection that sends IDLE; before its first IDLE it cannot be
        # told apart, and then every connection goes (as when the server restarts).
        if not self.proxy.drop_idlers():
            self.proxy.drop_all()

    def throttle_next_fetch(self, seconds: float) -> None:
        self.proxy.busy_next("BODY.PEEK", seconds)

    def ids(self, folder: Any) -> set[str]:
        from tests.source.kits import Folder

        name = {
            Folder.QUEUE: QUEUE,
            Folder.STORAGE: STORAGE,
            Folder.TRASH: TRASH,
            Folder.DISPOSAL: AUDIT,
        }[folder]
        validity = self.server.uidvalidity(name)
        return {f"{validity}:{uid}" for uid in self.server.uids(name)}


@asynccontextmanager
async def dovecot_server() -> AsyncIterator[Dovecot]:
    with (
        tempfile.TemporaryDirectory(prefix="dovecot-") as root,
        Dovecot.start(Path(root)) as server,
    ):
        yield server


@asynccontextmanager
async def imap_kit(events: SourceEvents) -> AsyncIterator[ImapKit]:
    async with dovecot_server() as server:
        proxy = await ImapProxy.start(server.port)
        kit = ImapKit(server, proxy, events)
        try:
            yield kit
        finally:
            for source in kit.opened:
                await source.close()
            await proxy.close()
