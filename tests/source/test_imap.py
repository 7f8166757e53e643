"""The IMAP source's own behaviour on a real Dovecot (the shared contract is test_contract.py):
TLS, STARTTLS and plain; a wrong certificate refused; settings; IMAP URLs; servers without
IDLE (polling) or MOVE (COPY + STORE + UID EXPUNGE); a UIDVALIDITY change."""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pipeline.config import Settings
from pipeline.errors import ConfigError, FolderNotFound, ItemGone, SourceUnavailable
from pipeline.model import MailRef
from pipeline.sources import Disposal, Fetched, Stored
from pipeline.sources.factory import build_source
from pipeline.sources.imap import ImapSource
from pipeline.sources.imap_ops import uid_set
from tests.dovecot import PASSWORD, USER, Dovecot, make_certificate
from tests.imap_proxy import ImapProxy
from tests.settings import make_settings
from tests.source.conftest import QUEUE, STORAGE, Recorder, mime, next_ref, take
from tests.source.imap_kit import dovecot_server, imap_settings


@pytest.fixture
async def server() -> AsyncIterator[Dovecot]:
    async with dovecot_server() as dovecot:
        yield dovecot


async def opened(settings: Settings, events: Recorder | None = None) -> ImapSource:
    source = ImapSource(settings, events)
    await source.open()
    return source


# --- settings ---


def test_settings_defaults_and_problems(tmp_path: Path) -> None:
    settings = make_settings(source="imap")
    assert settings.source.imap.port == 0
    with pytest.raises(ConfigError) as raised:
        settings.check_service()
    text = str(raised.value)
    assert "EMAILLOG_IMAP_HOST" in text and "EMAILLOG_IMAP_PASSWORD" in text
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    from pipeline.config import Settings as S

    env = {
        "EMAILLOG_SOURCE": "imap",
        "EMAILLOG_IMAP_HOST": "mail.example.com",
        "EMAILLOG_IMAP_USERNAME": "queue",
        "EMAILLOG_IMAP_PASSWORD_FILE": str(secret),
        "EMAILLOG_UI_PORT": "0",  # the web UI's own checks are not under test here
    }
    good = S.from_env(env)
    good.check_service()
    assert good.source.imap.password == "s3cret"
    assert good.redacted()["EMAILLOG_IMAP_PASSWORD"] == "***"
    oauth = S.from_env({**env, "EMAILLOG_IMAP_AUTH": "xoauth2"})
    with pytest.raises(ConfigError, match="EMAILLOG_IMAP_OAUTH2_TOKEN_FILE"):
        oauth.check_service()
    with pytest.raises(ConfigError, match="EMAILLOG_IMAP_SECURITY"):
        S.from_env({**env, "EMAILLOG_IMAP_SECURITY": "ssl3"})
    assert isinstance(build_source(good, Recorder()), ImapSource)


def test_uid_sets() -> None:
    assert uid_set("3,5:7,9") == [3, 5, 6, 7, 9]
    assert uid_set("7:5") == [7, 6, 5]


# --- transport security ---


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
async def test_each_security_mode_works(server: Dovecot, security: str) -> None:
    port = server.tls_port if security == "tls" else server.port
    settings = imap_settings(
        server,
        port,
        imap_security=security,
        imap_host="localhost",
        imap_ca_file=server.ca_file,
    )
    uid = server.append(QUEUE, mime())
    source = await opened(settings)
    try:
        assert await source.backlog() == 1
        [fetched] = await source.fetch([MailRef(f"{server.uidvalidity(QUEUE)}:{uid}")])
        assert isinstance(fetched, Fetched)
    finally:
        await source.close()


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_a_wrong_certificate_is_refused(
    server: Dovecot, security: str, tmp_path: Path
) -> None:
    make_certificate(tmp_path)  # another self-signed certificate: not the server's
    port = server.tls_port if security == "tls" else server.port
    common: dict[str, Any] = {"imap_security": security, "imap_host": "localhost"}
    wrong = imap_settings(server, port, imap_ca_file=str(tmp_path / "cert.pem"), **common)
    with pytest.raises(SourceUnavailable, match="certificate"):
        await opened(wrong)
    system = imap_settings(server, port, **common)  # the system's CAs do not know it either
    with pytest.raises(SourceUnavailable, match="certificate"):
        await opened(system)
    unchecked = imap_settings(server, port, imap_verify_tls=False, **common)
    source = await opened(unchecked)  # verification off: accepted (operators' choice)
    await source.close()


async def test_wrong_password_and_missing_folder(server: Dovecot) -> None:
    with pytest.raises(SourceUnavailable, match="login"):
        await opened(imap_settings(server, imap_password="not-" + PASSWORD))
    with pytest.raises(FolderNotFound, match="EMAILLOG_STORAGE_FOLDER"):
        await opened(imap_settings(server, storage_folder="No/Such"))


# --- links, fallbacks, resync ---


