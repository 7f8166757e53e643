"""The Microsoft Graph source: the queue and storage folders of one Exchange Online
mailbox, app-only (client credentials).

    GraphSource(settings, events=None)
      open()        token, then the folders by display name (mailFolders, childFolders)
      arrivals()    delta query on the queue folder every EMAILLOG_GRAPH_POLL_SECONDS
                    (graph_delta.py); the delta link is kept in PostgreSQL once the service
                    binds its database (`use_database`), so a restart resumes, and a restart
                    that resumes lists the queue once to catch up on what was left in it;
                    an expired link starts a fresh round (reported as a reconnect)
      fetch         $batch GETs with $select of what the rules need and PidTagSensitivity
                    through singleValueExtendedProperties
      move_to_storage / dispose
                    $batch POST move (the answer's new id and webLink are recorded),
                    permanentDelete (delete: as NAV hard-deletes; sensitive mail always),
                    DELETE (trash: Deleted Items), move to the disposal folder
      find_in_* / backlog
                    $filter on internetMessageId; by content key, a listing of the folder
      fetch_stored_mime
                    GET mailFolders/{storage}/messages/{id}/$value

Item ids are Graph's REST ids (a move gives a new one). Every request goes through
graph_http.py: at most 4 at once, the shared back-off gate, 429/503 -> Throttled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

import asyncpg

from pipeline.config import Settings
from pipeline.errors import (
    FolderNotFound,
    ItemGone,
    Permanent,
    Retryable,
    SourceUnavailable,
    Throttled,
)
from pipeline.logs import get_logger
from pipeline.model import Disposal, MailRef
from pipeline.sources import Fetched, NoEvents, SourceEvents, Stored
from pipeline.sources.graph_convert import (
    FETCH_SELECT,
    SENSITIVITY_EXPAND,
    odata_literal,
    status_error,
    to_mail,
    to_ref,
)
from pipeline.sources.graph_delta import DeltaExpired, DeltaIntake, LinkStore, MemoryLinks
from pipeline.sources.graph_http import GraphHttp
from pipeline.sources.graph_notify import Notifications
from pipeline.store.delta_links import DeltaLinks

log = get_logger(__name__)

#: Page size asked of listings (Graph's maximum for messages is 1000).
LIST_PAGE_MESSAGES = 200
#: Longest pause between attempts when Graph cannot be reached.
MAX_OUTAGE_PAUSE_SECONDS = 30.0


class GraphSource:
    def __init__(self, settings: Settings, events: SourceEvents | None = None) -> None:
        self.settings = settings
        self.graph = settings.source.graph
        self.events = events or NoEvents()
        self.http = GraphHttp(self.graph, self.events, self.graph.timeout_seconds)
        self.user = f"/users/{quote(self.graph.mailbox, safe='@')}"
        self.links: LinkStore = MemoryLinks()
        self.folders: dict[str, str] = {}  # "queue", "storage", "disposal" -> folder id
        self.notifications: Notifications | None = None
        self._connected = False
        self._mode = ""
        self._was_connected = False
        self._closed = False

    # -- identity and life cycle -----------------------------------------------------------

    @property
    def mailbox(self) -> str:
        return self.graph.mailbox

    @property
    def connected(self) -> bool:
        return self._connected

    def use_database(self, pool: asyncpg.Pool) -> None:
        """Keep delta links in PostgreSQL (the service calls this once its pool is open)."""
        self.links = DeltaLinks(pool)

    async def open(self) -> None:
        self._closed = False  # open() again after a failed one (`emaillog ui` retries it)
        await self.http.open()
        source = self.settings.source
        wanted = {"queue": source.queue_folder.parts, "storage": source.storage_folder.parts}
        if source.disposal.how is Disposal.MOVE and source.disposal.folder is not None:
            wanted["disposal"] = source.disposal.folder.parts
        for role, parts in wanted.items():
            self.folders[role] = await self._folder_id(parts)
        if self.graph.notification_url:
            resource = f"users/{self.graph.mailbox}/mailFolders('{self.folders['queue']}')/messages"
            self.notifications = Notifications(self.http, self.graph, resource, self.events)

    async def _folder_id(self, parts: Sequence[str]) -> str:
        listing = f"{self.user}/mailFolders"
        folder_id = ""
        for name in parts:
            url = f"{listing}?$select=id,displayName&$filter=" + quote(
                f"displayName eq {odata_literal(name)}"
            )
            _, _, page = await self.http.call("GET", url, what="folder")
            found = page.get("value") or []
            if not found:
                raise FolderNotFound(f"Graph folder not found: {'/'.join(parts)}")
            folder_id = str(found[0]["id"])
            listing = f"{self.user}/mailFolders/{quote(folder_id)}/childFolders"
        return folder_id

    async def close(self) -> None:
        self._closed = True
        self._set_connected(False)
        if self.notifications is not None:
            await self.notifications.stop()
        await self.http.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SourceUnavailable("Graph source is closed")

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        self.events.on_connected(connected)
        if connected:
            if self._was_connected:
                self.events.on_reconnect()
            self._was_connected = True
            push = self.notifications is not None and self.notifications.live
            self._set_mode("streaming" if push else "polling")

    def _set_mode(self, mode: str) -> None:
        if mode != self._mode:
            self._mode = mode
            self.events.on_mode(mode)

    # -- arrivals --------------------------------------------------------------------------

    def _delta_start(self) -> str:
        queue = quote(self.folders["queue"])
        return f"{self.user}/mailFolders/{queue}/messages/delta?$select=id,receivedDateTime"

    async def arrivals(self) -> AsyncIterator[MailRef]:
        self._check_open()
        intake = DeltaIntake(
            self.http, self.mailbox, self.folders["queue"], self.links, self._delta_start()
        )
        seen: set[str] = set()
        await self._subscribe()  # subscribe first, then catch up (delta)
        pause = self.graph.poll_seconds
        catch_up_at = 0.0  # when the queue is listed next (time.monotonic())
        while True:
            if self._closed:  # the consumer cancels us (MailSource contract)
                await asyncio.Event().wait()
            try:
                if not intake.loaded and not await intake.resume():
                    catch_up_at = self._next_catch_up()  # a fresh round lists the queue
                found = await intake.round()
                listed = await self._list_refs("queue") if time.monotonic() >= catch_up_at else []
            except DeltaExpired:
                self._set_connected(False)
                continue
            except Throttled as exc:  # busy, not down: wait as asked (the gate holds too)
                await asyncio.sleep(exc.retry_after)
                continue
            except Retryable:
                self._set_connected(False)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_OUTAGE_PAUSE_SECONDS)
                continue
            pause = self.graph.poll_seconds
            if listed or time.monotonic() >= catch_up_at:
                catch_up_at = self._next_catch_up()
            self._set_connected(True)
            if found.fresh:
                seen &= {ref.item_id for ref in found.added}
            for ref in [*found.added, *listed]:
                if ref.item_id not in seen:
                    seen.add(ref.item_id)
                    yield ref
            seen -= found.removed
            await self._until_next_round()

    def _next_catch_up(self) -> float:
        """A listing of the whole queue (a safety net under delta, as the EWS source's
        catch-up) is due this often; and at once after resuming from a kept delta link,
        for what a previous run left in the queue."""
        return time.monotonic() + self.settings.limits.catch_up_interval_seconds

    async def _subscribe(self) -> None:
        """Start or keep the change-notification subscription (when configured); a
        failure leaves delta polling on alone until the next round."""
        notifications = self.notifications
        if notifications is None:
            return
        try:
            await notifications.keep() if notifications.live else await notifications.start()
        except Retryable as exc:
            log.warning("graph change notifications unavailable: %s", exc)
        self._set_mode("streaming" if notifications.live else "polling")

    async def _until_next_round(self) -> None:
        """Sleep the poll interval, or less when a change notification wakes us; keep the
        subscription alive (a failure leaves polling on alone until the next round)."""
        notifications = self.notifications
        if notifications is None:
            await asyncio.sleep(self.graph.poll_seconds)
            return
        await self._subscribe()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(notifications.wake.wait(), self.graph.poll_seconds)
        notifications.wake.clear()

    async def backlog(self) -> int:
        self._check_open()
        url = f"{self.user}/mailFolders/{quote(self.folders['queue'])}?$select=totalItemCount"
        _, _, body = await self.http.call("GET", url, what="backlog")
        return int(body.get("totalItemCount", 0))

    # -- batches ---------------------------------------------------------------------------

    def _message(self, ref: MailRef) -> str:
        return f"{self.user}/messages/{quote(ref.item_id)}"

    async def _answers(
        self, refs: Sequence[MailRef], requests: list[dict[str, Any]], what: str
    ) -> list[tuple[int, Any, Any]]:
        self._check_open()
        if not refs:
            return []
        return [(s, h, b) for s, h, b in await self.http.batch(requests, what)]

    async def fetch(self, refs: Sequence[MailRef]) -> list[Fetched | Exception]:
        query = f"?$select={FETCH_SELECT}&$expand=" + quote(SENSITIVITY_EXPAND)
        requests = [{"method": "GET", "url": self._message(ref) + query} for ref in refs]
        results: list[Fetched | Exception] = []
        for ref, (status, headers, body) in zip(
            refs, await self._answers(refs, requests, "fetch"), strict=True
        ):
            if status == 200:
                mail = to_mail(body)
                results.append(Fetched(MailRef(ref.item_id, None, mail.received_at), mail))
            else:
                results.append(status_error(status, headers, body, "fetch"))
        return results

    def _move(self, ref: MailRef, role: str) -> dict[str, Any]:
        body = {"destinationId": self.folders[role]}
        return {"method": "POST", "url": self._message(ref) + "/move", "body": body}

    async def move_to_storage(self, refs: Sequence[MailRef]) -> list[Stored | Exception]:
        requests = [self._move(ref, "storage") for ref in refs]
        results: list[Stored | Exception] = []
        for status, headers, body in await self._answers(refs, requests, "move"):
            if status in (200, 201) and isinstance(body, dict):
                results.append(Stored(str(body["id"]), body.get("webLink")))
            else:
                results.append(status_error(status, headers, body, "move"))
        return results

    async def dispose(self, refs: Sequence[MailRef], how: Disposal) -> list[Exception | None]:
        if how is Disposal.MOVE and "disposal" not in self.folders:
            raise FolderNotFound("EMAILLOG_DISPOSAL names no move: folder")
        requests = [self._disposal(ref, how) for ref in refs]
        return [
            None if status < 300 else status_error(status, headers, body, f"dispose {how.value}")
            for status, headers, body in await self._answers(refs, requests, "dispose")
        ]

    def _disposal(self, ref: MailRef, how: Disposal) -> dict[str, Any]:
        if how is Disposal.HARD_DELETE:
            return {"method": "POST", "url": self._message(ref) + "/permanentDelete"}
        if how is Disposal.TRASH:  # DELETE moves the message to Deleted Items
            return {"method": "DELETE", "url": self._message(ref)}
        return self._move(ref, "disposal")

    async def fetch_stored_mime(self, item_id: str) -> bytes:
        # Through the storage folder's path: Graph answers 404 for a message of another folder.
        self._check_open()
        folder = quote(self.folders["storage"])
        url = f"{self.user}/mailFolders/{folder}/messages/{quote(item_id)}/$value"
        status, headers, body = await self.http.send("GET", url, raw=True)
        if status == 200 and isinstance(body, bytes):
            return body
        error = self.http.note(status_error(status, headers, body, "mime"))
        # A malformed id (400, Permanent) names nothing in the folder either.
        raise ItemGone(str(error)) if isinstance(error, Permanent) else error

    # -- reconciler lookups ----------------------------------------------------------------

    async def _list(self, role: str, select: str, where: str = "") -> list[dict[str, Any]]:
        self._check_open()
        folder = quote(self.folders[role])
        url = f"{self.user}/mailFolders/{folder}/messages?$select={select}"
        url += f"&$top={LIST_PAGE_MESSAGES}"
        if where:
            url += "&$filter=" + quote(where)
        found: list[dict[str, Any]] = []
        while url:
            _, _, page = await self.http.call("GET", url, what="list")
            found += page.get("value", [])
            url = page.get("@odata.nextLink", "")
        return found

    async def _list_refs(self, role: str) -> list[MailRef]:
        return [to_ref(m) for m in await self._list(role, "id,receivedDateTime")]

    async def _by_message_id(self, role: str, message_id: str) -> list[dict[str, Any]]:
        where = f"internetMessageId eq {odata_literal(message_id)}"
        return await self._list(role, "id,receivedDateTime,webLink", where)

    async def find_in_queue(self, message_id: str) -> list[MailRef]:
        return [to_ref(m) for m in await self._by_message_id("queue", message_id)]

    async def find_in_storage(self, message_id: str) -> list[Stored]:
        found = await self._by_message_id("storage", message_id)
        return [Stored(str(m["id"]), m.get("webLink")) for m in found]

    async def _by_key(self, role: str, dedupe_key: str) -> list[dict[str, Any]]:
        """Messages without an internetMessageId whose content key is `dedupe_key`: Graph
        cannot filter on a computed key, so the folder is listed (reconciler only)."""
        found = await self._list(role, FETCH_SELECT + ",webLink")
        return [
            m
            for m in found
            if (mail := to_mail(m)).message_id is None and mail.dedupe_key == dedupe_key
        ]

    async def find_in_queue_by_key(self, dedupe_key: str) -> list[MailRef]:
        return [to_ref(m) for m in await self._by_key("queue", dedupe_key)]

    async def find_in_storage_by_key(self, dedupe_key: str) -> list[Stored]:
        found = await self._by_key("storage", dedupe_key)
        return [Stored(str(m["id"]), m.get("webLink")) for m in found]
