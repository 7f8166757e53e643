"""Every rule of GUIDE section 2, and every matching detail, one small case each."""

from __future__ import annotations

import pytest

from pipeline.model import Decision, Direction, InitiatedBy, Outcome, Sensitivity
from pipeline.rules import DUPLICATE_ELIGIBLE, Policy, decide, mark_duplicate
from tests.core.builders import RECEIVED, SENT, directory, mail

NAV = Policy()  # To line only, nothing excluded
BC = Policy(include_cc=True)
LONG = "x" * 70 + "@them.example"  # 83 characters


def run(m=None, policy: Policy = NAV, **kw) -> Decision:  # type: ignore[no-untyped-def]
    return decide(m if m is not None else mail(), directory(), policy, **kw)


def pairs(d: Decision) -> list[tuple[str, str]]:
    return [(e.contact_no, e.salesperson_code) for e in d.entries]


# --- rule 1: sensitivity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sensitivity", [Sensitivity.PERSONAL, Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL]
)
def test_rule1_sensitive_message_is_never_logged(sensitivity: Sensitivity) -> None:
    d = run(mail(sensitivity=sensitivity))
    assert d.outcome is Outcome.SENSITIVE
    assert d.entries == ()
    assert "Rule 1" in d.rule


def test_rule1_comes_before_everything_else() -> None:
    m = mail(sensitivity=Sensitivity.PRIVATE, is_draft=True, sender=None)
    assert run(m, Policy.build(never_log=("us.example",)), already_logged=True).outcome is (
        Outcome.SENSITIVE
    )


# --- beyond NAV: never-log list and drafts (checked right after rule 1) --------------------


def test_excluded_when_sender_address_is_on_the_never_log_list() -> None:
    d = run(policy=Policy.build(never_log=("SAM@us.example",)))
    assert d.outcome is Outcome.EXCLUDED


def test_excluded_when_a_recipient_domain_is_on_the_never_log_list() -> None:
    d = run(policy=Policy.build(never_log=("@them.example",)))
    assert d.outcome is Outcome.EXCLUDED


def test_excluded_covers_subdomains_of_a_listed_domain() -> None:
    d = run(
        mail(to=("ann@them.example", "x@legal.lawyer.example")),
        Policy.build(never_log=("lawyer.example",)),
    )
    assert d.outcome is Outcome.EXCLUDED


def test_excluded_checks_cc_even_when_only_to_is_considered() -> None:
    # A privacy list: a never-log party on any visible line keeps the whole message out.
    d = run(mail(cc=("counsel@lawyer.example",)), Policy.build(never_log=("lawyer.example",)))
    assert d.outcome is Outcome.EXCLUDED


def test_never_log_entries_are_domains_or_addresses() -> None:
    policy = Policy.build(never_log=("Example.com", "@b.example", "Boss@c.example", " ", "@"))
    assert policy.never_log_domains == {"example.com", "b.example"}
    assert policy.never_log_addresses == {"boss@c.example"}
    assert policy.never_logs("anyone@example.com")
    assert not policy.never_logs("someone@c.example")
    assert not policy.never_logs("anyone@notexample.com")


def test_policy_from_settings() -> None:
    from pipeline.config import Settings

    s = Settings.from_env({"EMAILLOG_INCLUDE_CC": "true", "EMAILLOG_NEVER_LOG": "a.example,b@c"})
    expected = Policy(True, frozenset({"b@c"}), frozenset({"a.example"}))
    assert Policy.from_settings(s.rules) == expected


def test_draft_is_not_logged() -> None:
    assert run(mail(is_draft=True)).outcome is Outcome.DRAFT


def test_excluded_is_checked_before_draft() -> None:
    d = run(mail(is_draft=True), Policy.build(never_log=("them.example",)))
    assert d.outcome is Outcome.EXCLUDED


# --- rule 2: parties ---------------------------------------------------------------------


