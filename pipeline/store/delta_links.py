"""The Graph source's delta links in PostgreSQL (table graph_delta_link, migration 0005).

A delta link is the whole `@odata.deltaLink` URL (Graph encodes the query into it). It is
written after each completed delta round and read when intake starts; an expired one
(410 / SyncStateNotFound) is forgotten, and the next round starts from scratch.
"""

from __future__ import annotations

import asyncpg

from pipeline.errors import DatabaseUnavailable

_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


class DeltaLinks:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, mailbox: str, folder_id: str) -> str | None:
        try:
            value = await self.pool.fetchval(
                "SELECT delta_link FROM graph_delta_link WHERE mailbox = $1 AND folder_id = $2",
                mailbox,
                folder_id,
            )
        except _ERRORS as exc:
            raise DatabaseUnavailable(f"delta link: {exc!r}") from exc
        return str(value) if value is not None else None

    async def save(self, mailbox: str, folder_id: str, link: str | None) -> None:
        """Keep `link` (None: forget the folder's link)."""
        try:
            if link is None:
                await self.pool.execute(
                    "DELETE FROM graph_delta_link WHERE mailbox = $1 AND folder_id = $2",
                    mailbox,
                    folder_id,
                )
                return
            await self.pool.execute(
                """
                INSERT INTO graph_delta_link (mailbox, folder_id, delta_link) VALUES ($1, $2, $3)
                ON CONFLICT (mailbox, folder_id)
                DO UPDATE SET delta_link = EXCLUDED.delta_link, updated_at = now()
                """,
                mailbox,
                folder_id,
                link,
            )
        except _ERRORS as exc:
            raise DatabaseUnavailable(f"delta link: {exc!r}") from exc
