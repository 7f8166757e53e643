"""The rules of GUIDE section 2: `decide(mail, directory, policy) -> Decision`.

Pure and total: no I/O, no clock, and no exception for any `Mail` whatsoever. The order:

    1  sensitive         Sensitivity is not Normal
       excluded          (beyond NAV) a party is on the never-log list
       draft             (beyond NAV) the message was never sent (X-Unsent / IsDraft)
    2  no_parties        no sender address, or no recipient address on the considered lines
    3  duplicate         already logged (the caller knows: `already_logged`, or `mark_duplicate`)
    4  logged outbound   sender is a salesperson: one entry per recipient that is a contact
    5  logged inbound    else sender is a contact: one entry per recipient that is a salesperson
    6  address_too_long  no pair, and a party's address is over 80 characters
    7  unregistered      no salesperson-contact pair

Decisions made here where NAV is silent (documented in the tests too):
- The never-log list is checked against *every visible party*: the sender, To and Cc, even
  when Cc is not considered for logging. It is a privacy list: a message that involves a
  never-log party is not logged at all, whichever line the party is on.
- A party without an address (an empty group, a bare display name such as `To: Carol
  Smith`, anything without a local part, an `@` and a domain) is no party at all.
- Salesperson before contact applies to the **sender** only. Recipients are asked only the
  other side's question, as NAV's `ContactRecipients` asks only `IsContact` and
  `SalespersonRecipients` only `IsSalesperson`: on an outbound message a recipient whose
  address is a salesperson's and also a contact's gets an entry for that contact.
- A salesperson sender with no contact recipient is not retried as a contact sender (NAV
  exits at that point).
- Entries are unique per (contact no., salesperson code), as the database requires: two
  addresses of one contact on the To line (its own and an alternative one) give one entry.
  NAV writes one per recipient line there, i.e. two; we do not double-count on purpose.

Privacy: `Decision.rule` goes to logs and the disposal log. It never contains an address or
the subject; for logged messages it names directory codes only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.config import RuleSettings
from pipeline.directory import ContactMatch, Directory
from pipeline.model import (
    MAX_ADDRESS_CHARS,
    MAX_DESCRIPTION_CHARS,
    Address,
    Decision,
    Direction,
    Entry,
    InitiatedBy,
    Mail,
    Outcome,
    Sensitivity,
    address_key,
    is_address,
)

#: Outcomes decided after rule 3 that a later "already logged" answer turns into `duplicate`.
DUPLICATE_ELIGIBLE: tuple[Outcome, ...] = (
    Outcome.LOGGED,
    Outcome.ADDRESS_TOO_LONG,
    Outcome.UNREGISTERED,
)

RULE_DUPLICATE = (
    "Rule 3 (duplicate): a message with the same Internet Message-ID (or, without one, "
    "the same content hash) is already logged"
)


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings that change decisions. Address and domain entries are lowercase."""

    include_cc: bool = False
    never_log_addresses: frozenset[str] = frozenset()
    never_log_domains: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: RuleSettings) -> Policy:
        return cls.build(include_cc=settings.include_cc, never_log=settings.never_log)

    @classmethod
    def build(cls, *, include_cc: bool = False, never_log: tuple[str, ...] = ()) -> Policy:
        """`never_log` entries: "example.com" or "@example.com" is a domain, "a@b.c" an address."""
        addresses: set[str] = set()
        domains: set[str] = set()
        for raw in never_log:
            entry = address_key(raw)
            if entry.startswith("@"):
                entry = entry[1:]
                if entry:
                    domains.add(entry)
            elif "@" in entry:
                addresses.add(entry)
            elif entry:
                domains.add(entry)
        return cls(include_cc, frozenset(addresses), frozenset(domains))

    def never_logs(self, key: str) -> bool:
        """True when `key` is on the list, or its domain is (subdomains included)."""
        if not key:
            return False
        if key in self.never_log_addresses:
            return True
        domain = key.rpartition("@")[2]
        while domain:
            if domain in self.never_log_domains:
                return True
            domain = domain.partition(".")[2]
        return False


def decide(
    mail: Mail, directory: Directory, policy: Policy, *, already_logged: bool = False
) -> Decision:
    """Apply the rules in order; see the module docstring."""
    if mail.sensitivity is not Sensitivity.NORMAL:
        return Decision(
            Outcome.SENSITIVE,
            f"Rule 1 (sensitive): Sensitivity is {mail.sensitivity.value}, not normal; "
            "the message is not logged and nothing of it is kept",
        )

    sender = _sender_key(mail)
    everyone = (sender, *(a.key for a in mail.to), *(a.key for a in mail.cc))
    if policy.never_log_addresses or policy.never_log_domains:
        listed = sum(1 for key in everyone if policy.never_logs(key))
        if listed:
            return Decision(
                Outcome.EXCLUDED,
                f"Excluded (never-log list): {_count(listed, 'party', 'parties')} of the "
                "message (sender, To or Cc) on the never-log list",
            )
    if mail.is_draft:
        return Decision(Outcome.DRAFT, "Draft: the message was never sent (X-Unsent: 1)")

    lines = "To and Cc lines" if policy.include_cc else "To line"
    recipients = _distinct_recipients(mail.to, mail.cc if policy.include_cc else ())
    if not sender:
        return Decision(Outcome.NO_PARTIES, "Rule 2 (no parties): the message has no sender")
    if not recipients:
        return Decision(
            Outcome.NO_PARTIES, f"Rule 2 (no parties): no recipient address on the {lines}"
        )

    if already_logged:
        return Decision(Outcome.DUPLICATE, RULE_DUPLICATE)

    salesperson = directory.salesperson_for(sender)
    if salesperson is not None:
        return _outbound(mail, directory, salesperson.code, recipients, lines)
    contact = directory.contact_for(sender)
    if contact is not None:
        return _inbound(mail, directory, contact, recipients, lines)
    return _no_pair(sender, recipients, "sender is neither a salesperson nor a contact")


