"""Cutting SOAP envelopes out of a GetStreamingEvents body, chunked anywhere."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from exchangelib.properties import Notification as ExchangelibNotification
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from pipeline.sources.ews_documents import envelopes, notification

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


NOTIFICATION = b"""<m:Notification xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
    xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <t:SubscriptionId>S1</t:SubscriptionId>
  <t:CreatedEvent><t:TimeStamp>2024-03-04T10:00:05Z</t:TimeStamp>
    <t:ItemId Id="I1" ChangeKey="C1"/><t:ParentFolderId Id="Q" ChangeKey="QK"/></t:CreatedEvent>
  <t:NewMailEvent><t:TimeStamp>2024-03-04T10:00:05Z</t:TimeStamp>
    <t:ItemId Id="I1" ChangeKey="C1"/><t:ParentFolderId Id="Q" ChangeKey="QK"/></t:NewMailEvent>
  <t:CreatedEvent><t:TimeStamp>2024-03-04T10:00:06Z</t:TimeStamp>
    <t:FolderId Id="F1"/><t:ParentFolderId Id="Q"/></t:CreatedEvent>
  <t:MovedEvent><t:TimeStamp>2024-03-04T10:00:07+01:00</t:TimeStamp>
    <t:ItemId Id="I2" ChangeKey="C2"/><t:ParentFolderId Id="S"/>
    <t:OldItemId Id="I0"/><t:OldParentFolderId Id="Q"/></t:MovedEvent>
  <t:StatusEvent><t:Watermark>W</t:Watermark></t:StatusEvent>
</m:Notification>"""


def test_notifications_read_as_exchangelib_reads_them() -> None:
    elem = etree.fromstring(NOTIFICATION)

    def seen(events: Iterable[Any]) -> list[tuple[object, ...]]:
        return [
            (e.item_id.id, e.item_id.changekey, e.parent_folder_id.id, e.timestamp)
            for e in events
            if getattr(e, "item_id", None) is not None
        ]

    ours = notification(elem).events
    theirs = ExchangelibNotification.from_xml(elem=elem, account=None).events
    assert seen(ours) == seen(theirs)
    assert [e.item_id.id for e in ours if e.item_id] == ["I1", "I1", "I2"]
