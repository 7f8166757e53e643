"""`mime_fetcher`: a stored message's bytes by storage item id, else by Message-ID, else
ItemGone (the memory source; every real source passes the same contract in tests/source);
and `emaillog ui`'s source, opened again at a download when it could not be at start."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.cli.ui import OnDemandSource
from pipeline.errors import FolderNotFound, ItemGone, SourceUnavailable
from pipeline.sources import Stored
from pipeline.sources.memory import MemorySource
from pipeline.web.mime import mime_fetcher
from tests.source.conftest import MAILBOX, mime


@pytest.fixture
async def source() -> AsyncIterator[MemorySource]:
    src = MemorySource(MAILBOX)
    await src.open()
    try:
        yield src
    finally:
        await src.close()


async def store(source: MemorySource, raw: bytes) -> Stored:
    [stored] = await source.move_to_storage([source.deliver(raw)])
    assert isinstance(stored, Stored) and stored.item_id
    return stored


async def test_by_storage_item_id(source: MemorySource) -> None:
    raw = mime(message_id="<a@ours.test>")
    stored = await store(source, raw)
    assert await mime_fetcher(source)(stored.item_id, "<a@ours.test>") == raw
    assert await mime_fetcher(source)(stored.item_id, None) == raw
    assert source.calls("find") == 0  # the id is enough: no search


async def test_without_item_id_by_message_id(source: MemorySource) -> None:
    raw = mime(message_id="<moved-to-public@ours.test>")
    await store(source, raw)
    assert await mime_fetcher(source)(None, "<moved-to-public@ours.test>") == raw


async def test_nothing_to_find_is_item_gone(source: MemorySource) -> None:
    fetch = mime_fetcher(source)
    await store(source, mime(message_id="<other@ours.test>"))
    queued = source.deliver(mime(message_id="<queued@ours.test>"))
    with pytest.raises(ItemGone):
        await fetch(None, None)
    with pytest.raises(ItemGone):
        await fetch(None, "<missing@ours.test>")
    with pytest.raises(ItemGone):  # in the queue, not logged: never readable here
        await fetch(queued.item_id, "<queued@ours.test>")
    with pytest.raises(ItemGone):
        await fetch(None, "<queued@ours.test>")


async def test_a_stored_item_removed_later_is_item_gone(source: MemorySource) -> None:
    stored = await store(source, mime())
    assert stored.item_id is not None
    source.remove(stored.item_id)
    with pytest.raises(ItemGone):
        await mime_fetcher(source)(stored.item_id, None)


async def test_source_failures_pass_through(source: MemorySource) -> None:
    stored = await store(source, mime())
    source.fail_next("mime", SourceUnavailable("down"))
    with pytest.raises(SourceUnavailable):
        await mime_fetcher(source)(stored.item_id, None)


async def test_emaillog_ui_opens_its_source_again_at_a_download_after_an_outage() -> None:
    source = MemorySource(MAILBOX)
    await source.open()
    raw = mime()
    stored = await store(source, raw)
    await source.close()

    source.fail_next("open", SourceUnavailable("the mail server is down"))
    on_demand = OnDemandSource(source)
    await on_demand.open_or_wait()  # a warning, not a failure: the lists need no source
    assert await on_demand.fetch_mime(stored.item_id, None) == raw
    assert source.calls("open") == 3  # the test's, the failed one, the download's
    await on_demand.fetch_mime(stored.item_id, None)
    assert source.calls("open") == 3  # open stays open
    await on_demand.close()


async def test_emaillog_ui_stops_at_a_missing_folder() -> None:
    source = MemorySource(MAILBOX)
    source.fail_next("open", FolderNotFound("no such storage folder"))
    with pytest.raises(FolderNotFound):
        await OnDemandSource(source).open_or_wait()
