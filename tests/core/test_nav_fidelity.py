"""Issue 16: the deviations from NAV an audit found, each written from NAV's behaviour.

NAV's procedures are those of codeunit 5064 "Email Logging Dispatcher" (EWS-AL1/AL2 in
../shared/research/nav-bc-email-logging.md, section 4): `IsMessageToLog`,
`GetInboundOutboundInteraction`, `ContactRecipients`, `SalespersonRecipients`,
`IsSalesperson`, `IsContact`, and `CheckSetup` for the interaction template.
"""

from __future__ import annotations

from decimal import Decimal

from pipeline.directory import Contact, Directory, Salesperson, Template
from pipeline.mailparse import parse_mime
from pipeline.model import Address, Direction, InitiatedBy, Mail, Outcome, is_address
from pipeline.rules import Policy, decide
from pipeline.setup_check import setup_problems
from tests.core.builders import directory, mail

NAV = Policy()
BC = Policy(include_cc=True)


def pairs(m: Mail, policy: Policy = NAV, d: Directory | None = None) -> list[tuple[str, str]]:
    decision = decide(m, d or directory(), policy)
    return [(e.contact_no, e.salesperson_code) for e in decision.entries]


# --- 1. recipients are asked only the other side's question -----------------------------------


def test_outbound_recipient_that_is_also_a_salesperson_is_logged_for_its_contact() -> None:
    """NAV `GetInboundOutboundInteraction`: the sender is a salesperson, so it calls
    `ContactRecipients`, which asks only `IsContact` for each recipient. "both@" is
    salesperson SPX and contact CX: sam (SP1) writing to it logs an entry for CX."""
    d = decide(mail(sender="sam@us.example", to=("both@example.org",)), directory(), NAV)
    assert d.outcome is Outcome.LOGGED and d.direction is Direction.OUTBOUND
    [entry] = d.entries
    assert (entry.contact_no, entry.salesperson_code) == ("CX", "SP1")
    assert entry.initiated_by is InitiatedBy.US
    assert "Rule 4" in d.rule and "CX" in d.rule


def test_outbound_fan_out_counts_every_contact_recipient_whatever_else_it_is() -> None:
    """NAV `ContactRecipients` loops over all recipients: one segment line per recipient
    that `IsContact`; a recipient that is only a salesperson (sue@) is skipped."""
    m = mail(to=("sue@us.example", "both@example.org", "ann@them.example"))
    assert pairs(m) == [("CX", "SP1"), ("C001", "SP1")]


def test_inbound_recipient_that_is_also_a_contact_is_logged_for_its_salesperson() -> None:
    """NAV `SalespersonRecipients` asks only `IsSalesperson` of each recipient."""
    assert pairs(mail(sender="ann@them.example", to=("both@example.org",))) == [("C001", "SPX")]


def test_sender_is_still_a_salesperson_before_a_contact() -> None:
    """NAV `GetInboundOutboundInteraction` asks `IsSalesperson(Sender)` first: a sender that
    is both is outbound. The order applies to the sender only."""
    d = decide(mail(sender="both@example.org", to=("ann@them.example",)), directory(), NAV)
    assert d.direction is Direction.OUTBOUND
    assert [(e.contact_no, e.salesperson_code) for e in d.entries] == [("C001", "SPX")]


def test_a_salesperson_writing_to_their_own_contact_self_is_logged() -> None:
    """Sender both@ is salesperson SPX (checked first); recipient both@ `IsContact` CX."""
    assert pairs(mail(sender="both@example.org", to=("both@example.org",))) == [("CX", "SPX")]


# --- 4. a recipient without an address is no recipient ----------------------------------------


def test_display_name_only_recipient_is_no_recipient() -> None:
    """NAV `IsMessageToLog`: `RecipientsCount = 0` means not logged. `To: Carol Smith` names
    nobody with an address, so the message has no recipient (rule 2, `no_parties`)."""
    m = parse_mime(b"From: sam@us.example\r\nTo: Carol Smith\r\nSubject: x\r\n\r\n")
    assert [(a.email, a.name) for a in m.to] == [("", "Carol Smith")]
    d = decide(m, directory(), NAV)
    assert d.outcome is Outcome.NO_PARTIES
    assert "no recipient address" in d.rule


