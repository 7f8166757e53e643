"""The reliability suite on a real Dovecot (`emaillog run` with EMAILLOG_SOURCE=imap as a
subprocess): SIGKILL at every step boundary, Dovecot killed and restarted mid-run, IDLE
connections dropped, a UIDVALIDITY change, and the whole real-world corpus by APPEND. Each
ends with the same invariants check as the EWS scenarios (invariants.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dovecot import Dovecot
from tests.reliability.imap_scenario import ImapScenario
from tests.reliability.mail import corpus_letters, hostile_batch, mixed_batch
from tests.reliability.process import wait_for
from tests.reliability.scenario import CRASH_POINTS, kept
from tests.service.harness import QUEUE

#: Dovecot refuses to store a zero-byte message ("Can't save a zero byte message"), so no
#: IMAP queue can hold one: the only corpus file that cannot be delivered by APPEND.
NOT_STORABLE = {"parseemails-no_content.eml"}


@pytest.fixture
def server() -> Iterator[Dovecot]:
    with tempfile.TemporaryDirectory(prefix="dovecot-") as root, Dovecot.start(Path(root)) as s:
        yield s


@pytest.fixture
def imap(
    server: Dovecot, db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ImapScenario]:
    with kept(ImapScenario(server, db, tmp_path), request) as s:
        yield s


@pytest.mark.parametrize(("crash_at", "overrides"), CRASH_POINTS)
def test_crash_at_each_step_then_restart_on_dovecot(
    imap: ImapScenario, crash_at: str, overrides: dict[str, object]
) -> None:
    batch = mixed_batch()
    imap.deliver(batch[::2])  # waiting before start: taken in by the catch-up
    doomed = imap.start(crash_at=crash_at, **overrides)
    doomed.wait_ready_or_gone()
    imap.deliver(batch[1::2])  # arriving while it runs (or after it died)
    doomed.wait_crashed()

    outcomes = imap.finish(imap.start(**overrides))
    imap.check_copies(outcomes.by_item)


def test_crash_while_the_reconciler_finishes_a_claim_on_dovecot(imap: ImapScenario) -> None:
    imap.deliver(mixed_batch())
    imap.start(crash_at="after_claim").wait_crashed()
    imap.start(crash_at="reconciler_before_record").wait_crashed()
    outcomes = imap.finish(imap.start())
    imap.check_copies(outcomes.by_item)


def test_dovecot_killed_and_restarted_mid_run(imap: ImapScenario, server: Dovecot) -> None:
    service = imap.start()
    imap.deliver(mixed_batch())
    server.kill()  # SIGKILL of every Dovecot process, whatever the service was doing
    server.launch()
    imap.deliver(mixed_batch())
    wait_for(lambda: service.metrics().get("emaillog_source_reconnects_total", 0) >= 1,
             "the service to notice and reconnect")  # fmt: skip
    imap.finish(service)


def test_idle_connections_dropped_while_mail_arrives(imap: ImapScenario) -> None:
    service = imap.start()
    for _ in range(3):
        imap.deliver(mixed_batch(copies=1))
        wait_for(imap.kick, "a connection to drop")
    imap.deliver(mixed_batch(copies=1))
    wait_for(lambda: service.metrics().get("emaillog_source_reconnects_total", 0) >= 1,
             "the watcher to reconnect")  # fmt: skip
    outcomes = imap.finish(service)
    assert service.alive() is False  # finish() stopped it cleanly (exit 0)
    assert len(outcomes.by_item) == len(imap.delivered)


def test_uidvalidity_change_mid_run(imap: ImapScenario, server: Dovecot) -> None:
    service = imap.start()
    imap.deliver(mixed_batch())
    wait_for(lambda: imap.quiet(service), "the first batch to be processed")
    server.recreate(QUEUE)  # a new, empty queue folder: new UIDVALIDITY, UIDs from 1 again
    imap.deliver(mixed_batch())
    imap.finish(service)


def test_corpus_and_oddities_by_append(imap: ImapScenario) -> None:
    corpus = [item for item in corpus_letters() if item.name not in NOT_STORABLE]
    assert len(corpus) > 100
    delivered = imap.deliver(corpus)
    imap.deliver(hostile_batch())
    imap.deliver(mixed_batch())
    outcomes = imap.finish(imap.start())
    assert len(outcomes.of(delivered)) == len(corpus)
