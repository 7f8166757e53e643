"""The IMAP source's synchronous operations, on one connection (`Session`), in one thread.

Item ids are `"<UIDVALIDITY>:<UID>"`: a UID means nothing without its folder's UIDVALIDITY
(RFC 3501 2.3.1.1), so a ref from before a UIDVALIDITY change is `ItemGone`, never another
message. Each batch is one command over a UID set: `UID FETCH` of only the header fields
the rules read (BODY.PEEK, so nothing is marked \\Seen), `UID MOVE` (RFC 6851) with the
storage UIDs from COPYUID (RFC 4315), or COPY + STORE \\Deleted + UID EXPUNGE without MOVE.
"""

from __future__ import annotations

import dataclasses
import imaplib
import select
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from imapclient import IMAPClient

from pipeline.config import ImapSettings
from pipeline.errors import ItemGone
from pipeline.mailparse import parse_mime
from pipeline.model import Mail, MailRef
from pipeline.sources import Fetched, Stored
from pipeline.sources.imap_conn import Folders, abandon, close, connect, port_of

#: The header fields `parse_mime` reads (Sender before From, as Exchange's Sender does).
HEADER_FIELDS = "FROM SENDER TO CC SUBJECT DATE MESSAGE-ID SENSITIVITY X-UNSENT"
FETCH_ITEMS = [f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]", "FLAGS", "INTERNALDATE"]
DRAFT = b"\\Draft"
DELETED = b"\\Deleted"


def item_id(uidvalidity: int, uid: int) -> str:
    return f"{uidvalidity}:{uid}"


def parse_item_id(text: str) -> tuple[int, int] | None:
    validity, _, uid = text.partition(":")
    if not (validity.isdigit() and uid.isdigit()):
        return None
    return int(validity), int(uid)


def uid_set(text: str) -> list[int]:
    """An RFC 3501 sequence set of UIDs ("3,5:7") in its written order."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if high:
            a, b = int(low), int(high)
            out += range(a, b + 1) if a <= b else range(a, b - 1, -1)
        elif low:
            out.append(int(low))
    return out


def utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_mail(data: dict[bytes, Any]) -> Mail:
    """The rules' view of one FETCH response: headers, \\Draft, INTERNALDATE."""
    header = next((v for k, v in data.items() if k.startswith(b"BODY[")), b"") or b""
    received = utc(data.get(b"INTERNALDATE"))
    mail = parse_mime(bytes(header), received_at=received)
    if DRAFT in data.get(b"FLAGS", ()) and not mail.is_draft:
        mail = dataclasses.replace(mail, is_draft=True)
    return mail