async def test_stored_link_is_an_rfc5092_imap_url(server: Dovecot) -> None:
    source = await opened(imap_settings(server))
    try:
        uid = server.append(QUEUE, mime(message_id="<linked@ours.test>"))
        [stored] = await source.move_to_storage([MailRef(f"{server.uidvalidity(QUEUE)}:{uid}")])
        assert isinstance(stored, Stored) and stored.item_id is not None
        validity, new_uid = stored.item_id.split(":")
        assert server.uids(STORAGE) == [int(new_uid)]
        assert stored.web_link == (
            f"imap://{USER.replace('@', '%40')}@127.0.0.1:{server.port}/"
            f"Email%20Logging/Storage;UIDVALIDITY={validity}/;UID={new_uid}"
        )
        assert await source.find_in_storage("<linked@ours.test>") == [stored]
    finally:
        await source.close()


@pytest.mark.parametrize("also_hidden", [(), (b"UIDPLUS",)])
async def test_without_move_and_idle_it_copies_expunges_and_polls(
    server: Dovecot, also_hidden: tuple[bytes, ...]
) -> None:
    """COPY + STORE \\Deleted + UID EXPUNGE (plain EXPUNGE without UIDPLUS), and polling."""
    proxy = await ImapProxy.start(server.port, hidden=(b"MOVE", b"IDLE", *also_hidden))
    events = Recorder()
    source = await opened(imap_settings(server, proxy.port, poll_interval_seconds=0.2), events)
    try:
        arrivals = source.arrivals()
        first = asyncio.ensure_future(next_ref(arrivals))
        await events.wait_for(lambda: events.connected == [True])
        keep = server.append(QUEUE, mime())
        other = server.append(QUEUE, mime())
        ref = await first  # found by polling: the server announced no IDLE
        assert ref.item_id.endswith(f":{keep}")
        [stored] = await source.move_to_storage([ref])
        assert isinstance(stored, Stored) and stored.item_id  # COPYUID from the COPY
        assert server.uids(QUEUE) == [other]  # UID EXPUNGE left the other one alone
        assert len(server.uids(STORAGE)) == 1
        assert (await next_ref(arrivals)).item_id.endswith(f":{other}")
        assert events.modes == ["polling"]
    finally:
        await source.close()
        await proxy.close()


async def test_uidvalidity_change_resyncs_and_old_refs_are_gone(server: Dovecot) -> None:
    events = Recorder()
    source = await opened(imap_settings(server), events)
    try:
        arrivals = source.arrivals()
        server.append(QUEUE, mime())
        [old] = await take(arrivals, 1)
        server.recreate(QUEUE)  # new UIDVALIDITY; Dovecot ends the sessions on the folder
        uid = server.append(QUEUE, mime())
        new = await next_ref(arrivals)
        assert new.item_id == f"{server.uidvalidity(QUEUE)}:{uid}"
        assert new.item_id != old.item_id
        [gone] = await source.fetch([old])
        assert isinstance(gone, ItemGone)
        [result] = await source.dispose([old], Disposal.HARD_DELETE)
        assert isinstance(result, ItemGone)
        assert server.uids(QUEUE) == [uid]  # a stale ref never touches the new folder's mail
    finally:
        await source.close()


async def test_mail_delivered_by_lmtp_arrives(server: Dovecot) -> None:
    """Transport delivery (Dovecot's LMTP, as Postfix hands mail over) into INBOX as the queue."""
    events = Recorder()
    source = await opened(imap_settings(server, queue_folder="INBOX"), events)
    try:
        arrivals = source.arrivals()
        first = asyncio.ensure_future(next_ref(arrivals))
        await events.wait_for(lambda: events.connected == [True])
        raw = mime("By LMTP", message_id="<lmtp-1@ours.test>")
        with smtplib.LMTP("127.0.0.1", server.lmtp_port) as lmtp:
            lmtp.sendmail("sales@ours.test", [USER], raw)
        ref = await first
        [fetched] = await source.fetch([ref])
        assert isinstance(fetched, Fetched)
        assert fetched.mail.message_id == "<lmtp-1@ours.test>"
        assert fetched.mail.subject.startswith("By LMTP")
    finally:
        await source.close()


