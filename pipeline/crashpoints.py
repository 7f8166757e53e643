"""Test-only crash points: SIGKILL this process at a named step boundary.

    EMAILLOG_TEST_CRASH_AT=after_claim      killed at the first crash_point("after_claim")
    EMAILLOG_TEST_CRASH_AT=after_move:2     killed at the second one

The reliability suite (tests/reliability/) runs `emaillog run` with this set to prove that a
crash between any two steps loses nothing and logs nothing twice. The variable is read once,
at import; unset (production), `crash_point` is one string comparison. SIGKILL, not an
exception: nothing gets to clean up, flush or roll back, exactly as with the OOM killer.

Names: after_fetch, after_claim, after_move, after_store, after_dispose (pipeline/stages/)
and reconciler_before_record (pipeline/reconciler.py).
"""

from __future__ import annotations

import os
import signal

CRASH_VARIABLE = "EMAILLOG_TEST_CRASH_AT"


def parse(value: str) -> tuple[str | None, int]:
    """`name` -> (name, 1); `name:N` -> (name, N); empty -> (None, 0)."""
    name, _, nth = value.strip().partition(":")
    if not name:
        return None, 0
    return name, int(nth) if nth else 1


_TARGET, _NTH = parse(os.environ.get(CRASH_VARIABLE, ""))
_reached = 0


def crash_point(name: str) -> None:
    """SIGKILL the process if this is the crash point (and the Nth time) named in the variable."""
    global _reached
    if name != _TARGET:
        return
    _reached += 1
    if _reached >= _NTH:
        # Straight to fd 2 (no logging handler to flush): the test reads it to confirm where.
        os.write(2, f"crash point {name}:{_reached}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
