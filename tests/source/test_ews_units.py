"""The EWS adapter's pure parts, on exchangelib objects built in memory (no server)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
import requests
from exchangelib import UTC as EWS_UTC
from exchangelib import EWSDateTime, Mailbox, Message
from exchangelib.errors import (
    ErrorFolderNotFound,
    ErrorInternalServerError,
    ErrorInvalidIdMalformed,
    ErrorItemNotFound,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    UnauthorizedError,
)
from exchangelib.properties import (
    CreatedEvent,
    FolderId,
    ItemId,
    MovedEvent,
    NewMailEvent,
    ParentFolderId,
    StatusEvent,
)
from lxml import etree

from pipeline.config import FolderPath
from pipeline.errors import (
    ConfigError,
    FolderNotFound,
    ItemGone,
    Permanent,
    Retryable,
    SourceUnavailable,
    Throttled,
)
from pipeline.model import Address, MailRef, Sensitivity, content_hash
from pipeline.sources.ews_connect import configuration
from pipeline.sources.ews_convert import (
    align,
    call_error,
    item_error,
    to_mail,
)
from pipeline.sources.ews_links import MoveItemOnePerInput as _MoveItemOnePerInput
from pipeline.sources.ews_stream import (
    ArrivalStream,
    _Stopped,
    connection_minutes,
    failure_delay,
)
from tests.settings import make_settings

SENT = EWSDateTime(2024, 3, 4, 10, 0, 0, tzinfo=EWS_UTC)
RECEIVED = EWSDateTime(2024, 3, 4, 10, 0, 5, tzinfo=EWS_UTC)


def message(**overrides: object) -> Message:
    fields: dict[str, object] = {
        "subject": "Quote 42",
        "sensitivity": "Normal",
        "message_id": "<q42@example.com>",
        "sender": Mailbox(email_address="Sales@Example.com", name="Sales"),
        "author": Mailbox(email_address="author@example.com", name="Author"),
        "to_recipients": [Mailbox(email_address="buyer@customer.test", name="Buyer")],
        "cc_recipients": [Mailbox(email_address="cc@customer.test")],
        "datetime_sent": SENT,
        "datetime_received": RECEIVED,
        "is_draft": False,
        "size": 1234,
    }
    fields.update(overrides)
    return Message(**fields)


# --- Mail conversion ---


def test_message_becomes_mail_with_every_rule_property() -> None:
    mail = to_mail(message())
    assert mail.message_id == "<q42@example.com>"
    assert mail.subject == "Quote 42"
    assert mail.sender == Address("Sales@Example.com", "Sales")
    assert mail.to == (Address("buyer@customer.test", "Buyer"),)
    assert mail.cc == (Address("cc@customer.test", ""),)
    assert mail.sensitivity is Sensitivity.NORMAL
    assert mail.is_draft is False
    assert mail.sent_at == datetime(2024, 3, 4, 10, 0, 0, tzinfo=UTC)
    assert mail.received_at == datetime(2024, 3, 4, 10, 0, 5, tzinfo=UTC)
    # Plain datetimes in UTC, not exchangelib's classes, leave the adapter.
    assert type(mail.sent_at) is datetime
    assert mail.sent_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("ews", "expected"),
    [
        ("Normal", Sensitivity.NORMAL),
        ("Personal", Sensitivity.PERSONAL),
        ("Private", Sensitivity.PRIVATE),
        ("Confidential", Sensitivity.CONFIDENTIAL),
        (None, Sensitivity.NORMAL),
    ],
)
def test_sensitivity_mapping(ews: str | None, expected: Sensitivity) -> None:
    assert to_mail(message(sensitivity=ews)).sensitivity is expected


def test_sender_falls_back_to_from_when_sender_is_empty() -> None:
    mail = to_mail(message(sender=None))
    assert mail.sender == Address("author@example.com", "Author")
    mail = to_mail(message(sender=Mailbox(email_address="", name="")))
    assert mail.sender == Address("author@example.com", "Author")


def test_no_sender_no_recipients_no_message_id() -> None:
    mail = to_mail(
        message(sender=None, author=None, to_recipients=None, cc_recipients=None, message_id="")
    )
    assert mail.sender is None
    assert mail.to == ()
    assert mail.cc == ()
    assert mail.message_id is None
    assert mail.dedupe_key == f"sha256:{mail.content_hash}"


def test_drafts_and_control_characters() -> None:
    mail = to_mail(message(is_draft=True, subject="a\x00b\x07c", message_id=" <x\x00@y> "))
    assert mail.is_draft is True
    assert mail.subject == "abc"
    assert mail.message_id == "<x@y>"


def test_content_hash_ignores_what_differs_between_copies() -> None:
    one = to_mail(message(datetime_received=RECEIVED, size=1))
    two = to_mail(
        message(
            datetime_received=EWSDateTime(2025, 1, 1, tzinfo=EWS_UTC),
            size=999,
            sender=Mailbox(email_address="SALES@example.COM", name="Other name"),
        )
    )
    assert one.content_hash == two.content_hash
    changed = to_mail(message(subject="Quote 43"))
    assert changed.content_hash != one.content_hash
    recipient_changed = to_mail(message(cc_recipients=[]))
    assert recipient_changed.content_hash != one.content_hash


def test_content_hash_is_a_sha256_hex_digest() -> None:
    digest = content_hash("s", None, (), (), None)
    assert len(digest) == 64
    assert int(digest, 16) >= 0


# --- error mapping ---


def test_server_busy_becomes_throttled_with_the_servers_back_off() -> None:
    error = call_error(ErrorServerBusy("busy", back_off=1.5))
    assert isinstance(error, Throttled)
    assert error.retry_after == 1.5


def test_server_busy_without_back_off_uses_exchangelibs_default() -> None:
    error = call_error(ErrorServerBusy("busy"))
    assert isinstance(error, Throttled)
    assert error.retry_after == 10.0


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ChunkedEncodingError("cut"),
        ErrorTimeoutExpired("Reraised from ConnectionError(...)"),
        # exchangelib re-raises a connection error as busy when its pool has >1 session.
        ErrorServerBusy("Reraised from ErrorTimeoutExpired(Reraised from ...)", back_off=10),
        UnauthorizedError("Invalid credentials"),
        ConnectionResetError(),
    ],
)
def test_connection_errors_become_source_unavailable(exc: Exception) -> None:
    assert isinstance(call_error(exc), SourceUnavailable)


def test_other_call_errors() -> None:
    assert isinstance(call_error(ErrorFolderNotFound("gone")), FolderNotFound)
    assert isinstance(call_error(ErrorInternalServerError("x")), Retryable)
    bug = ValueError("a bug stays a bug")
    assert call_error(bug) is bug


def test_item_errors() -> None:
    assert isinstance(item_error(ErrorItemNotFound("x")), ItemGone)
    malformed = item_error(ErrorInvalidIdMalformed("x"))
    assert isinstance(malformed, Permanent)
    assert not isinstance(malformed, ItemGone)
    assert isinstance(item_error(ErrorServerBusy("b", back_off=2)), Throttled)
    assert isinstance(item_error(ErrorInternalServerError("x")), Retryable)


def test_align_keeps_matching_results_and_refuses_to_guess() -> None:
    assert align([1, 2], 2, "op") == [1, 2]
    misaligned = align([1], 3, "op")
    assert len(misaligned) == 3
    assert all(isinstance(r, Retryable) for r in misaligned)


def test_move_yields_none_for_an_empty_items_container() -> None:
    # MoveItem into a public folder answers <m:Items/>; exchangelib alone yields nothing.
    empty = etree.Element("{http://schemas.microsoft.com/exchange/services/2006/messages}Items")
    assert _MoveItemOnePerInput._get_elements_in_container(empty) == [None]
    full = etree.Element("{http://schemas.microsoft.com/exchange/services/2006/messages}Items")
    child = etree.SubElement(
        full, "{http://schemas.microsoft.com/exchange/services/2006/types}Message"
    )
    assert _MoveItemOnePerInput._get_elements_in_container(full) == [child]


# --- configuration ---


@pytest.mark.parametrize(
    ("raw", "public", "parts"),
    [
        ("Email Logging/Queue", False, ("Email Logging", "Queue")),
        ("/Email Logging/Queue/", False, ("Email Logging", "Queue")),
        ("public:/Email Logging/Queue", True, ("Email Logging", "Queue")),
        ("public:Queue", True, ("Queue",)),
    ],
)
def test_folder_paths(raw: str, public: bool, parts: tuple[str, ...]) -> None:
    path = FolderPath.parse(raw)
    assert (path.public, path.parts) == (public, parts)


def test_empty_folder_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        make_settings(queue_folder="public:/")


def test_configuration_sizes_the_pool_and_never_probes() -> None:
    settings = make_settings(
        ews_url="https://mail.example.test/EWS/Exchange.asmx",
        ews_mailbox="queue@example.test",
        ews_auth="ntlm",
        ews_username="svc",
        ews_password="pw",
        ews_version="15.2",
        ews_worker_threads=3,
    )
    config, access_type = configuration(settings.source.ews)
    assert config.max_connections == 1 + 3 + 1
    assert config.auth_type == "NTLM"
    assert access_type == "delegate"
    assert config.version.build.major_version == 15
    assert config.version.build.minor_version == 2
    assert config.retry_policy.fail_fast is True


def test_oauth2_impersonates_and_honours_the_token_url_override() -> None:
    settings = make_settings(
        ews_url="https://mail.example.test/EWS/Exchange.asmx",
        ews_mailbox="queue@example.test",
        ews_auth="oauth2",
        ews_client_id="id",
        ews_client_secret="secret",
        ews_tenant_id="tenant",
        ews_token_url="http://127.0.0.1:1/token",
    )
    config, access_type = configuration(settings.source.ews)
    assert access_type == "impersonation"
    assert config.credentials.token_url == "http://127.0.0.1:1/token"


# --- the stream thread's filtering, dedupe and backpressure ---


def test_back_off_doubles_up_to_the_cap() -> None:
    delays = [failure_delay(n, cap_seconds=30) for n in range(9)]
    assert delays[0] == 0
    assert delays[1:5] == [0.5, 1, 2, 4]
    assert max(delays) == 30
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("stream_minutes", "interval_seconds", "expected"),
    [(30, 300.0, 5), (30, 3600.0, 30), (2, 300.0, 2), (30, 1.0, 1), (30, 90.0, 2)],
)
def test_stream_connections_end_in_time_for_the_safety_resync(
    stream_minutes: int, interval_seconds: float, expected: int
) -> None:
    assert connection_minutes(stream_minutes, interval_seconds) == expected


class _Folder:
    id = "F-queue"


def _stream(loop: asyncio.AbstractEventLoop, refs: asyncio.Queue[MailRef]) -> ArrivalStream:
    return ArrivalStream(
        account=None,
        queue_folder=_Folder(),
        public=False,
        stream_timeout_minutes=1,
        catch_up_interval_seconds=60.0,
        back_off_cap_seconds=30.0,
        loop=loop,
        refs=refs,
        notify=lambda hook, args: None,
    )


def _event(cls: type, item: str | None, parent: str) -> object:
    return cls(
        timestamp=RECEIVED,
        item_id=ItemId(id=item, changekey="CK") if item else None,
        folder_id=None if item else FolderId(id="F-sub"),
        parent_folder_id=ParentFolderId(id=parent),
    )


async def test_events_are_filtered_to_queue_items_and_deduplicated() -> None:
    refs: asyncio.Queue[MailRef] = asyncio.Queue(maxsize=10)
    stream = _stream(asyncio.get_running_loop(), refs)
    events = [
        _event(CreatedEvent, "I1", "F-queue"),
        _event(NewMailEvent, "I1", "F-queue"),  # the same delivery, second event
        _event(MovedEvent, "I2", "F-storage"),  # an item leaving the queue
        _event(CreatedEvent, None, "F-queue"),  # a subfolder, not an item
        StatusEvent(),
        _event(MovedEvent, "I3", "F-queue"),  # moved into the queue: a new id
    ]

    await asyncio.to_thread(stream._emit_events, events)
    got = [refs.get_nowait() for _ in range(refs.qsize())]
    assert [r.item_id for r in got] == ["I1", "I3"]
    assert got[0].received_at == datetime(2024, 3, 4, 10, 0, 5, tzinfo=UTC)


async def test_a_full_queue_blocks_the_thread_until_stop() -> None:
    refs: asyncio.Queue[MailRef] = asyncio.Queue(maxsize=1)
    stream = _stream(asyncio.get_running_loop(), refs)
    outcome: list[str] = []
    second_attempted = threading.Event()

    def emit_two() -> None:
        stream._emit([MailRef("A")])
        second_attempted.set()
        try:
            stream._emit([MailRef("B")])
            outcome.append("emitted")
        except _Stopped:
            outcome.append("stopped")

    thread = threading.Thread(target=emit_two)
    thread.start()
    await asyncio.to_thread(second_attempted.wait)
    await asyncio.sleep(0.3)  # give a wrongly non-blocking emit the chance to finish
    assert outcome == []  # blocked: the queue holds one ref and nobody took it
    assert refs.qsize() == 1
    stream.stop()
    await asyncio.to_thread(thread.join)
    assert outcome == ["stopped"]
    assert [refs.get_nowait().item_id] == ["A"]
