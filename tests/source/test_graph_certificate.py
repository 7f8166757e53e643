"""Certificate credentials for the Graph source (EMAILLOG_GRAPH_CERTIFICATE_FILE): a client
assertion signed with the app's key, checked by the simulator's token endpoint as Entra ID
checks it (signature, thumbprint, audience, issuer, validity window)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from exchange_sim import Simulator
from exchange_sim.__main__ import config_from_args, parse_args
from pipeline.errors import ConfigError, SourceUnavailable
from pipeline.model import MailRef
from pipeline.sources import Fetched
from pipeline.sources.graph import GraphSource
from pipeline.sources.graph_assertion import client_assertion
from tests.settings import make_settings
from tests.sim_graph.conftest import GraphRecorder
from tests.source.conftest import FOLDERS, MAILBOX, QUEUE, mime
from tests.source.graph_kit import graph_id, graph_settings

CERT_APP = "emaillog-cert-app"


def key_and_certificate(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A PEM file with a new RSA key and its self-signed certificate; and the certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / f"{name}.pem"
    path.write_text(key_pem + cert_pem)
    return path, cert_pem


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    recorder = GraphRecorder()
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as simulator:
        simulator.graph.record_responses(recorder)
        yield simulator
    assert recorder.invalid() == []


def cert_source(sim: Simulator, certificate_file: Path) -> GraphSource:
    settings = graph_settings(
        sim,
        graph_client_id=CERT_APP,
        graph_client_secret="",
        graph_certificate_file=str(certificate_file),
    )
    return GraphSource(settings)


async def test_a_certificate_app_gets_tokens_and_works(sim: Simulator, tmp_path: Path) -> None:
    pem_file, cert_pem = key_and_certificate(tmp_path, "app")
    sim.graph.register_app_certificate(CERT_APP, cert_pem)
    item = graph_id(sim.deliver(MAILBOX, QUEUE, mime("Quote")))
    source = cert_source(sim, pem_file)
    await source.open()
    try:
        [fetched] = await source.fetch([MailRef(item)])
        assert isinstance(fetched, Fetched) and fetched.mail.subject.startswith("Quote")
    finally:
        await source.close()


async def test_an_assertion_signed_with_another_key_is_refused(
    sim: Simulator, tmp_path: Path
) -> None:
    _, registered = key_and_certificate(tmp_path, "registered")
    other_file, _ = key_and_certificate(tmp_path, "other")
    sim.graph.register_app_certificate(CERT_APP, registered)
    source = cert_source(sim, other_file)
    with pytest.raises(SourceUnavailable, match="401 invalid_client"):
        await source.open()
    await source.close()


async def test_the_token_endpoint_checks_audience_and_issuer(
    sim: Simulator, tmp_path: Path
) -> None:
    pem_file, cert_pem = key_and_certificate(tmp_path, "app")
    sim.graph.register_app_certificate(CERT_APP, cert_pem)
    token_url = f"{sim.base_url}/contoso/oauth2/v2.0/token"
    cases = {
        "good": client_assertion(str(pem_file), CERT_APP, token_url),
        "wrong audience": client_assertion(str(pem_file), CERT_APP, token_url + "x"),
        "wrong issuer": client_assertion(str(pem_file), "someone-else", token_url),
        "malformed": "not.a.jwt",
    }
    statuses: dict[str, tuple[int, str]] = {}
    async with aiohttp.ClientSession() as http:
        for name, assertion in cases.items():
            form = {
                "grant_type": "client_credentials",
                "client_id": CERT_APP,
                "scope": "https://graph.microsoft.com/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            }
            async with http.post(token_url, data=form) as response:
                body = await response.json()
                statuses[name] = (response.status, str(body.get("error", "")))
    assert statuses == {
        "good": (200, ""),
        "wrong audience": (401, "invalid_client"),
        "wrong issuer": (401, "invalid_client"),
        "malformed": (401, "invalid_client"),
    }


def test_settings_accept_a_certificate_instead_of_a_secret(tmp_path: Path) -> None:
    base = {
        "source": "graph",
        "graph_mailbox": MAILBOX,
        "graph_tenant_id": "contoso",
        "graph_client_id": CERT_APP,
    }
    with pytest.raises(ConfigError, match="CERTIFICATE_FILE"):
        make_settings(**base).check_service()
    make_settings(**base, graph_certificate_file=str(tmp_path / "app.pem")).check_service()


def test_an_unreadable_or_bad_certificate_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        client_assertion(str(tmp_path / "missing.pem"), CERT_APP, "https://x/token")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="expected PEM"):
        client_assertion(str(bad), CERT_APP, "https://x/token")


def test_exchange_sim_registers_a_certificate_app_from_the_command_line(tmp_path: Path) -> None:
    _, cert_pem = key_and_certificate(tmp_path, "cli")
    cert_file = tmp_path / "cli-cert.pem"
    cert_file.write_text(cert_pem)
    config = config_from_args(parse_args(["--app", f"{CERT_APP}:@{cert_file}", "--app", "a:s"]))
    assert config.apps == {CERT_APP: cert_pem, "a": "s"}
