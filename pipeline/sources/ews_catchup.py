"""Listing what the queue folder holds (blocking; runs in the arrivals thread).

Streaming events cannot be resumed, so the arrivals thread catches up after every
(re)subscribe, and polls with the same scan when no stream is possible:

- mailbox folders: SyncFolderItems from the last SyncState (incremental, one request when
  nothing changed). `ErrorInvalidSyncStateData` / `ErrorSyncFolderNotFound` mean the saved
  state is useless (a mailbox move, a recreated folder, a corrupted state): drop it and
  resync from scratch. A full sync re-reports everything still in the queue, which the
  pipeline and the journal absorb (an item already handled is skipped or gone);
- public folders have no SyncFolderItems: FindItem of the whole folder, oldest first.

Also the arrivals thread's timing: how long to wait after failures, and how long one
stream connection may last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from exchangelib.errors import ErrorInvalidSyncStateData, ErrorSyncFolderNotFound

from pipeline.logs import get_logger
from pipeline.model import MailRef
from pipeline.sources.ews_convert import ref_from_item
from pipeline.sources.ews_items import ID_ONLY, Arrived, QueueSync, additional_fields

log = get_logger(__name__)

#: SyncFolderItems MaxChangesReturned is limited to 1..512 by EWS. Catch-up pages are this
#: large whatever the fetch batch: a page is only ids, and fewer pages are fewer round trips.
MAX_SYNC_CHANGES = 512
#: Sync-state errors that call for a full resync (Microsoft: "resynchronize the folder").
INVALID_SYNC_STATE = (ErrorInvalidSyncStateData, ErrorSyncFolderNotFound)


class QueueScan:
    """One scan of the queue folder per `run(emit)`; keeps the SyncState between scans."""

    def __init__(self, queue_folder: Any, public: bool) -> None:
        self._folder = queue_folder
        self._public = public
        self.sync_state: str | None = None
        self.resyncs = 0  # full resyncs after an invalid sync state (tests read it)
        self._shape: Any = None  # ItemShape's AdditionalProperties

    def run(self, emit: Callable[[Iterable[MailRef]], None]) -> None:
        if self._public:
            # Public folders have no SyncFolderItems: list what is there, oldest first.
            items = (
                self._folder.filter()
                .order_by("datetime_received")
                .only("id", "changekey", "datetime_received")
            )
            items.page_size = MAX_SYNC_CHANGES
            emit(ref_from_item(i) for i in items if not isinstance(i, Exception))
            return
        try:
            self._sync(emit)
        except INVALID_SYNC_STATE as exc:
            if self.sync_state is None:
                raise  # already a full sync: not the state's fault
            log.warning(
                "EWS sync state rejected (%s); resyncing the queue folder from scratch",
                type(exc).__name__,
            )
            self.sync_state = None
            self.resyncs += 1
            self._sync(emit)

    def _sync(self, emit: Callable[[Iterable[MailRef]], None]) -> None:
        """SyncFolderItems page by page (exchangelib's FolderCollection.sync_items loop,
        with ews_items.QueueSync reading the answers). The state moves on after each page
        is handed over; a failure midway repeats from the last page handed over (refs
        already emitted are deduplicated)."""
        folder = self._folder
        if self._shape is None:
            self._shape = additional_fields(folder, ["datetime_received"])
        service = QueueSync(account=folder.account)
        while True:
            state = self.sync_state
            changes = service.call(
                folder=folder,
                shape=ID_ONLY,
                additional_fields=self._shape,
                sync_state=state,
                ignore=None,
                max_changes_returned=MAX_SYNC_CHANGES,
                sync_scope=None,
            )
            emit(
                ref_from_item(item)
                for change_type, item in changes
                if change_type == QueueSync.CREATE and isinstance(item, Arrived)
            )
            self.sync_state = service.sync_state
            # The server may answer the same state although it said more is to come.
            if service.sync_state == state or service.includes_last_item_in_range:
                return


def failure_delay(failures: int, cap_seconds: float) -> float:
    """Seconds to wait after `failures` consecutive failures: 0.5, 1, 2, 4 ... capped."""
    if failures <= 0:
        return 0.0
    return float(min(cap_seconds, 0.5 * 2 ** (failures - 1)))


def connection_minutes(stream_timeout_minutes: int, catch_up_interval_seconds: float) -> int:
    """GetStreamingEvents ConnectionTimeout: 1..30 minutes (EWS), and no longer than the
    safety re-sync interval so a Closed comes at least that often."""
    interval_minutes = math.ceil(catch_up_interval_seconds / 60)
    return max(1, min(30, stream_timeout_minutes, interval_minutes))
