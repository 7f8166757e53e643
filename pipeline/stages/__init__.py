"""The pipeline's stages: fetch -> classify -> dedupe -> move -> store, or -> dispose.

Each stage is a small async function over a batch: `(items, deps...) -> one result per
item, in order` (a value, or the exception for that item). Stages know nothing of queues,
retries or metrics; `runner.Lane` wraps them, `service` wires them. The values passed
between stages are below.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.model import Decision, Mail, MailRef
from pipeline.sources import Stored
from pipeline.store.journal import Recorded


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
