"""Delta query on the queue folder: one round follows `@odata.nextLink`s to the
`@odata.deltaLink`, which is kept (in PostgreSQL when the service runs: store/delta_links.py)
so the next round, and the next start, carry on from there.

An expired delta link (410 Gone, or an error code saying the sync state is gone) raises
`DeltaExpired`: the link is forgotten and the next round starts from scratch, listing the
whole folder again (the arrivals iterator drops what it already reported).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipeline.errors import SourceUnavailable
from pipeline.model import MailRef
from pipeline.sources.graph_convert import error_code, status_error, to_ref
from pipeline.sources.graph_http import GraphHttp

#: Error codes Graph and Exchange Online use for a delta token they no longer know.
EXPIRED_CODES = frozenset(
    {"syncstatenotfound", "syncstateinvalid", "resyncrequired", "errorinvalidsyncstatedata"}
)


#: Delta pages as large as Graph allows for messages (its default is 10 per page).
PREFER = "odata.maxpagesize=1000"


class DeltaExpired(SourceUnavailable):
    """The delta link is no longer valid: start a new round from scratch."""


class LinkStore(Protocol):
    async def load(self, mailbox: str, folder_id: str) -> str | None: ...

    async def save(self, mailbox: str, folder_id: str, link: str | None) -> None: ...


@dataclass
class MemoryLinks:
    """Delta links kept in memory (a source used without the service's database)."""

    links: dict[tuple[str, str], str] = field(default_factory=dict)

    async def load(self, mailbox: str, folder_id: str) -> str | None:
        return self.links.get((mailbox, folder_id))

    async def save(self, mailbox: str, folder_id: str, link: str | None) -> None:
        if link is None:
            self.links.pop((mailbox, folder_id), None)
        else:
            self.links[(mailbox, folder_id)] = link


@dataclass
class Round:
    added: list[MailRef]
    removed: set[str]
    fresh: bool  # started from scratch: `added` is the whole folder


class DeltaIntake:
    def __init__(
        self, http: GraphHttp, mailbox: str, folder_id: str, links: LinkStore, start: str
    ) -> None:
        self.http = http
        self.mailbox = mailbox
        self.folder_id = folder_id
        self.links = links
        self.start = start  # the first request of a round from scratch
        self.link: str | None = None
        self.loaded = False

    async def resume(self) -> bool:
        """Load the kept delta link; True when there is one to carry on from. A link to
        another Graph endpoint (EMAILLOG_GRAPH_URL changed) is not followed."""
        link = await self.links.load(self.mailbox, self.folder_id)
        self.link = link if link and link.startswith(self.http.base + "/") else None
        self.loaded = True
        return self.link is not None

    async def round(self) -> Round:
        if not self.loaded:
            await self.resume()
        fresh = self.link is None
        url = self.link or self.start
        found = Round([], set(), fresh)
        while True:
            status, headers, page = await self.http.send("GET", url, prefer=PREFER)
            if status == 410 or error_code(page).lower() in EXPIRED_CODES:
                self.link = None
                await self.links.save(self.mailbox, self.folder_id, None)
                raise DeltaExpired(f"Graph delta token expired ({status} {error_code(page)})")
            if status >= 300:
                raise self.http.note(status_error(status, headers, page, "delta"))
            for entry in page.get("value", []):
                if "@removed" in entry:
                    found.removed.add(str(entry.get("id")))
                else:
                    found.added.append(to_ref(entry))
            if "@odata.deltaLink" in page:
                self.link = str(page["@odata.deltaLink"])
                await self.links.save(self.mailbox, self.folder_id, self.link)
                return found
            url = str(page["@odata.nextLink"])
