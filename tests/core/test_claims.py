"""The claim plan (rule 3, resume, keep an earlier decision) as a pure function: no database.

The same cases run against PostgreSQL in tests/service/test_journal.py; here each branch of
`claims.plan` is pinned down on its own."""

from __future__ import annotations

from pipeline.claims import Action, Claim, Recorded, duplicate_keys, lost_race, plan
from pipeline.model import (
    Candidate,
    Decision,
    Direction,
    Entry,
    Existing,
    InitiatedBy,
    Mail,
    Outcome,
)
from pipeline.rules import RULE_DUPLICATE

ENTRY = Entry("C1", "CO1", "", "SP1", Direction.OUTBOUND, InitiatedBy.US, None, "Quote")
LOGGED = Decision(Outcome.LOGGED, "Rule 4", Direction.OUTBOUND, (ENTRY,))
UNREGISTERED = Decision(Outcome.UNREGISTERED, "Rule 7")
SENSITIVE = Decision(Outcome.SENSITIVE, "Rule 1")


def cand(item: str, decision: Decision, message_id: str | None = "<a@x>") -> Candidate:
    return Candidate(item, Mail(message_id, "c" * 64), decision)


def test_a_new_logged_message_is_claimed() -> None:
    [step] = plan([cand("Q1", LOGGED)], {}, {})
    assert (step.action, step.decision) == (Action.CLAIM, LOGGED)


def test_outcomes_before_rule_3_are_recorded_even_for_a_logged_message_id() -> None:
    held = {"<a@x>": Existing(7, "stored", "Q0")}
    [step] = plan([cand("Q1", SENSITIVE)], {}, held)
    assert (step.action, step.decision) == (Action.RECORD, SENSITIVE)


def test_an_earlier_non_logged_decision_of_the_same_item_stands() -> None:
    [step] = plan([cand("Q1", LOGGED)], {"Q1": UNREGISTERED}, {})
    assert (step.action, step.decision) == (Action.KEEP, UNREGISTERED)


def test_an_earlier_logged_row_does_not_short_cut_rule_3() -> None:
    held = {"<a@x>": Existing(7, "stored", "Q1")}
    [step] = plan([cand("Q1", LOGGED)], {"Q1": LOGGED}, held)
    assert step.action is Action.RECORD and step.decision.outcome is Outcome.DUPLICATE


def test_a_stored_copy_or_another_items_claim_makes_a_duplicate() -> None:
    held = {"<a@x>": Existing(7, "stored", "Q0"), "<b@x>": Existing(8, "moving", "Q9")}
    steps = plan([cand("Q1", UNREGISTERED), cand("Q2", LOGGED, "<b@x>")], {}, held)
    assert [s.action for s in steps] == [Action.RECORD, Action.RECORD]
    assert [s.decision.rule for s in steps] == [RULE_DUPLICATE, RULE_DUPLICATE]
    assert all(s.decision.entries == () for s in steps)


def test_our_own_moving_claim_is_resumed() -> None:
    held = {"<a@x>": Existing(7, "moving", "Q1")}
    [step] = plan([cand("Q1", LOGGED)], {}, held)
    assert (step.action, step.stored_message_id) == (Action.RESUME, 7)
    assert step.decision.outcome is Outcome.LOGGED


def test_the_second_copy_in_one_batch_is_a_duplicate() -> None:
    first, second = plan([cand("Q1", LOGGED), cand("Q2", LOGGED)], {}, {})
    assert first.action is Action.CLAIM
    assert second.action is Action.RECORD and second.decision.outcome is Outcome.DUPLICATE


def test_messages_without_message_id_are_keyed_by_content_hash() -> None:
    first, second = plan([cand("Q1", LOGGED, None), cand("Q2", LOGGED, None)], {}, {})
    assert first.action is Action.CLAIM and second.decision.outcome is Outcome.DUPLICATE
    assert duplicate_keys([cand("Q1", LOGGED, None)]) == ["sha256:" + "c" * 64]


def test_unregistered_without_a_claim_is_recorded_as_it_is() -> None:
    [step] = plan([cand("Q1", UNREGISTERED)], {}, {})
    assert (step.action, step.decision) == (Action.RECORD, UNREGISTERED)


def test_a_claim_lost_to_a_concurrent_transaction_is_a_duplicate() -> None:
    [step] = plan([cand("Q1", LOGGED)], {}, {})
    lost = lost_race(step)
    assert lost.action is Action.RECORD and lost.decision.outcome is Outcome.DUPLICATE


def test_only_rule_3_candidates_need_the_journal() -> None:
    cands = [
        cand("Q1", SENSITIVE, "<s@x>"),
        cand("Q2", LOGGED, "<l@x>"),
        cand("Q3", UNREGISTERED, "<u@x>"),
    ]
    assert duplicate_keys(cands) == ["<l@x>", "<u@x>"]


def test_a_claimed_verdict_goes_to_storage() -> None:
    assert Recorded(LOGGED, Claim.NEW, 1).to_storage
    assert Recorded(LOGGED, Claim.RESUMED, 1).to_storage
    assert not Recorded(UNREGISTERED).to_storage
