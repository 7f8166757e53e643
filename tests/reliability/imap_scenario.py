"""The reliability `Scenario` on a real Dovecot: `emaillog run` with EMAILLOG_SOURCE=imap,
mail APPENDed to the queue folder, the same invariants check as for EWS (invariants.py reads
the folders through `DovecotFolders`)."""

from __future__ import annotations

import imaplib
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.mailparse import parse_mime
from tests.dovecot import USER, Dovecot, _quote, imap_values
from tests.reliability.mail import Delivered, Letter
from tests.reliability.process import RELIABILITY_SETTINGS
from tests.reliability.scenario import Scenario
from tests.service.harness import QUEUE, service_settings

#: How often the harness reads a folder before a server abort fails the test.
READ_ATTEMPTS = 3


class DovecotFolders:
    """`invariants.Folders` over Dovecot: items as {"id": "UIDVALIDITY:UID", "message_id"}."""

    def __init__(self, server: Dovecot) -> None:
        self.server = server

    def list_items(self, mailbox: str, folder: str) -> list[dict[str, Any]]:
        # A folder just recreated (the UIDVALIDITY test) can make Dovecot abort a read that
        # races the service's own commands ("Mailbox was deleted under us"): read again.
        for attempt in range(READ_ATTEMPTS):
            try:
                return self._read(folder)
            except imaplib.IMAP4.abort:
                if attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _read(self, folder: str) -> list[dict[str, Any]]:
        with self.server.session() as client:
            typ, data = client.select(_quote(folder), readonly=True)
            assert typ == "OK", data
            validity = int(client.untagged_responses["UIDVALIDITY"][-1])
            typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        items = []
        for part in data:
            if not isinstance(part, tuple):
                continue
            head = part[0].decode()
            uid = int(head.split("UID ", 1)[1].split()[0])
            message_id = parse_mime(part[1]).message_id
            items.append({"id": f"{validity}:{uid}", "message_id": message_id})
        return items


class ImapScenario(Scenario):
    def __init__(self, server: Dovecot, database_url: str, logs: Path) -> None:
        super().__init__(DovecotFolders(server), database_url, logs)  # type: ignore[arg-type]
        self.server = server

    def settings(self, **overrides: Any) -> Settings:
        values = {**RELIABILITY_SETTINGS, **imap_values(self.server), **overrides}
        return service_settings(self.database_url, **values)

    def deliver(self, letters: Sequence[Letter]) -> list[Delivered]:
        validity = self.server.uidvalidity(QUEUE)
        batch = []
        for item in letters:
            uid = self.server.append(QUEUE, item.raw, flags="\\Draft" if item.draft else "")
            batch.append(
                Delivered(
                    item.name, f"{validity}:{uid}", item.message_id, item.expect, item.entries
                )
            )
        self.delivered += batch
        return batch

    def kick(self) -> bool:
        """Dovecot drops every connection of the user (its IDLE one among them); False when
        the user had none (doveadm exits 68: the service is between connections)."""
        done = subprocess.run(
            ["doveadm", "-c", str(self.server.root / "dovecot.conf"), "kick", USER],
            capture_output=True,
            text=True,
        )
        assert done.returncode in (0, 68), done.stderr
        return done.returncode == 0
