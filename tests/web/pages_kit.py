"""What the page tests share: a tokens file, settings for the web app, and entries written
straight into a migrated database (the read model's tables, as the service writes them)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from pipeline.config import Settings
from tests.settings import make_settings

ADMIN_TOKEN = "admin-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"
MAILBOX = "queue@example.com"

_numbers = itertools.count(1)


def write_tokens(directory: Path) -> Path:
    path = directory / "tokens"
    path.write_text(f"alice:{ADMIN_TOKEN}\nbob:{READER_TOKEN}\n")
    return path


def web_settings(database_url: str, tokens_file: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "ui_host": "127.0.0.1",
        "ui_auth": "token",
        "api_tokens_file": str(tokens_file),
        "ui_admins": "alice",
        "ui_session_secret": "s" * 40,
    }
    values.update(overrides)
    return make_settings(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Logged:
    entry_no: int
    stored_message_id: int


async def add_entry(
    conn: asyncpg.Connection,
    *,
    contact_no: str = "C1",
    company_no: str = "CO1",
    salesperson_code: str = "SP1",
    flow: str = "outbound",
    subject: str = "Quote",
    at: dt.datetime | None = None,
    web_link: str | None = "https://outlook.example.com/owa/?ItemID=abc&exvsurl=1",
) -> Logged:
    """One logged message with one entry and its decision, as the service records them."""
    n = next(_numbers)
    at = at or dt.datetime(2024, 3, 4, 10, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=n)
    message_id = f"<page-{n}@ours.test>"
    stored_id = await conn.fetchval(
        """INSERT INTO stored_message (mailbox, message_key, internet_message_id, content_hash,
               queue_item_id, storage_item_id, web_link, state)
           VALUES ($1, $2, $2, $3, $4, $5, $6, 'stored') RETURNING id""",
        MAILBOX,
        message_id,
        f"hash-{n}",
        f"queue-{n}",
        f"storage-{n}",
        web_link,
    )
    entry_no = await conn.fetchval(
        """INSERT INTO interaction_log_entry (stored_message_id, contact_no, contact_company_no,
               salesperson_code, information_flow, initiated_by, interaction_at, description,
               subject, interaction_template_code, cost_lcy, duration_min)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'EMAIL', 1.5, 3) RETURNING entry_no""",
        stored_id,
        contact_no,
        company_no,
        salesperson_code,
        flow,
        "us" if flow == "outbound" else "them",
        at,
        subject,
    )
    await conn.execute(
        """INSERT INTO disposal_log (mailbox, queue_item_id, outcome, rule, message_id_hash,
               stored_message_id, disposed_at)
           VALUES ($1, $2, 'logged', 'Rule 4', $3, $4, now())""",
        MAILBOX,
        f"queue-{n}",
        f"h{n:063d}",
        stored_id,
    )
    return Logged(entry_no, stored_id)


async def add_failure(conn: asyncpg.Connection, *, rule: str = "fetch failed") -> str:
    """A failed queue message (no stored copy): its Message-ID hash."""
    n = next(_numbers)
    message_hash = f"f{n:063d}"
    await conn.execute(
        """INSERT INTO disposal_log (mailbox, queue_item_id, outcome, rule, message_id_hash)
           VALUES ($1, $2, 'failed', $3, $4)""",
        MAILBOX,
        f"failed-queue-{n}",
        rule,
        message_hash,
    )
    return message_hash