def test_rule2_no_sender() -> None:
    assert run(mail(sender=None)).outcome is Outcome.NO_PARTIES


def test_rule2_sender_without_address() -> None:
    assert run(mail(sender="  ")).outcome is Outcome.NO_PARTIES


def test_rule2_no_recipients() -> None:
    assert run(mail(to=())).outcome is Outcome.NO_PARTIES


def test_rule2_recipients_only_on_cc_when_to_only_is_considered() -> None:
    assert run(mail(to=(), cc=("ann@them.example",))).outcome is Outcome.NO_PARTIES


def test_rule2_recipients_without_addresses_are_not_parties() -> None:
    # e.g. "undisclosed-recipients:;" or a bare display name
    assert run(mail(to=("",))).outcome is Outcome.NO_PARTIES


# --- rule 3: duplicate ---------------------------------------------------------------------


def test_rule3_already_logged_is_duplicate() -> None:
    d = run(already_logged=True)
    assert d.outcome is Outcome.DUPLICATE
    assert d.entries == ()


def test_rule3_comes_after_rule2() -> None:
    assert run(mail(to=()), already_logged=True).outcome is Outcome.NO_PARTIES


def test_rule3_duplicate_even_if_it_would_be_unregistered() -> None:
    assert run(mail(sender="nobody@x.example"), already_logged=True).outcome is Outcome.DUPLICATE


def test_mark_duplicate_turns_eligible_outcomes_into_duplicate() -> None:
    for m in (mail(), mail(sender="nobody@x.example"), mail(sender=LONG)):
        d = run(m)
        assert d.outcome in DUPLICATE_ELIGIBLE
        marked = mark_duplicate(d)
        assert marked.outcome is Outcome.DUPLICATE
        assert marked.entries == () and marked.direction is None
        assert marked == run(m, already_logged=True)


def test_mark_duplicate_leaves_earlier_rules_alone() -> None:
    for m in (mail(sensitivity=Sensitivity.PRIVATE), mail(is_draft=True), mail(to=())):
        d = run(m)
        assert mark_duplicate(d) is d


def test_duplicate_eligible_outcomes_are_those_after_rule3() -> None:
    assert set(DUPLICATE_ELIGIBLE) == {
        Outcome.LOGGED,
        Outcome.ADDRESS_TOO_LONG,
        Outcome.UNREGISTERED,
    }


# --- rule 4: outbound ----------------------------------------------------------------------


def test_rule4_salesperson_sender_logs_outbound_entry_per_contact_recipient() -> None:
    d = run(mail(to=("ann@them.example", "bob@them.example")))
    assert d.outcome is Outcome.LOGGED
    assert d.direction is Direction.OUTBOUND
    assert pairs(d) == [("C001", "SP1"), ("C002", "SP1")]
    entry = d.entries[0]
    assert entry.information_flow is Direction.OUTBOUND
    assert entry.initiated_by is InitiatedBy.US
    assert entry.contact_company_no == "C000"
    assert entry.contact_alt_address_code == ""
    assert entry.interaction_at == SENT  # outbound: sent time
    assert entry.description == "Quote 42"
    assert "Rule 4" in d.rule


def test_rule4_ignores_unknown_and_salesperson_recipients() -> None:
    d = run(mail(to=("stranger@x.example", "sue@us.example", "ann@them.example")))
    assert pairs(d) == [("C001", "SP1")]


def test_rule4_salesperson_sender_without_contact_recipients_is_not_retried_as_contact() -> None:
    # NAV exits after the salesperson branch; "both@" is also contact CX but that never counts.
    d = run(mail(sender="both@example.org", to=("sue@us.example",)))
    assert d.outcome is Outcome.UNREGISTERED


def test_rule4_outbound_falls_back_to_received_time_without_sent_time() -> None:
    assert run(mail(sent_at=None)).entries[0].interaction_at == RECEIVED


# --- rule 5: inbound -----------------------------------------------------------------------


