"""The pipeline's steps: fetch -> classify -> dedupe -> move -> store, or -> dispose.

Each step is a small async function over a batch: `(items, *, deps) -> one result per
item, in order` (a value, or the exception for that item). Steps know nothing of queues,
retries, routing or metrics: `flow.py` declares the topology and binds their dependencies,
`runner.py` batches and retries them, `ledger.py` accounts for how each item ends. The
values passed between steps are below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.claims import Recorded
from pipeline.model import Decision, Mail, MailRef, message_id_hash
from pipeline.sources import Stored


@dataclass(frozen=True, slots=True)
class Classified:
    """A fetched message and what the rules say about it (before rule 3)."""

    ref: MailRef
    mail: Mail
    decision: Decision


@dataclass(frozen=True, slots=True)
class Decided:
    """A message whose final decision is committed in the journal."""

    ref: MailRef
    mail: Mail
    recorded: Recorded

    @property
    def decision(self) -> Decision:
        return self.recorded.decision

    @property
    def to_storage(self) -> bool:
        """Claimed: the message goes to the storage folder (else it is disposed of)."""
        return self.recorded.to_storage

    @property
    def message_id_hash(self) -> str:
        return message_id_hash(self.mail)


@dataclass(frozen=True, slots=True)
class Moved:
    """A logged message now in the storage folder (its link not yet recorded)."""

    decided: Decided
    stored: Stored

    @property
    def ref(self) -> MailRef:
        return self.decided.ref

    @property
    def mail(self) -> Mail:
        return self.decided.mail


class Tracked(Protocol):
    """Any stage value after fetch: it knows its queue item and its message."""

    @property
    def ref(self) -> MailRef: ...

    @property
    def mail(self) -> Mail: ...
