"""The invariants check itself: each kind of damage it exists for is detected (so a passing
scenario means something). Synthetic snapshots; no service, no database."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pipeline.model import Outcome, hash_key
from tests.reliability.invariants import Snapshot, violations
from tests.reliability.mail import Delivered

LOGGED = Delivered("logged", "q1", "<a@x>", Outcome.LOGGED, 2)
DISPOSED = Delivered("disposed", "q2", "<b@x>", Outcome.UNREGISTERED, None)


def healthy() -> Snapshot:
    return Snapshot(
        disposals=[
            {
                "id": 1,
                "queue_item_id": "q1",
                "outcome": "logged",
                "stored_message_id": 10,
                "message_id_hash": hash_key("<a@x>"),
            },
            {
                "id": 2,
                "queue_item_id": "q2",
                "outcome": "unregistered",
                "stored_message_id": None,
                "message_id_hash": hash_key("<b@x>"),
            },
        ],
        stored={
            10: {"id": 10, "state": "stored", "storage_item_id": "s1", "web_link": "https://x/1"}
        },
        entries=Counter({10: 2}),
        queue={},
        storage={"s1": {"id": "s1", "message_id": "<a@x>"}},
    )


def problems(snap: Snapshot, **kwargs: Any) -> list[str]:
    found, _ = violations(snap, [LOGGED, DISPOSED], **kwargs)
    return found


def test_a_healthy_state_passes() -> None:
    assert problems(healthy()) == []
    metrics = {"logged": 1.0, "unregistered": 1.0, "failed": 0.0}
    assert problems(healthy(), metrics=metrics) == []


def damaged(kind: str) -> Snapshot:
    snap = healthy()
    if kind == "left in the queue":
        snap.queue["q2"] = {"id": "q2"}
        snap.disposals.pop(1)
    elif kind == "deleted without a decision":
        snap.disposals.pop(1)
    elif kind == "stored twice":
        snap.storage["s2"] = {"id": "s2", "message_id": "<a@x>"}
    elif kind == "left moving":
        snap.stored[10] = {"id": 10, "state": "moving", "storage_item_id": None}
    elif kind == "entries twice":
        snap.entries[10] = 4
    elif kind == "link to nothing":
        snap.storage.clear()
    elif kind == "wrong outcome":
        snap.disposals[1] = {**snap.disposals[1], "outcome": "duplicate"}
    elif kind == "no web link":
        snap.stored[10] = {**snap.stored[10], "web_link": None}
    elif kind == "decision never delivered":
        snap.disposals.append({**snap.disposals[1], "id": 3, "queue_item_id": "q9"})
    return snap


@pytest.mark.parametrize(
    "kind",
    [
        "left in the queue",
        "deleted without a decision",
        "stored twice",
        "left moving",
        "entries twice",
        "link to nothing",
        "wrong outcome",
        "decision never delivered",
        "no web link",
    ],
)
def test_each_kind_of_damage_is_detected(kind: str) -> None:
    assert problems(damaged(kind))


def test_metrics_that_disagree_with_the_log_are_detected() -> None:
    assert problems(healthy(), metrics={"logged": 2.0, "unregistered": 1.0})
    # Only this run's rows count: with the first row from an earlier run, logged must be 0.
    assert problems(healthy(), metrics={"logged": 1.0, "unregistered": 1.0}, run_from_id=1)
    assert not problems(healthy(), metrics={"logged": 0.0, "unregistered": 1.0}, run_from_id=1)


def test_a_failed_message_may_stay_in_the_queue_only_when_allowed() -> None:
    snap = healthy()
    snap.disposals[1] = {**snap.disposals[1], "outcome": "failed"}
    snap.queue["q2"] = {"id": "q2"}
    assert problems(snap)
    found, outcomes = violations(snap, [LOGGED, DISPOSED], allowed_failed={"q2"})
    assert found == [] and outcomes.by_item["q2"] == "failed"