def test_rule5_contact_sender_logs_inbound_entry_per_salesperson_recipient() -> None:
    d = run(
        mail(sender="ann@them.example", to=("sam@us.example", "sue@us.example", "bob@them.example"))
    )
    assert d.outcome is Outcome.LOGGED
    assert d.direction is Direction.INBOUND
    assert pairs(d) == [("C001", "SP1"), ("C001", "SP2")]
    entry = d.entries[0]
    assert entry.information_flow is Direction.INBOUND
    assert entry.initiated_by is InitiatedBy.THEM
    assert entry.interaction_at == RECEIVED  # inbound: received time
    assert "Rule 5" in d.rule


def test_rule5_inbound_falls_back_to_sent_time_without_received_time() -> None:
    d = run(mail(sender="ann@them.example", to=("sam@us.example",), received_at=None))
    assert d.entries[0].interaction_at == SENT


def test_rule5_contact_sender_without_salesperson_recipients_is_unregistered() -> None:
    d = run(mail(sender="ann@them.example", to=("bob@them.example",)))
    assert d.outcome is Outcome.UNREGISTERED


# --- rules 6 and 7 -------------------------------------------------------------------------


def test_rule6_sender_address_over_80_characters() -> None:
    d = run(mail(sender=LONG, to=("sam@us.example",)))
    assert d.outcome is Outcome.ADDRESS_TOO_LONG
    assert "Rule 6" in d.rule


def test_rule6_recipient_address_over_80_characters() -> None:
    assert run(mail(to=(LONG,))).outcome is Outcome.ADDRESS_TOO_LONG


def test_rule6_only_when_no_pair_is_found() -> None:
    assert run(mail(to=(LONG, "ann@them.example"))).outcome is Outcome.LOGGED


def test_rule6_ignores_long_addresses_on_lines_not_considered() -> None:
    assert run(mail(to=("stranger@x.example",), cc=(LONG,))).outcome is Outcome.UNREGISTERED


def test_rule7_unregistered_when_sender_is_neither() -> None:
    d = run(mail(sender="stranger@x.example"))
    assert d.outcome is Outcome.UNREGISTERED
    assert "Rule 7" in d.rule


# --- matching details ----------------------------------------------------------------------


def test_match_is_case_insensitive_on_the_bare_address() -> None:
    d = run(mail(sender=" SAM@US.EXAMPLE ", to=("Ann@Them.Example",)))
    assert pairs(d) == [("C001", "SP1")]


def test_directory_address_case_does_not_matter_either() -> None:
    assert pairs(run(mail(sender="sue@us.example"))) == [("C001", "SP2")]  # stored "Sue@Us.Example"


def test_empty_address_never_matches() -> None:
    from pipeline.directory import Directory, Salesperson

    assert Directory.build([Salesperson("SP0", "Nobody", "")]).salesperson_for("") is None


def test_address_over_80_characters_never_matches_even_if_in_directory() -> None:
    from pipeline.directory import Contact, Directory

    d = Directory.build(contacts=[Contact("C1", "Long", "person", "", LONG)])
    assert d.contact_for(LONG) is None


def test_address_of_exactly_80_characters_matches() -> None:
    from pipeline.directory import Contact, Directory

    address = "y" * 67 + "@them.example"
    assert len(address) == 80
    d = Directory.build(contacts=[Contact("C1", "Edge", "person", "", address)])
    assert d.contact_for(address) is not None


def test_salesperson_is_checked_before_contact_for_the_sender() -> None:
    d = run(mail(sender="both@example.org", to=("ann@them.example",)))
    assert d.direction is Direction.OUTBOUND
    assert pairs(d) == [("C001", "SPX")]


