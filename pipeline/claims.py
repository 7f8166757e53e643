"""Rule 3 and the exactly-once claim, decided as a pure plan (GUIDE section 4).

The rules (`rules.decide`) say what a message is; this module says what the journal must do
about it, given what the journal already holds. Nothing here touches the database: the
dedupe stage reads the facts (`Earlier` decisions, `Existing` claims), asks `plan()`, runs
the plan's SQL and settles lost races with `lost_race()`. For each candidate, in this order:

1. **Keep an earlier decision.** A queue item that already has a (non-failed) disposal_log
   row other than 'logged' was decided before a crash or restart; that committed decision
   stands, so what is deleted always matches the log. Nothing is written again.
2. **Record** every outcome that rule 3 cannot change (sensitive, excluded, draft,
   no_parties).
3. **Duplicate** (rule 3): the message's key (Message-ID, or content hash) is held by a
   'stored' row, by a 'moving' row of ANOTHER queue item, or by a message claimed earlier in
   this same batch.
4. **Resume** our own claim: a 'moving' row of the SAME queue item was claimed before a
   crash; move it and mark it stored, never insert it again.
5. **Claim** a logged message: insert its stored_message row and entries. The unique key is
   the final guard: a claim that loses to a concurrent transaction becomes a duplicate
   (`lost_race`).
6. **Record** the rest (address_too_long, unregistered).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.model import Candidate, Decision, Existing, Outcome
from pipeline.rules import DUPLICATE_ELIGIBLE, mark_duplicate

RULE_RESUMED = "resumed: claimed before a restart"


class Claim(enum.Enum):
    """What the journal does about the stored_message row of one message."""

    NONE = "none"  # not logged: no row; the decision goes to disposal_log
    NEW = "new"  # row and entries inserted now
    RESUMED = "resumed"  # our own 'moving' row from before a crash: move it, insert nothing


class Action(enum.Enum):
    """One step of the plan."""

    KEEP = "keep"  # an earlier committed decision stands: write nothing
    RECORD = "record"  # write the decision to disposal_log (the message will be disposed of)
    CLAIM = "claim"  # insert the stored_message row and entries
    RESUME = "resume"  # our own claim from before a crash: move it


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one candidate, and the decision that results."""

    action: Action
    decision: Decision
    stored_message_id: int | None = None  # for RESUME


@dataclass(frozen=True, slots=True)
class Recorded:
    """The committed verdict for one candidate, in input order."""

    decision: Decision
    claim: Claim = Claim.NONE
    stored_message_id: int | None = None
    #: Entries inserted by this transaction (0 for a resumed claim).
    entries_written: int = 0
    #: True when this transaction wrote the disposal_log row (non-logged outcomes only).
    newly_recorded: bool = False

    @property
    def to_storage(self) -> bool:
        """Claimed (now or before a crash): the message goes to the storage folder."""
        return self.claim is not Claim.NONE


def plan(
    candidates: Sequence[Candidate],
    earlier: Mapping[str, Decision],
    existing: Mapping[str, Existing],
) -> list[Step]:
    """One step per candidate, in order. `earlier` maps queue item ids to their committed
    non-failed decisions; `existing` maps message keys to the rows that hold them."""
    steps: list[Step] = []
    claimed_keys: set[str] = set()
    for cand in candidates:
        decision = cand.decision
        prior = earlier.get(cand.queue_item_id)
        if prior is not None and prior.outcome is not Outcome.LOGGED:
            steps.append(Step(Action.KEEP, prior))
            continue
        if decision.outcome not in DUPLICATE_ELIGIBLE:
            steps.append(Step(Action.RECORD, decision))
            continue
        key = cand.mail.dedupe_key
        row = existing.get(key)
        if row is not None:
            if row.state == "moving" and row.queue_item_id == cand.queue_item_id:
                resumed = Decision(Outcome.LOGGED, RULE_RESUMED)
                steps.append(Step(Action.RESUME, resumed, row.stored_message_id))
            else:
                steps.append(Step(Action.RECORD, mark_duplicate(decision)))
        elif key in claimed_keys:
            steps.append(Step(Action.RECORD, mark_duplicate(decision)))
        elif decision.outcome is Outcome.LOGGED:
            claimed_keys.add(key)
            steps.append(Step(Action.CLAIM, decision))
        else:
            steps.append(Step(Action.RECORD, decision))
    return steps


def lost_race(step: Step) -> Step:
    """A claim whose key a concurrent transaction took first: the message is a duplicate."""
    return Step(Action.RECORD, mark_duplicate(step.decision))


def duplicate_keys(candidates: Sequence[Candidate]) -> list[str]:
    """The message keys whose existing claims `plan` needs to know (rule-3 candidates)."""
    return [c.mail.dedupe_key for c in candidates if c.decision.outcome in DUPLICATE_ELIGIBLE]