def test_display_name_only_recipients_beside_a_contact_are_ignored() -> None:
    """Only addresses are recipients; the contact on the same line still gets its entry."""
    raw = b"From: sam@us.example\r\nTo: Carol Smith, Ann <ann@them.example>, Bob\r\n\r\n"
    assert pairs(parse_mime(raw)) == [("C001", "SP1")]


def test_display_name_only_sender_is_no_sender() -> None:
    """NAV `IsMessageToLog`: `Sender.IsEmpty` means not logged (rule 2)."""
    d = decide(parse_mime(b"From: Sam Sales\r\nTo: ann@them.example\r\n\r\n"), directory(), NAV)
    assert d.outcome is Outcome.NO_PARTIES
    assert "no sender" in d.rule


def test_quoted_or_bracketed_names_and_empty_brackets_are_no_addresses() -> None:
    for header in ('"Carol Smith"', "Carol Smith <>", "<carol>", "carol"):
        m = parse_mime(f"From: sam@us.example\r\nTo: {header}\r\n\r\n".encode())
        assert decide(m, directory(), NAV).outcome is Outcome.NO_PARTIES, header


def test_the_rules_refuse_a_name_in_the_address_field_from_any_source() -> None:
    """A source that puts a name where the address goes (an EWS Mailbox without
    EmailAddress) is held to the same rule: no '@', no party."""
    m = Mail(
        message_id="<x@y>",
        content_hash="0" * 64,
        sender=Address("sam@us.example"),
        to=(Address("Carol Smith"),),
    )
    assert decide(m, directory(), NAV).outcome is Outcome.NO_PARTIES
    assert not is_address("carol smith") and not is_address("@x.example")
    assert not is_address("carol@") and is_address("carol@x.example")


# --- 6. one entry per contact: a documented deviation -----------------------------------------


def test_own_and_alternative_address_of_one_contact_give_one_entry() -> None:
    """NAV `ContactRecipients` writes one segment line per recipient that `IsContact`, so
    ann@them.example (C001's own) and ann@home.example (C001's alt. address HOME) would give
    C001 two entries. We keep one entry per contact (README, rule notes): the first
    recipient's match, here the own address (no alt. address code)."""
    d = decide(mail(to=("ann@them.example", "ann@home.example")), directory(), NAV)
    assert [(e.contact_no, e.contact_alt_address_code) for e in d.entries] == [("C001", "")]
    d = decide(mail(to=("ann@home.example", "ann@them.example")), directory(), NAV)
    assert [(e.contact_no, e.contact_alt_address_code) for e in d.entries] == [("C001", "HOME")]


def test_one_entry_per_contact_across_to_and_cc() -> None:
    assert pairs(mail(to=("ann@them.example",), cc=("ann@home.example",)), BC) == [("C001", "SP1")]


# --- 2. the e-mail template must exist ----------------------------------------------------------


def test_missing_email_template_is_a_setup_problem() -> None:
    """NAV `CheckSetup` fails the run when Interaction Template Setup "E-Mails" names no
    Interaction Template; here it is a setup problem that keeps the service from taking mail."""
    bare = Directory.build([Salesperson("SP1", "", "sam@us.example")])
    [problem] = setup_problems(bare, "EMAIL")
    assert "EMAILLOG_EMAIL_TEMPLATE_CODE='EMAIL'" in problem
    assert "directory import --templates" in problem
    with_template = Directory.build(templates=[Template("EMAIL", "", "", Decimal(1), Decimal(2))])
    assert setup_problems(with_template, "EMAIL") == []
    assert setup_problems(with_template, "MAIL") != []


def test_retired_people_are_not_in_the_index() -> None:
    """Retirement is the store's business (it loads active people only); a contact left out
    of the index never matches, and the next contact on a shared address takes its place,
    as NAV's `IsContact` FindFirst would once the first one is deleted."""
    active = [Contact("C9", "", "person", "", "shared@them.example")]
    d = Directory.build([Salesperson("SP1", "", "sam@us.example")], active)
    assert pairs(mail(to=("shared@them.example",)), d=d) == [("C9", "SP1")]
