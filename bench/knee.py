"""The steady-state knee: the highest delivery rate the service keeps up with.

One exchange_sim and one `emaillog run` for the whole search. Each step delivers
`step_seconds` of fresh messages at one rate, then waits for the service to catch up. A
step passes when the service caught up within phases.KEPT_UP_WITHIN_SECONDS of the last
delivery and the step's p99 (delivery to disposal) is at most P99_LIMIT_MS. The rate
doubles from `start` until a step fails, then is bisected between the last pass and the
first fail `bisections` times. A rate the benchmark could not deliver at (the achieved rate
falls short by more than 5%) counts as a failure of the set-up, not of the service: the
search stops there and says so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from bench import db, phases
from bench.corpus import Directory, generate
from bench.procs import ServiceProcess

#: "Keeps up" means this, at most, from delivery to disposal for 99% of messages.
P99_LIMIT_MS = 1000.0


@dataclass(frozen=True, slots=True)
class Step:
    rate: float  # asked for
    achieved: float  # delivered
    p99_ms: float
    caught_up_s: float | None

    @property
    def passed(self) -> bool:
        return (
            self.caught_up_s is not None
            and self.caught_up_s <= phases.KEPT_UP_WITHIN_SECONDS
            and self.p99_ms <= P99_LIMIT_MS
        )

    @property
    def delivered(self) -> bool:
        return self.achieved >= 0.95 * self.rate


@dataclass
class KneeResult:
    steps: list[Step] = field(default_factory=list)
    knee: float = 0.0
    limited_by_delivery: bool = False


async def knee(
    ctx: phases.Context,
    people: Directory,
    *,
    seed: int,
    start: float = 100.0,
    step_seconds: float = 10.0,
    bisections: int = 3,
    max_rate: float = 3200.0,
) -> KneeResult:
    await db.reset_journal(ctx.pool)
    result = KneeResult()
    async with ctx.sim_class(
        ctx.settings.source.ews.mailbox, ctx.latency_ms, ctx.logs / "sim-knee.log"
    ) as sim:
        env, port = ctx.env_for(sim)
        service = ServiceProcess(env, port, ctx.logs / "service-knee.log")
        sent = 0

        async def step(rate: float) -> Step:
            nonlocal sent
            batch = generate(people, int(rate * step_seconds), seed + sent, tag=f"knee{sent}")
            delivered_at, seconds = await phases.send_at_rate(sim, batch, rate)
            sent += len(delivered_at)
            caught = await phases.caught_up(ctx.pool, sim, sent)
            lat = await phases.latencies_ms(ctx.pool, delivered_at)
            p99 = phases.percentile(lat, 99) if lat else float("inf")
            one = Step(rate, len(delivered_at) / seconds, p99, caught)
            result.steps.append(one)
            print(
                f"bench: knee step {rate:.0f} msg/s (delivered {one.achieved:.0f}): "
                f"p99 {one.p99_ms:.0f} ms, caught up {caught}: "
                f"{'pass' if one.passed else 'fail'}",
                file=sys.stderr,
                flush=True,
            )
            return one

        try:
            await service.start()
            await search(step, result, start=start, bisections=bisections, max_rate=max_rate)
        finally:
            await service.stop()
    return result


async def search(
    step: phases.StepFn, result: KneeResult, *, start: float, bisections: int, max_rate: float
) -> None:
    """Doubling, then bisecting; `result.knee` is the highest achieved rate that passed."""
    good, good_rate, bad = 0.0, 0.0, None
    rate = start
    while rate <= max_rate:
        one = await step(rate)
        if not one.delivered:
            result.limited_by_delivery = True
            break
        if not one.passed:
            bad = rate
            break
        good, good_rate = max(good, one.achieved), rate
        rate *= 2
    if bad is not None and not result.limited_by_delivery:
        low, high = good_rate, bad
        for _ in range(bisections):
            middle = (low + high) / 2
            one = await step(middle)
            if not one.delivered:
                result.limited_by_delivery = True
                break
            if one.passed:
                low = middle
                good = max(good, one.achieved)
            else:
                high = middle
    result.knee = good
