"""GetStreamingEvents, read in chunks instead of one byte per call.

A streaming response is one chunked HTTP body holding several SOAP envelopes, one after
the other (keep-alives, then notifications). exchangelib finds them with `DocumentYielder`,
which pulls the body through `iter_content()` ONE byte at a time, a Python call (and a
buffered read) per byte: at 100 messages a second this was a seventh of the service's CPU
(bench/README.md, "Where steady-state CPU goes"). Here the body is read as the chunks come
(`iter_content(None)`: each HTTP chunk as soon as it is there, so latency is unchanged) and
envelopes are cut out of the chunks with two regular expressions. Everything else, parsing
and error handling included, is exchangelib's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from exchangelib.services import GetStreamingEvents
from exchangelib.util import DummyResponse

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


class ChunkedStreamingEvents(GetStreamingEvents):  # type: ignore[misc]
    """exchangelib's GetStreamingEvents with the body read in chunks (module docstring)."""

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
