"""classify: fetched messages -> the rules' decisions (pure, no I/O).

The directory is the one current when the batch runs: a reload (LISTEN/NOTIFY) applies
from the next batch on. Rule 3 (duplicate) needs the journal, so `dedupe` applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.directory import Directory
from pipeline.rules import Policy, decide
from pipeline.sources import Fetched
from pipeline.stages import Classified


async def classify(
    items: Sequence[Fetched], *, directory: Callable[[], Directory], policy: Policy
) -> list[Classified | Exception]:
    current = directory()
    return [Classified(f.ref, f.mail, decide(f.mail, current, policy)) for f in items]
