"""End to end: unmodified exchangelib against the real simulator (exchange_sim.Simulator) with
each auth mode, reading a delivered message from a queue folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import exchangelib
import pytest
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Build,
    Configuration,
    Credentials,
    Version,
)
from exchangelib.errors import UnauthorizedError

from exchange_sim import Simulator

from .conftest import Served, local_oauth2_credentials

MAILBOX = "queue@example.com"
USERS = {"EXAMPLE\\svc": "Svc-pw1", "svc2@example.com": "Svc-pw2", "app-client-id": "s3cret"}
RAW = (
    b"From: Carol <carol@contoso.com>\r\nTo: queue@example.com\r\n"
    b"Subject: auth e2e\r\nMessage-ID: <auth-e2e@contoso.com>\r\n"
    b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nhello\r\n"
)

StartSim = Callable[[str], Awaitable[Simulator]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    sims: list[Simulator] = []

    async def start(mode: str) -> Simulator:
        sim = Simulator(
            mailboxes=[MAILBOX], folders=["Email Logging/Queue"], users=USERS, auth_mode=mode
        )
        await sim.start()
        sims.append(sim)
        sim.deliver(MAILBOX, "Email Logging/Queue", RAW)
        return sim

    yield start
    exchangelib.close_connections()
    for sim in sims:
        await sim.stop()


def queue_subjects(ews_url: str, credentials: Any, auth_type: str | None, access: str) -> list[str]:
    config = Configuration(
        service_endpoint=ews_url,
        credentials=credentials,
        auth_type=auth_type,
        version=Version(build=Build(15, 1)),
    )
    account = Account(MAILBOX, config=config, access_type=access)
    queue = account.msg_folder_root // "Email Logging" // "Queue"
    return [m.subject for m in queue.all().only("subject")]


@pytest.mark.parametrize(
    ("mode", "auth_type", "user"),
    [
        ("basic", BASIC, "EXAMPLE\\svc"),
        ("basic", BASIC, "svc2@example.com"),
        ("ntlm", NTLM, "EXAMPLE\\svc"),
        ("ntlm", NTLM, "svc2@example.com"),
        ("any", NTLM, "EXAMPLE\\svc"),
        ("any", BASIC, "svc2@example.com"),
        ("basic", None, "EXAMPLE\\svc"),  # exchangelib probes and finds Basic
        ("ntlm", None, "svc2@example.com"),  # ... and NTLM
    ],
)
async def test_exchangelib_reads_the_queue(
    start_sim: StartSim, mode: str, auth_type: str | None, user: str
) -> None:
    sim = await start_sim(mode)
    credentials = Credentials(user, USERS[user])
    subjects = await asyncio.to_thread(
        queue_subjects, sim.ews_url, credentials, auth_type, DELEGATE
    )
    assert subjects == ["auth e2e"]


@pytest.mark.parametrize("mode", ["oauth2", "any"])
async def test_exchangelib_reads_the_queue_with_oauth2(
    start_sim: StartSim, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    sim = await start_sim(mode)
    served = Served(base=sim.base_url)
    credentials = local_oauth2_credentials(served, "app-client-id", USERS["app-client-id"])
    subjects = await asyncio.to_thread(
        queue_subjects, sim.ews_url, credentials, OAUTH2, IMPERSONATION
    )
    assert subjects == ["auth e2e"]


@pytest.mark.parametrize(("mode", "auth_type"), [("basic", BASIC), ("ntlm", NTLM), ("any", NTLM)])
async def test_exchangelib_wrong_password_is_unauthorized(
    start_sim: StartSim, mode: str, auth_type: str
) -> None:
    sim = await start_sim(mode)
    credentials = Credentials("EXAMPLE\\svc", "not-the-password")
    with pytest.raises(UnauthorizedError, match="Invalid credentials"):
        await asyncio.to_thread(queue_subjects, sim.ews_url, credentials, auth_type, DELEGATE)