def test_recipient_that_is_both_is_asked_only_the_other_sides_question() -> None:
    """Changed by issue 16 (it pinned salesperson-before-contact on recipients too, so the
    outbound case was `unregistered`). NAV codeunit 5064 `GetInboundOutboundInteraction`:
    outbound calls `ContactRecipients`, which asks only `IsContact` of each recipient;
    inbound calls `SalespersonRecipients`, which asks only `IsSalesperson`."""
    inbound = run(mail(sender="ann@them.example", to=("both@example.org",)))
    assert pairs(inbound) == [("C001", "SPX")]
    outbound = run(mail(sender="sam@us.example", to=("both@example.org",)))
    assert outbound.outcome is Outcome.LOGGED
    assert outbound.direction is Direction.OUTBOUND
    assert pairs(outbound) == [("CX", "SP1")]


def test_contact_alternative_address_matches_and_records_its_code() -> None:
    d = run(mail(to=("ann@home.example",)))
    assert [
        (e.contact_no, e.contact_company_no, e.contact_alt_address_code) for e in d.entries
    ] == [("C001", "C000", "HOME")]


def test_contact_own_address_wins_over_another_contacts_alt_address() -> None:
    d = run(mail(to=("carl@them.example",)))
    assert [(e.contact_no, e.contact_alt_address_code) for e in d.entries] == [("C003", "")]


def test_several_contacts_sharing_an_address_lowest_contact_no_wins() -> None:
    # Text order, like NAV's Code key: "C10" sorts before "C9".
    assert pairs(run(mail(to=("shared@them.example",)))) == [("C10", "SP1")]


def test_several_salespersons_sharing_an_address_lowest_code_wins() -> None:
    assert pairs(run(mail(sender="team@us.example"))) == [("C001", "SP10")]


def test_recipient_listed_twice_counts_once() -> None:
    d = run(mail(to=("ann@them.example", "ANN@them.example"), cc=("ann@them.example",)), BC)
    assert pairs(d) == [("C001", "SP1")]


def test_two_addresses_of_one_contact_give_one_entry() -> None:
    # The database allows one entry per (message, contact, salesperson).
    assert pairs(run(mail(to=("ann@them.example", "ann@home.example")))) == [("C001", "SP1")]


def test_fan_out_is_across_different_recipient_addresses() -> None:
    d = run(mail(to=("ann@them.example", "bob@them.example", "info@them.example")))
    assert pairs(d) == [("C001", "SP1"), ("C002", "SP1"), ("C000", "SP1")]


def test_recipients_are_the_to_line_by_default() -> None:
    d = run(mail(to=("stranger@x.example",), cc=("ann@them.example",)))
    assert d.outcome is Outcome.UNREGISTERED


def test_recipients_are_to_and_cc_with_the_setting() -> None:
    d = run(mail(to=("stranger@x.example",), cc=("ann@them.example",)), BC)
    assert pairs(d) == [("C001", "SP1")]


def test_description_is_the_first_100_characters_of_the_subject() -> None:
    d = run(mail(subject="s" * 150))
    assert d.entries[0].description == "s" * 100


def test_company_contact_without_company_no_is_its_own_company() -> None:
    d = run(mail(to=("info@them.example",)))
    assert d.entries[0].contact_company_no == "C000"


# --- privacy of the rule text ----------------------------------------------------------------


@pytest.mark.parametrize(
    "m, policy",
    [
        (mail(sensitivity=Sensitivity.PERSONAL, subject="Secret"), NAV),
        (mail(subject="Secret"), Policy.build(never_log=("sam@us.example",))),
        (mail(is_draft=True, subject="Secret"), NAV),
        (mail(to=(), subject="Secret"), NAV),
        (mail(sender="stranger@x.example", subject="Secret"), NAV),
        (mail(to=(LONG,), subject="Secret"), NAV),
        (mail(sender="ann@them.example", to=("bob@them.example",), subject="Secret"), NAV),
    ],
)
def test_rule_text_of_non_logged_outcomes_has_no_address_or_subject(m, policy) -> None:  # type: ignore[no-untyped-def]
    d = run(m, policy)
    assert d.outcome is not Outcome.LOGGED
    assert "@" not in d.rule
    assert "Secret" not in d.rule
