"""Raw SOAP against the simulator: Microsoft's sample requests, the streaming body, faults and
bad input. Every response is validated against the EWS schema (the `sim` fixture checks all
recorded responses at teardown; these tests also check the wire details)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from exchangelib import Account

from exchange_sim import SimulatorThread
from tests.conftest import SHARED

from .conftest import MAILBOX, QUEUE, Recorder, message, sim_config, validate_ews
from .test_workflow import EVENTS, queue_of

SAMPLES = sorted((SHARED / "ews-conformance" / "samples").glob("*-request.xml"))
ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    '<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>'
    "<s:Body>{}</s:Body></s:Envelope>"
)


def post(sim: SimulatorThread, body: str | bytes) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    return requests.post(
        sim.ews_url, data=data, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30
    )


def only_envelope(response: requests.Response) -> validate_ews.EnvelopeResult:
    [result] = validate_ews.validate_stream(response.content, wire=True)
    assert result.ok, result.errors
    return result


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_microsoft_sample_requests_get_schema_valid_answers(
    sim: SimulatorThread, sample: Path
) -> None:
    response = post(sim, sample.read_bytes())
    result = only_envelope(response)
    operation = sample.name.split("-")[0]
    if all(r.ok for r in validate_ews.validate_stream(sample.read_bytes())):
        # A schema-valid request gets the operation's response (success or per-item errors).
        assert result.op == f"{operation}Response"
        assert response.status_code == 200
    else:
        # Microsoft's broken samples (see the kit's README) are refused as Exchange would.
        assert result.op == "Fault(ErrorSchemaValidation)"
        assert response.status_code == 500


def test_streaming_body_is_one_chunked_response_of_envelopes(
    sim: SimulatorThread, account: Account
) -> None:
    sub_id = queue_of(account).subscribe_to_streaming(event_types=EVENTS)
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    body = ENVELOPE.format(
        "<m:GetStreamingEvents><m:SubscriptionIds>"
        f"<t:SubscriptionId>{sub_id}</t:SubscriptionId></m:SubscriptionIds>"
        "<m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents>"
    )
    response = post(sim, body)
    assert response.headers["Transfer-Encoding"] == "chunked"
    results = list(validate_ews.validate_stream(response.content, wire=True))
    assert all(r.ok for r in results), [r.errors for r in results]
    assert len(results) >= 3
    assert (
        b"<m:ConnectionStatus>OK</m:ConnectionStatus>"
        in response.content.split(b"</s:Envelope>")[0]
    )
    assert response.content.rstrip().endswith(b"</s:Envelope>")
    last = response.content.rsplit(b"<?xml", 1)[1]
    assert b"<m:ConnectionStatus>Closed</m:ConnectionStatus>" in last
    assert b"<m:Notification>" in response.content
    assert item_id.encode() in response.content
    assert b"Watermark" not in response.content


def test_server_busy_is_a_soap_fault_with_http_500(sim: SimulatorThread) -> None:
    sim.set_busy(count=1, back_off_ms=2500)
    response = post(sim, ENVELOPE.format("<m:GetFolder/>"))
    assert response.status_code == 500
    assert only_envelope(response).op == "Fault(ErrorServerBusy)"
    assert b'<t:Value Name="BackOffMilliseconds">2500</t:Value>' in response.content
    assert b"ServerVersionInfo" not in response.content  # faults carry no header


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body>",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'boom'>]><x>&e;</x>",
        b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'/>",
        ENVELOPE.format("<m:NoSuchOperation/>").encode(),
        ENVELOPE.format("<Subscribe/>").encode(),
    ],
    ids=["empty", "not-xml", "truncated", "doctype", "no-body", "unknown-op", "no-namespace"],
)
def test_malformed_requests_get_a_schema_validation_fault(
    sim: SimulatorThread, body: bytes
) -> None:
    response = post(sim, body)
    assert response.status_code == 500
    assert only_envelope(response).op == "Fault(ErrorSchemaValidation)"


def test_structurally_incomplete_operation_gets_a_fault(sim: SimulatorThread) -> None:
    response = post(sim, ENVELOPE.format("<m:GetItem/>"))
    assert response.status_code == 500
    assert only_envelope(response).op == "Fault(ErrorSchemaValidation)"


def test_oversized_request_gets_a_fault() -> None:
    with SimulatorThread(sim_config(max_request_bytes=10_000)) as small:
        response = post(small, ENVELOPE.format("<m:GetFolder>" + "x" * 20_000 + "</m:GetFolder>"))
    assert response.status_code == 500
    assert only_envelope(response).op == "Fault(ErrorMessageSizeExceeded)"


def test_bad_ids_and_change_keys_are_per_item_errors(sim: SimulatorThread) -> None:
    item_id = sim.deliver(MAILBOX, QUEUE, message(1))
    body = ENVELOPE.format(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ItemIds>"
        f'<t:ItemId Id="{item_id}" ChangeKey="not a change key"/>'
        '<t:ItemId Id="garbage"/>'
        '<t:ItemId Id="AEVYU0lNSQAAAAAAAAAAAA=="/>'
        f'<t:ItemId Id="{item_id}"/>'
        "</m:ItemIds></m:GetItem>"
    )
    response = post(sim, body)
    assert only_envelope(response).op == "GetItemResponse"
    codes = [
        part.split(b"</m:ResponseCode>")[0]
        for part in response.content.split(b"<m:ResponseCode>")[1:]
    ]
    assert codes == [
        b"ErrorInvalidChangeKey",
        b"ErrorInvalidIdMalformed",
        b"ErrorInvalidIdMalformed",
        b"NoError",
    ]


def test_every_response_has_server_version_info(
    sim: SimulatorThread, account: Account, recorder: Recorder
) -> None:
    queue_of(account).refresh()
    for op, body in recorder.responses:
        assert b'<h:ServerVersionInfo MajorVersion="15" MinorVersion="1"' in body, op


def test_version_probe_without_hints_reads_the_server_version(sim: SimulatorThread) -> None:
    from exchangelib import DELEGATE, Configuration
    from exchangelib.transport import NOAUTH

    config = Configuration(service_endpoint=sim.ews_url, auth_type=NOAUTH)
    account = Account(MAILBOX, config=config, access_type=DELEGATE)
    assert account.version.build.major_version == 15
    assert account.version.build.minor_version == 1
    assert account.inbox.name == "Inbox"
