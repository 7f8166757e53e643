"""GetStreamingEvents, read in chunks instead of one byte per call.

A streaming response is one chunked HTTP body holding several SOAP envelopes, one after
the other (keep-alives, then notifications). exchangelib finds them with `DocumentYielder`,
which pulls the body through `iter_content()` ONE byte at a time, a Python call (and a
buffered read) per byte: at 100 messages a second this was a seventh of the service's CPU
(bench/README.md, "Where steady-state CPU goes"). Here the body is read as the chunks come
(`iter_content(None)`: each HTTP chunk as soon as it is there, so latency is unchanged) and
envelopes are cut out of the chunks with two regular expressions. Each notification is then
read straight from its XML into `Notification`/`ItemEvent` (what the arrivals thread looks
at: the item events' ids, parent folders and time stamps), instead of exchangelib's generic
model; the SOAP parsing, connection status and error handling are exchangelib's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchangelib.services import GetStreamingEvents
from exchangelib.util import TNS, DummyResponse

from pipeline.sources.ews_items import ews_datetime

_T = "{" + TNS + "}"

#: <Envelope ...> or <s:Envelope ...>, and its end tag. Nothing else in a SOAP response is
#: called Envelope, and an envelope never nests.
_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Envelope[\s>/]")
_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?Envelope\s*>")
#: The longest end tag we must find across a chunk boundary (a generous prefix length).
_END_TAG_BYTES = 64
#: What exchangelib puts before each envelope it hands its parser.
_DECLARATION = b"<?xml version='1.0' encoding='utf-8'?>\n"


def envelopes(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Each complete SOAP envelope in a stream of byte chunks cut anywhere, as a document
    of its own; bytes between envelopes (XML declarations, whitespace) are dropped."""
    buffer = bytearray()
    searched = 0  # the end tag is not in buffer[:searched] (minus a tag's length)
    for chunk in chunks:
        buffer += chunk
        while True:
            start = _START.search(buffer)
            if start is None:
                del buffer[: max(0, len(buffer) - _END_TAG_BYTES)]  # may hold a partial tag
                searched = 0
                break
            if start.start():
                searched = max(0, searched - start.start())
                del buffer[: start.start()]
            end = _END.search(buffer, max(0, searched - _END_TAG_BYTES))
            if end is None:
                searched = len(buffer)
                break
            yield _DECLARATION + bytes(buffer[: end.end()])
            del buffer[: end.end()]
            searched = 0


@dataclass(frozen=True, slots=True)
class Id:
    id: str | None
    changekey: str | None


@dataclass(frozen=True, slots=True)
class ItemEvent:
    """An item event (Created, NewMail, Moved, Copied, Modified, Deleted) of a notification,
    with the attribute names of exchangelib's TimestampEvent."""

    item_id: Id | None
    parent_folder_id: Id | None
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class Notification:
    events: tuple[ItemEvent, ...]


def notification(elem: Any) -> Notification:
    """<m:Notification> -> its item events (folder and status events carry no ItemId)."""
    events = []
    for child in elem:
        item = child.find(_T + "ItemId")
        if item is None:
            continue
        parent = child.find(_T + "ParentFolderId")
        stamp = child.findtext(_T + "TimeStamp")
        events.append(
            ItemEvent(
                item_id=Id(item.get("Id"), item.get("ChangeKey")),
                parent_folder_id=None
                if parent is None
                else Id(parent.get("Id"), parent.get("ChangeKey")),
                timestamp=ews_datetime(stamp),
            )
        )
    return Notification(tuple(events))


class ChunkedStreamingEvents(GetStreamingEvents):  # type: ignore[misc]
    """exchangelib's GetStreamingEvents with the body read in chunks and notifications read
    straight from the XML (module docstring)."""

    def _elem_to_obj(self, elem: Any) -> Notification:
        return notification(elem)

    def _get_soap_messages(self, body: Any) -> Iterator[Any]:
        # `body` is the raw streaming response (GetStreamingEvents._get_soap_parts passes
        # it on unparsed); each envelope is then parsed by the base service, as exchangelib does.
        response = body
        for document in envelopes(response.iter_content(chunk_size=None)):
            try:
                _, soap_body = super(GetStreamingEvents, self)._get_soap_parts(
                    response=DummyResponse(content=document)
                )
            except Exception:
                response.close()
                raise
            yield from super(GetStreamingEvents, self)._get_soap_messages(body=soap_body)
            if self.connection_status == self.CLOSED:
                break  # don't wait for the server to close the connection
