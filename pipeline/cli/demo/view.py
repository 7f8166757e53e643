"""What the demo shows while the service works: per-outcome counts as a live view.

On a terminal `LiveView` redraws a block (one row per outcome, a bar toward its expected
count) in place; otherwise it prints one progress line whenever something changed, so a
log or CI output stays readable. Pure rendering: the counts come from `checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from pipeline.model import Outcome

#: Every outcome, in the order of every table the demo prints and of its JSON line.
OUTCOMES = tuple(outcome.value for outcome in Outcome)

#: Prints one line of the demo's output (see `printer`).
Say = Callable[[str], None]


def printer(out: TextIO) -> Say:
    """`say(line)` onto `out`, flushed at once: the demo's output follows the service live."""

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say


@dataclass(frozen=True, slots=True)
class Snapshot:
    counts: Mapping[str, int]  # disposal_log rows per outcome
    expected: Mapping[str, int]
    delivered: int
    total: int
    in_queue: int


def disposed(counts: Mapping[str, int]) -> int:
    """Messages the service is done with: a `failed` one is left in the queue, not disposed of."""
    return sum(n for outcome, n in counts.items() if outcome != Outcome.FAILED)


def counts_text(counts: Mapping[str, int]) -> str:
    shown = ", ".join(f"{o} {counts[o]}" for o in OUTCOMES if counts.get(o))
    return f"disposed of {disposed(counts)}: {shown or 'nothing yet'}"


def render_block(snap: Snapshot) -> list[str]:
    """The live view on a terminal: one row per outcome, with a bar toward its expected count."""
    lines = [f"  {'outcome':<18}{'count':>6}  {'expected':>8}"]
    for outcome in OUTCOMES:
        done, want = snap.counts.get(outcome, 0), snap.expected.get(outcome, 0)
        bar = "█" * min(done, want) + "·" * max(want - done, 0) + "!" * max(done - want, 0)
        lines.append(f"  {outcome:<18}{done:>6}  {want:>8}  {bar}")
    lines.append(
        f"  delivered {snap.delivered}/{snap.total}, in the queue folder {snap.in_queue}, "
        f"disposed of {disposed(snap.counts)}"
    )
    return lines


def render_line(snap: Snapshot) -> str:
    """The live view when stdout is not a terminal: one line."""
    return (
        f"progress: delivered {snap.delivered}/{snap.total}, in queue {snap.in_queue}, "
        + counts_text(snap.counts)
    )


class LiveView:
    """Redraws `render_block` in place on a terminal; otherwise prints `render_line`.
    Either way only when something changed."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._last: list[str] = []

    def show(self, snap: Snapshot) -> None:
        lines = render_block(snap) if self._tty else [render_line(snap)]
        if lines == self._last:
            return
        if self._tty and self._last:
            self._out.write(f"\x1b[{len(self._last)}F")  # back to the block's first line
        prefix = "\x1b[2K" if self._tty else ""  # clear the old line before writing
        self._out.write("".join(f"{prefix}{line}\n" for line in lines))
        self._out.flush()
        self._last = lines
