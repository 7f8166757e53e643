"""Cutting SOAP envelopes out of a GetStreamingEvents body, chunked anywhere."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from pipeline.sources.ews_documents import envelopes

DECL = b"<?xml version='1.0' encoding='utf-8'?>\n"
ONE = (
    b'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="urn:s"><s:Body>'
    b"<m:Ok>1</m:Ok></s:Body></s:Envelope>"
)
TWO = b'<Envelope xmlns="urn:s"><Body><Status>OK &lt;Envelope&gt;</Status></Body></Envelope>\r\n'
BODY = ONE + b"\r\n" + TWO + ONE


def expected() -> list[bytes]:
    return [
        DECL + ONE[ONE.index(b"<s:Envelope") :],
        DECL + TWO.rstrip(),
        DECL + ONE[ONE.index(b"<s:Envelope") :],
    ]


def test_whole_body_in_one_chunk() -> None:
    assert list(envelopes([BODY])) == expected()


def test_one_byte_at_a_time() -> None:
    assert list(envelopes(BODY[i : i + 1] for i in range(len(BODY)))) == expected()


@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=20))
def test_any_chunking_gives_the_same_documents(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(BODY)]
    chunks = [BODY[a:b] for a, b in pairwise(edges)]
    assert list(envelopes(chunks)) == expected()


def test_an_unfinished_envelope_yields_nothing() -> None:
    assert list(envelopes([ONE[:-5]])) == []
