"""The demo's data and view, without running anything: fast checks of what the demo promises."""

from __future__ import annotations

import io

from pipeline.cli.demo.checks import sample_outcomes
from pipeline.cli.demo.data import (
    ALT_ADDRESSES,
    CONTACTS,
    NEVER_LOG,
    SALESPERSONS,
    SAMPLES,
    TEMPLATES,
    expected_counts,
)
from pipeline.cli.demo.view import OUTCOMES, LiveView, Snapshot, render_block, render_line
from pipeline.directory import Directory
from pipeline.mailparse import parse_mime
from pipeline.model import Outcome, message_id_hash
from pipeline.rules import Policy, decide


def test_every_sample_gets_its_declared_outcome_from_the_rules() -> None:
    # The declared outcomes are what the demo checks the service against, so they must be
    # what the product's own rules say (rule 3 needs the journal: the order stands for it).
    directory = Directory.build(SALESPERSONS, CONTACTS, ALT_ADDRESSES, TEMPLATES)
    policy = Policy.build(never_log=NEVER_LOG)
    logged: set[str] = set()
    for sample in SAMPLES:
        mail = parse_mime(sample.raw)
        decision = decide(mail, directory, policy, already_logged=mail.dedupe_key in logged)
        assert (decision.outcome, len(decision.entries)) == (sample.expect, sample.entries), (
            sample.label
        )
        if decision.is_logged:
            logged.add(mail.dedupe_key)


def test_samples_cover_every_outcome_in_both_phases_and_an_alternative_address() -> None:
    assert {s.expect for s in SAMPLES} == set(Outcome) - {Outcome.FAILED}
    assert any(s.streaming for s in SAMPLES) and any(not s.streaming for s in SAMPLES)
    assert any(s.draft for s in SAMPLES)
    assert any(s.entries > 1 for s in SAMPLES)
    directory = Directory.build(SALESPERSONS, CONTACTS, ALT_ADDRESSES, TEMPLATES)
    policy = Policy.build(never_log=NEVER_LOG)
    alt_codes = {
        e.contact_alt_address_code
        for s in SAMPLES
        for e in decide(parse_mime(s.raw), directory, policy).entries
    }
    assert {a.code for a in ALT_ADDRESSES} <= alt_codes
    assert {c.type for c in CONTACTS} == {"person", "company"}


def test_expected_counts_have_every_outcome_and_add_up() -> None:
    counts = expected_counts()
    assert tuple(counts) == OUTCOMES
    assert sum(counts.values()) == len(SAMPLES)
    assert counts["failed"] == 0


def test_sample_outcomes_match_copies_of_one_message_by_their_expected_outcomes() -> None:
    # disposal_log order: the later copy of the quote first, then everything as expected.
    rows = [
        {"message_id_hash": message_id_hash(parse_mime(s.raw)), "outcome": s.expect.value}
        for s in reversed(SAMPLES)
    ]
    assert [(s, got) for s, got in sample_outcomes(rows)] == [(s, s.expect.value) for s in SAMPLES]
    missing = sample_outcomes(rows[1:])  # the first sample recorded is SAMPLES[-1]
    assert missing[-1] == (SAMPLES[-1], None)


def _snapshot(logged: int) -> Snapshot:
    counts = dict.fromkeys(OUTCOMES, 0) | {"logged": logged}
    return Snapshot(counts, expected_counts(), delivered=5, total=len(SAMPLES), in_queue=2)


def test_render_block_has_a_row_per_outcome_and_a_status_line() -> None:
    lines = render_block(_snapshot(logged=2))
    assert len(lines) == 1 + len(OUTCOMES) + 1
    assert lines[1].split()[:3] == ["logged", "2", str(expected_counts()["logged"])]
    assert f"delivered 5/{len(SAMPLES)}" in lines[-1]


def test_render_line_lists_only_outcomes_seen() -> None:
    line = render_line(_snapshot(logged=2))
    assert line.startswith("progress: ")
    assert "logged 2" in line and "sensitive" not in line


def test_live_view_prints_plain_lines_only_on_change_when_not_a_terminal() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False)
    for logged in (0, 0, 1, 1, 2):
        view.show(_snapshot(logged))
    assert len(out.getvalue().splitlines()) == 3
    assert "\x1b" not in out.getvalue()


def test_live_view_redraws_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=True)
    view.show(_snapshot(0))
    view.show(_snapshot(1))
    block = len(render_block(_snapshot(0)))
    assert out.getvalue().count(f"\x1b[{block}F") == 1
