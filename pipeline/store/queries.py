"""Read-only questions about the journal that are not part of a pipeline transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def is_logged(
    conn: asyncpg.Connection, mailbox: str | None, message_keys: Sequence[str]
) -> set[str]:
    """Those of `message_keys` (see `Mail.dedupe_key`) already claimed for logging.

    `mailbox` empty or None means "in any mailbox" (`explain` without EMAILLOG_EWS_MAILBOX).
    A row still 'moving' counts: it is a claim the reconciler will complete.
    """
    if not message_keys:
        return set()
    rows = await conn.fetch(
        """
        SELECT DISTINCT message_key FROM stored_message
        WHERE message_key = ANY($1::text[]) AND ($2::text = '' OR mailbox = $2::text)
        """,
        list(message_keys),
        mailbox or "",
    )
    return {r["message_key"] for r in rows}