class Session:
    """One IMAP connection and the folder it has selected. Not thread-safe: the source runs
    each session's calls on one thread. `drop()` after a failure; the next call reconnects."""

    def __init__(self, cfg: ImapSettings, folders: Folders | None = None) -> None:
        self.cfg = cfg
        self.folders = folders
        self.client: IMAPClient | None = None
        self.selected: str | None = None
        self.uidvalidity = 0

    def ensure(self) -> IMAPClient:
        if self.client is None:
            self.client = connect(self.cfg)
            self.selected = None
        return self.client

    def drop(self) -> None:
        """Close after a failure: the socket only. No LOGOUT: the conversation may be in
        any state (mid-IDLE, a LOGOUT would wait out the socket timeout for its reply)."""
        client, self.client, self.selected = self.client, None, None
        if client is not None:
            abandon(client)

    def logout(self) -> None:
        """Close politely (LOGOUT), best effort."""
        client, self.client, self.selected = self.client, None, None
        close(client)

    def select(self, folder: str) -> IMAPClient:
        client = self.ensure()
        if self.selected != folder:
            response = client.select_folder(folder)
            self.selected = folder
            self.uidvalidity = int(response[b"UIDVALIDITY"])
            return client
        # Already selected: NOOP brings the view up to date (Dovecot announces new mail at
        # NOOP, not necessarily at SEARCH) and tells when the folder itself went away.
        _, untagged = client.noop()
        for response in untagged:
            if response[0] in (b"BYE", b"NO", b"BAD") or "[UIDVALIDITY" in repr(response):
                raise imaplib.IMAP4.abort(f"{folder!r} changed under us: {response!r:.200}")
        return client

    @property
    def f(self) -> Folders:
        assert self.folders is not None, "Session without folders"
        return self.folders

    # --- reading ---

    def headers(self, folder: str, uids: Sequence[int]) -> dict[int, Mail]:
        client = self.select(folder)
        if not uids:
            return {}
        response = client.fetch(sorted(uids), FETCH_ITEMS)
        return {uid: to_mail(data) for uid, data in response.items() if uid in set(uids)}

    def fetch(self, refs: Sequence[MailRef]) -> list[Fetched | Exception]:
        queue = self.f.queue
        self.select(queue)
        wanted = self._current(refs)
        mails = self.headers(queue, [uid for uid in wanted.values() if uid is not None])
        out: list[Fetched | Exception] = []
        for ref in refs:
            uid = wanted[ref.item_id]
            mail = mails.get(uid) if uid is not None else None
            if mail is None:
                out.append(ItemGone(f"IMAP item {ref.item_id} is not in the queue"))
            else:
                out.append(Fetched(ref=ref, mail=mail))
        return out

    def stored_mime(self, item_id: str) -> bytes | None:
        """The whole message (`BODY.PEEK[]`: not marked \\Seen) of a storage folder item;
        None when `item_id` names no message there (another folder's UIDVALIDITY included)."""
        client = self.select(self.f.storage)
        uid = self._current([MailRef(item_id)])[item_id]
        if uid is None:
            return None
        body = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
        return bytes(body) if body is not None else None

    def _current(self, refs: Iterable[MailRef]) -> dict[str, int | None]:
        """item id -> its UID when it names the selected folder's UIDVALIDITY."""
        out: dict[str, int | None] = {}
        for ref in refs:
            parsed = parse_item_id(ref.item_id)
            out[ref.item_id] = parsed[1] if parsed and parsed[0] == self.uidvalidity else None
        return out

    def existing(self, folder: str, refs: Sequence[MailRef]) -> dict[str, int | None]:
        """As `_current`, and None for a UID no longer in `folder` (UID SEARCH UID set)."""
        client = self.select(folder)
        wanted = self._current(refs)
        uids = sorted({uid for uid in wanted.values() if uid is not None})
        present = set(client.search(["UID", ",".join(map(str, uids))])) if uids else set()
        return {i: (uid if uid in present else None) for i, uid in wanted.items()}

    def new_since(self, last_uid: int) -> list[MailRef]:
        """Queue refs with a UID above `last_uid`, in UID order (the catch-up)."""
        client = self.select(self.f.queue)
        _pending_exists(client)  # announced by now, and searched for below
        uids = [uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid]
        if not uids:
            return []
        dates = client.fetch(sorted(uids), ["INTERNALDATE"])
        return [
            MailRef(item_id(self.uidvalidity, uid), received_at=utc(data.get(b"INTERNALDATE")))
            for uid, data in sorted(dates.items())
        ]

    def find(self, folder: str, message_id: str | None, dedupe_key: str) -> list[tuple[str, Mail]]:
        """(item id, Mail) of `folder`'s items with this Message-ID (`UID SEARCH HEADER
        Message-ID`, then an exact compare: HEADER matches substrings), or, for
        `message_id` None, without a Message-ID and with this dedupe key."""
        client = self.select(folder)
        if message_id is not None:
            criteria: list[Any] = ["HEADER", "Message-ID", message_id]
        else:
            # A message without a Message-ID has none, an empty one, or one without "@".
            criteria = ["NOT", "HEADER", "Message-ID", "@"]
        charset = None if (message_id or "").isascii() else "UTF-8"
        uids = client.search(criteria, charset=charset)
        found = sorted(self.headers(folder, uids).items())
        v = self.uidvalidity
        if message_id is not None:
            return [(item_id(v, u), m) for u, m in found if m.message_id == message_id]
        return [
            (item_id(v, u), m) for u, m in found if not m.message_id and m.dedupe_key == dedupe_key
        ]

    def idle_wait(
        self, seconds: float, stop: threading.Event, idling: Callable[[], None] = lambda: None
    ) -> bool:
        """IDLE (RFC 2177) on the queue until news (EXISTS), `seconds` (then the caller
        re-issues it, before the server's timeout) or `stop`. False: the server has no
        IDLE or refused it (poll instead). A connection lost meanwhile raises."""
        client = self.select(self.f.queue)
        if not client.has_capability("IDLE"):
            return False
        if _pending_exists(client):
            return True  # news reported during the last command: catch up first
        try:
            client.idle()
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:
            return False
        idling()  # the server accepted IDLE: push works (again)
        deadline = time.monotonic() + seconds
        news = _pending_exists(client)  # reported while IDLE was being entered
        # Lines are read here, not with imapclient's idle_check(): that polls the socket
        # only, and misses what imaplib already buffered (Dovecot sends "+ idling" and the
        # first EXISTS in one segment).
        while not news and not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if not self._has_input(client, min(1.0, left)):
                continue
            words = client._imap._get_line().split()  # raises abort at EOF
            if (
                words[:2] in ([b"*", b"BYE"], [b"*", b"NO"], [b"*", b"BAD"])
                or b"[UIDVALIDITY" in words
            ):
                # BYE, or trouble with the folder (Dovecot says NO when it was deleted):
                # reconnect; selecting again tells whether the UIDVALIDITY changed.
                raise imaplib.IMAP4.abort(f"IDLE ended by the server: {b' '.join(words)[:200]!r}")
            news = len(words) >= 3 and words[2].upper() == b"EXISTS"
        if not stop.is_set():
            client.idle_done()
        return True

    def _has_input(self, client: IMAPClient, timeout: float) -> bool:
        """Whether a line can be read: in imaplib's buffer, TLS's, or the socket's."""
        sock = client.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        sock.setblocking(False)
        try:
            if client._imap.file.peek(1):
                return True
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            sock.settimeout(self.cfg.timeout_seconds)
        readable, _, _ = select.select([sock], [], [], timeout)
        return bool(readable)

    def count(self) -> int:
        status = self.ensure().folder_status(self.f.queue, [b"MESSAGES"])
        return int(status[b"MESSAGES"])

    # --- moving ---

    def move(self, refs: Sequence[MailRef], target: str) -> dict[str, tuple[int, int] | None]:
        """Move the refs' queue items to `target`: item id -> (UIDVALIDITY, UID) there, or
        None if the server gave no COPYUID; a ref absent from the result was gone."""
        client = self.select(self.f.queue)
        uids = self.existing(self.f.queue, refs)
        present = sorted({uid for uid in uids.values() if uid is not None})
        if not present:
            return {}
        responses = client._imap.untagged_responses  # imaplib files COPYUID codes here
        responses.pop("COPYUID", None)
        if client.has_capability("MOVE"):
            client.move(present, target)
        else:  # RFC 6851 section 3.3: what MOVE does, in three commands
            client.copy(present, target)
            self._expunge(client, present)
        mapping = _copyuid(responses.pop("COPYUID", []))
        return {
            i: mapping.get(uid) for i, uid in uids.items() if uid is not None and uid in present
        }

    def delete(self, refs: Sequence[MailRef]) -> set[str]:
        """Expunge the refs' queue items; the item ids that were there."""
        client = self.select(self.f.queue)
        uids = self.existing(self.f.queue, refs)
        present = sorted({uid for uid in uids.values() if uid is not None})
        if present:
            self._expunge(client, present)
        return {i for i, uid in uids.items() if uid is not None}

    @staticmethod
    def _expunge(client: IMAPClient, uids: list[int]) -> None:
        client.add_flags(uids, [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)  # only these: never another client's \Deleted mail
        else:
            client.expunge()

    # --- links ---

    def link(self, folder: str, uidvalidity: int, uid: int) -> str:
        """The RFC 5092 IMAP URL of a message: imap://user@host:port/folder;UIDVALIDITY=v/;UID=u"""
        user = quote(self.cfg.username, safe="")
        mailbox = quote(folder, safe="/" if self.f.delimiter == "/" else "")
        host = f"{self.cfg.host}:{port_of(self.cfg)}"
        return f"imap://{user}@{host}/{mailbox};UIDVALIDITY={uidvalidity}/;UID={uid}"

    def stored(self, uidvalidity: int, uid: int) -> Stored:
        return Stored(item_id(uidvalidity, uid), self.link(self.f.storage, uidvalidity, uid))


def _pending_exists(client: IMAPClient) -> bool:
    """Whether imaplib filed an untagged EXISTS since we last looked (and forget it)."""
    return bool(client._imap.untagged_responses.pop("EXISTS", None))


def _copyuid(codes: Iterable[Any]) -> dict[int, tuple[int, int]]:
    """COPYUID response codes ("<uidvalidity> <source set> <destination set>", RFC 4315
    section 3) -> source UID -> (destination UIDVALIDITY, destination UID)."""
    out: dict[int, tuple[int, int]] = {}
    for code in codes:
        text = code.decode() if isinstance(code, bytes) else str(code)
        parts = text.split()
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        validity = int(parts[0])
        for src, dst in zip(uid_set(parts[1]), uid_set(parts[2]), strict=False):
            out[src] = (validity, dst)
    return out