async def test_xoauth2_token_is_read_again_at_each_connection(tmp_path: Path) -> None:
    """Dovecot's oauth2 passdb checks tokens against an introspection endpoint (RFC 7662)
    served here; the token file is rewritten (a refresher's job) and the next connection
    the source makes uses the new token."""
    valid = {"token-1"}

    async def introspect(request: web.Request) -> web.Response:
        token = (await request.post()).get("token")
        active = token in valid
        return web.json_response({"active": active, "username": USER} if active else {})

    app = web.Application()
    app.router.add_post("/introspect", introspect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    token = tmp_path / "token"
    token.write_text("token-1\n")
    url = f"http://127.0.0.1:{port}/introspect"
    try:
        with (
            tempfile.TemporaryDirectory() as root,
            Dovecot.start(Path(root), oauth2_introspection_url=url) as server,
        ):
            proxy = await ImapProxy.start(server.port)
            settings = imap_settings(
                server, proxy.port, imap_auth="xoauth2", imap_oauth2_token_file=str(token),
                imap_password="",
            )  # fmt: skip
            source = await opened(settings)
            try:
                assert await source.backlog() == 0
                valid.clear()
                valid.add("token-2")  # the old token is revoked, the refresher writes the new
                token.write_text("token-2\n")
                proxy.drop_all()
                with pytest.raises(SourceUnavailable):
                    await source.backlog()  # the connection was lost under this call
                assert await source.backlog() == 0  # reconnected with token-2
            finally:
                await source.close()
                await proxy.close()
            token.write_text("revoked\n")
            direct = dataclasses.replace(
                settings,
                source=dataclasses.replace(
                    settings.source,
                    imap=dataclasses.replace(settings.source.imap, port=server.port),
                ),
            )
            with pytest.raises(SourceUnavailable, match="login"):
                await opened(direct)
    finally:
        await runner.cleanup()


async def test_a_refused_idle_falls_back_to_polling_then_idles_again(server: Dovecot) -> None:
    proxy = await ImapProxy.start(server.port)
    events = Recorder()
    source = await opened(imap_settings(server, proxy.port, poll_interval_seconds=0.2), events)
    try:
        proxy.busy_next(" IDLE", 1)  # the server answers the first IDLE with NO
        arrivals = source.arrivals()
        first = asyncio.ensure_future(next_ref(arrivals))
        await events.wait_for(lambda: "polling" in events.modes)
        one = server.append(QUEUE, mime())
        assert (await first).item_id.endswith(f":{one}")  # found by a poll, or by IDLE again
        second = asyncio.ensure_future(next_ref(arrivals))  # the watcher runs while awaited
        await events.wait_for(lambda: events.modes[-1:] == ["streaming"])
        two = server.append(QUEUE, mime())
        assert (await second).item_id.endswith(f":{two}")
        assert events.modes[:2] == ["streaming", "polling"]
    finally:
        await source.close()
        await proxy.close()


async def test_folders_map_onto_the_servers_delimiter() -> None:
    """A server whose hierarchy delimiter is "." (found with LIST): the configured
    "Email Logging/Queue" is its "Email Logging.Queue"."""
    with (
        tempfile.TemporaryDirectory() as root,
        Dovecot.start(Path(root), separator=".") as server,
    ):
        source = await opened(imap_settings(server))
        try:
            assert source.folders.queue == "Email Logging.Queue"
            assert source.folders.storage == "Email Logging.Storage"
            uid = server.append(QUEUE, mime())
            [stored] = await source.move_to_storage([MailRef(f"{server.uidvalidity(QUEUE)}:{uid}")])
            assert isinstance(stored, Stored) and stored.web_link is not None
            assert "/Email%20Logging.Storage;UIDVALIDITY=" in stored.web_link
            assert len(server.uids(STORAGE)) == 1
        finally:
            await source.close()


async def test_folders_are_found_under_the_personal_namespace_prefix() -> None:
    """A server keeping every folder under "INBOX." (Courier style): the configured
    "Email Logging/Queue" is found as "INBOX.Email Logging.Queue"; trash is "INBOX.Trash"."""
    with (
        tempfile.TemporaryDirectory() as root,
        Dovecot.start(Path(root), separator=".", prefix="INBOX.") as server,
    ):
        source = await opened(imap_settings(server, disposal="trash"))
        try:
            assert source.folders.queue == "INBOX.Email Logging.Queue"
            assert source.folders.trash == "INBOX.Trash"
            uid = server.append(QUEUE, mime())
            ref = MailRef(f"{server.uidvalidity(QUEUE)}:{uid}")
            assert await source.dispose([ref], Disposal.TRASH) == [None]
            assert len(server.uids("Trash")) == 1
        finally:
            await source.close()


async def test_idle_is_reissued_before_the_servers_timeout(server: Dovecot) -> None:
    """RFC 2177: a client should end IDLE and issue it again within 29 minutes; here the
    period is made short and every renewal is seen at the proxy, the queue still watched."""
    proxy = await ImapProxy.start(server.port)
    events = Recorder()
    settings = imap_settings(server, proxy.port, imap_idle_renew_seconds=0.2)
    source = await opened(settings, events)
    try:
        arrivals = source.arrivals()
        first = asyncio.ensure_future(next_ref(arrivals))
        async with asyncio.timeout(20):
            while proxy.idles < 4:
                await asyncio.sleep(0.05)
        uid = server.append(QUEUE, mime())
        assert (await first).item_id.endswith(f":{uid}")
        assert events.connected == [True] and events.modes == ["streaming"]
    finally:
        await source.close()
        await proxy.close()


async def test_x_unsent_marks_a_draft_without_the_flag(server: Dovecot) -> None:
    source = await opened(imap_settings(server))
    try:
        uid = server.append(QUEUE, b"X-Unsent: 1\r\n" + mime(message_id=None))
        [fetched] = await source.fetch([MailRef(f"{server.uidvalidity(QUEUE)}:{uid}")])
        assert isinstance(fetched, Fetched) and fetched.mail.is_draft
    finally:
        await source.close()
