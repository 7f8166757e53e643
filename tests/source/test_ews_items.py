"""GetItem read straight from the XML (ews_items.py) gives what exchangelib's own model
gives: both, side by side, over every corpus message and the hand-written ones."""

from __future__ import annotations

import asyncio

from exchange_sim import Simulator
from pipeline.sources.ews_connect import connect, forget_protocol, resolve_folder
from pipeline.sources.ews_convert import to_mail
from pipeline.sources.ews_items import additional_fields, fetch_queue_items
from pipeline.sources.ews_links import LINK_FIELD, QUEUE_FIELDS
from tests.conftest import CORPUS
from tests.source.conftest import MAILBOX, QUEUE, mime, settings_for

BATCH = 50


def both_ways(sim: Simulator, ids: list[str]) -> tuple[list[object], list[object]]:
    settings = settings_for(sim)
    account = connect(settings.source.ews)
    try:
        queue = resolve_folder(account, settings.source.queue_folder)
        shape = additional_fields(queue, QUEUE_FIELDS)
        ours: list[object] = []
        theirs: list[object] = []
        for start in range(0, len(ids), BATCH):
            chunk = [(i, None) for i in ids[start : start + BATCH]]
            ours += fetch_queue_items(account, chunk, shape)
            theirs += account.fetch(
                ids=chunk, folder=queue, only_fields=list(QUEUE_FIELDS), chunk_size=len(chunk)
            )
        return ours, theirs
    finally:
        forget_protocol(account.protocol.config)


def seen(item: object) -> tuple[object, ...]:
    if isinstance(item, Exception):
        return (type(item).__name__,)
    return (
        getattr(item, "id"),  # noqa: B009 - both kinds, one spelling
        getattr(item, "changekey"),  # noqa: B009
        getattr(item, LINK_FIELD),
        getattr(item, "size"),  # noqa: B009
        to_mail(item),
    )


async def test_the_same_mail_as_exchangelib_for_every_corpus_message(sim: Simulator) -> None:
    raws = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    raws += [
        mime(),
        mime(subject="", sender="", to="a@x.example, Name Only <b@y.example>", cc="c@z"),
        mime(sensitivity="Private", subject="odd\tsubject", message_id=None),
    ]
    ids = []
    for raw in raws:
        try:
            ids.append(sim.deliver(MAILBOX, QUEUE, raw))
        except Exception:
            continue
    ids.append("AAMkADeadBeef")  # and an id that does not exist: the same error both ways
    ours, theirs = await asyncio.to_thread(both_ways, sim, ids)
    assert len(ours) == len(theirs) == len(ids)
    assert [seen(o) for o in ours] == [seen(t) for t in theirs]
    assert len(ids) > 400
