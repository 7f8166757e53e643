"""Hostile and odd input, all in one run: every message of ../shared/corpus/ and generated
ones (1,000 recipients, a 200 KB subject, NUL bytes, invalid UTF-8, no Message-ID, one
Message-ID on two different messages, 80/81-character addresses, IDN and SMTPUTF8). The
service keeps running, each message gets an outcome, the disposal log accounts for all."""

from __future__ import annotations

from collections import Counter

from tests.reliability.mail import corpus_letters, hostile_batch, mixed_batch
from tests.reliability.scenario import Scenario


def test_corpus_and_generated_oddities_in_one_run(scenario: Scenario) -> None:
    service = scenario.start(fetch_batch_messages=20, move_batch_messages=20)
    corpus = scenario.deliver(corpus_letters())
    odd = scenario.deliver(hostile_batch())
    scenario.deliver(mixed_batch())  # ordinary mail after the odd: still handled normally
    assert len(corpus) > 100

    outcomes = scenario.finish(service)

    twins = [d for d in odd if d.name.startswith("twin")]
    assert sorted(outcomes.of(twins)) == ["duplicate", "logged"]
    print(Counter(outcomes.of(corpus)))  # shown with -s: what the corpus turned into
