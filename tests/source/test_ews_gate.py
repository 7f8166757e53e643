"""The shared back-off gate (ews_gate.py) and the outage mapping, without a server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from exchangelib.errors import (
    ErrorBatchProcessingStopped,
    ErrorExceededConnectionCount,
    ErrorInternalServerTransientError,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorServerBusy,
)

from pipeline.errors import SourceUnavailable, Throttled
from pipeline.sources.ews_convert import call_error
from pipeline.sources.ews_gate import (
    MAX_BACK_OFF_SECONDS,
    BackOffGate,
    back_off_ms_in,
    gate_for,
    retry_after_seconds,
)

IN_200 = (
    b'<m:GetItemResponseMessage ResponseClass="Error"><m:ResponseCode>ErrorServerBusy'
    b'</m:ResponseCode><m:MessageXml><t:Value Name="BackOffMilliseconds">30000</t:Value>'
    b"</m:MessageXml></m:GetItemResponseMessage>"
)


def test_back_off_is_read_from_response_messages_and_faults() -> None:
    assert back_off_ms_in(IN_200) == 30000
    fault = b'<t:MessageXml><t:Value Name="BackOffMilliseconds">1500</t:Value></t:MessageXml>'
    assert back_off_ms_in(fault) == 1500
    assert back_off_ms_in(b"<nothing/>") == 0


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) == 0.0
    assert retry_after_seconds("soon") == 0.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after_seconds(later) <= 30


def test_gate_holds_extends_never_shortens_and_caps() -> None:
    gate = BackOffGate()
    assert gate.remaining() == 0 and gate.asked() == 0
    gate.observe(200, None, IN_200)
    assert gate.asked() == 30.0 and 29 < gate.remaining() <= 30
    gate.hold(1.0)  # shorter: ignored
    assert gate.asked() == 30.0
    gate.hold(10_000)
    assert gate.asked() == MAX_BACK_OFF_SECONDS


def test_gate_waits_and_observes_retry_after() -> None:
    gate = BackOffGate()
    gate.observe(503, {"Retry-After": "0"}, None)
    assert gate.remaining() == 0
    gate.hold(0.3)
    started = time.monotonic()
    gate.wait()
    assert time.monotonic() - started >= 0.25
    gate.observe(429, {"Retry-After": "2"}, None)
    assert gate.asked() == 2.0


def test_one_gate_per_server() -> None:
    assert gate_for("https://Mail.example.com/EWS/Exchange.asmx") is gate_for(
        "https://mail.example.com/other"
    )
    assert gate_for("https://a.example.com/") is not gate_for("https://b.example.com/")


@pytest.mark.parametrize(
    "exc",
    [
        ErrorExceededConnectionCount("x"),
        ErrorMailboxMoveInProgress("x"),
        ErrorMailboxStoreUnavailable("x"),
        ErrorInternalServerTransientError("x"),
        ErrorBatchProcessingStopped("x"),
    ],
)
def test_outages_are_retried_without_limit(exc: Exception) -> None:
    assert isinstance(call_error(exc), SourceUnavailable)


def test_busy_uses_what_the_server_asked_not_the_10s_default() -> None:
    busy = ErrorServerBusy("busy", back_off=10)  # exchangelib's stand-in for a 200 reply
    translated = call_error(busy, gate_seconds=30.0)
    assert isinstance(translated, Throttled) and translated.retry_after == 30.0
    http_503 = ErrorServerBusy(
        "Reraised from ErrorInternalServerTransientError(Caused by HTTP 503 response)", back_off=10
    )
    assert isinstance(call_error(http_503), SourceUnavailable)
    assert isinstance(call_error(http_503, gate_seconds=5.0), Throttled)
