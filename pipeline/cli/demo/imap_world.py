"""`emaillog demo --source imap`: the demo's mail side on a real Dovecot instead of exchange_sim.

`dovecot_world()` starts Debian's Dovecot unprivileged in a temporary directory (the
`exchange_sim.dovecot` module, shared with the tests and the benchmark) and yields a `DovecotWorld`:
the few calls the demo makes of its mail server (deliver, save a draft, list a folder),
done over IMAP APPEND / SEARCH. `imap_settings()` points the service at it (implicit TLS,
verified against the certificate generated for the run). Like exchange_sim, the
`exchange_sim.dovecot` module is imported lazily and only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config import ImapSettings, Settings, SourceKind
from pipeline.config_values import ImapAuth, ImapSecurity
from pipeline.errors import EmailLogError
from pipeline.mailparse import parse_mime


class DovecotWorld:
    """What the demo asks of its mail server, on Dovecot (`server`: an
    exchange_sim.dovecot.Dovecot). The `mailbox` arguments are the demo's; Dovecot's demo
    user stands for it."""

    def __init__(self, server: Any) -> None:
        self.server = server

    @property
    def address(self) -> str:
        return f"imaps://localhost:{self.server.tls_port}"

    def deliver(self, mailbox: str, folder: str, raw: bytes) -> str:
        return self._id(folder, self.server.append(folder, raw))

    def save_draft(self, mailbox: str, folder: str, raw: bytes) -> str:
        return self._id(folder, self.server.append(folder, raw, flags="\\Draft"))

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        """Items as {"id": "UIDVALIDITY:UID", "message_id": ...}, like exchange_sim's."""
        validity = self.server.uidvalidity(folder)
        items: list[dict[str, Any]] = []
        with self.server.session() as client:
            client.select(f'"{folder}"', readonly=True)
            _, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for part in data:
            if isinstance(part, tuple):
                uid = int(part[0].decode().split("UID ", 1)[1].split()[0])
                message_id = parse_mime(part[1]).message_id
                items.append({"id": f"{validity}:{uid}", "message_id": message_id})
        return items

    def hint(self, folder: str) -> str:
        return (
            f"Deliver more mail: APPEND to {folder!r} at {self.address} as "
            f"{self.server.user!r} / {self.server.password!r} (any IMAP client)"
        )

    def _id(self, folder: str, uid: int) -> str:
        return f"{self.server.uidvalidity(folder)}:{uid}"


@contextlib.contextmanager
def dovecot_world(folders: list[str]) -> Iterator[DovecotWorld]:
    try:
        from exchange_sim.dovecot import Dovecot
    except ImportError as exc:
        raise EmailLogError(
            "emaillog demo --source imap needs the simulator's dependencies and Debian's "
            f"dovecot-imapd ({exc})"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="emaillog-demo-dovecot-") as root:
        try:
            started = Dovecot.start(Path(root), folders=folders)
            server = started.__enter__()
        except RuntimeError as exc:  # not installed, or could not start: say why
            raise EmailLogError(f"emaillog demo --source imap: {exc}") from exc
        try:
            yield DovecotWorld(server)
        finally:
            started.__exit__(None, None, None)


def imap_settings(settings: Settings, world: DovecotWorld) -> Settings:
    """`settings` with the IMAP source pointed at the demo's Dovecot."""
    server = world.server
    imap = ImapSettings(
        host="localhost",
        port=server.tls_port,
        security=ImapSecurity.TLS,
        username=server.user,
        password=server.password,
        auth=ImapAuth.LOGIN,
        ca_file=server.ca_file,
    )
    source = dataclasses.replace(settings.source, kind=SourceKind.IMAP, imap=imap)
    return dataclasses.replace(settings, source=source)