def _outbound(
    mail: Mail, directory: Directory, salesperson: str, recipients: tuple[str, ...], lines: str
) -> Decision:
    """Rule 4: one entry per recipient that is a contact (NAV's ContactRecipients asks
    only IsContact: a recipient that is also a salesperson still counts as the contact)."""
    entries: list[Entry] = []
    seen_contacts: set[str] = set()
    for key in recipients:
        match = directory.contact_for(key)
        if match is None or match.contact_no in seen_contacts:
            continue
        seen_contacts.add(match.contact_no)
        entries.append(_entry(mail, match, salesperson, Direction.OUTBOUND))
    if entries:
        return Decision(
            Outcome.LOGGED,
            f"Rule 4 (outbound): sender is salesperson {salesperson}; "
            f"{_count(len(entries), 'contact')} on the {lines}: "
            + ", ".join(e.contact_no for e in entries),
            Direction.OUTBOUND,
            tuple(entries),
        )
    return _no_pair(
        _sender_key(mail),
        recipients,
        f"sender is salesperson {salesperson}, but no recipient on the {lines} is a contact",
    )


def _inbound(
    mail: Mail,
    directory: Directory,
    contact: ContactMatch,
    recipients: tuple[str, ...],
    lines: str,
) -> Decision:
    """Rule 5: one entry per recipient that is a salesperson."""
    entries: list[Entry] = []
    seen_salespersons: set[str] = set()
    for key in recipients:
        sp = directory.salesperson_for(key)
        if sp is None or sp.code in seen_salespersons:
            continue
        seen_salespersons.add(sp.code)
        entries.append(_entry(mail, contact, sp.code, Direction.INBOUND))
    via = f" (alt. address {contact.alt_address_code})" if contact.alt_address_code else ""
    if entries:
        return Decision(
            Outcome.LOGGED,
            f"Rule 5 (inbound): sender is contact {contact.contact_no}{via}; "
            f"{_count(len(entries), 'salesperson')} on the {lines}: "
            + ", ".join(e.salesperson_code for e in entries),
            Direction.INBOUND,
            tuple(entries),
        )
    return _no_pair(
        _sender_key(mail),
        recipients,
        f"sender is contact {contact.contact_no}{via}, but no recipient on the {lines} "
        "is a salesperson",
    )


def _sender_key(mail: Mail) -> str:
    return _party_key(mail.sender) if mail.sender is not None else ""


def _party_key(address: Address) -> str:
    """The address's key, or "" when it is no address at all (a bare display name)."""
    key = address.key
    return key if is_address(key) else ""


def _entry(mail: Mail, contact: ContactMatch, salesperson_code: str, flow: Direction) -> Entry:
    """One entry. NAV overwrites the template's flow: outbound is initiated by us and dated
    by the sent time, inbound by them and dated by the received time."""
    outbound = flow is Direction.OUTBOUND
    return Entry(
        contact_no=contact.contact_no,
        contact_company_no=contact.company_no,
        contact_alt_address_code=contact.alt_address_code,
        salesperson_code=salesperson_code,
        information_flow=flow,
        initiated_by=InitiatedBy.US if outbound else InitiatedBy.THEM,
        interaction_at=(
            (mail.sent_at or mail.received_at) if outbound else (mail.received_at or mail.sent_at)
        ),
        description=mail.subject[:MAX_DESCRIPTION_CHARS],
    )


def mark_duplicate(decision: Decision) -> Decision:
    """Rule 3 found late: the store says this message is already logged.

    Only outcomes decided after rule 3 can become `duplicate`; a sensitive, excluded,
    draft or no-parties decision stays as it is (those rules come first).
    """
    if decision.outcome not in DUPLICATE_ELIGIBLE:
        return decision
    return replace(
        decision, outcome=Outcome.DUPLICATE, rule=RULE_DUPLICATE, direction=None, entries=()
    )


def _no_pair(sender: str, recipients: tuple[str, ...], why: str) -> Decision:
    too_long = sum(1 for key in (sender, *recipients) if len(key) > MAX_ADDRESS_CHARS)
    if too_long:
        return Decision(
            Outcome.ADDRESS_TOO_LONG,
            f"Rule 6 (address too long): no salesperson-contact pair ({why}); "
            f"{_count(too_long, 'address', 'addresses')} longer than {MAX_ADDRESS_CHARS} "
            "characters, which can never match",
        )
    return Decision(
        Outcome.UNREGISTERED, f"Rule 7 (unregistered): no salesperson-contact pair ({why})"
    )


def _distinct_recipients(*lines: tuple[Address, ...]) -> tuple[str, ...]:
    """Recipient keys in order of appearance, each once; addressless entries dropped."""
    keys = (_party_key(a) for line in lines for a in line)
    return tuple(dict.fromkeys(k for k in keys if k))


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"
