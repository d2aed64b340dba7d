"""The kill scenarios' common course: walk, fail, wait for every name, recover, walk,
check. Each test file gives the failure and the recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.scenarios._durable import DurableHouse, Outcome
from tests.scenarios._house import HouseCluster

__all__ = ["KILLED", "NAMES_BACK_WITHIN_S", "assert_no_problems", "kill_scenario"]

KILLED = 2  # the pod that fails
NAMES_BACK_WITHIN_S = 30.0
READY_WITHIN_S = 30.0
PY_HOMES = [0, 1, 2, 1]  # the home sidecar of each Python walker
ERL_HOMES = [0, 1, 2, 0]  # and of each erl walker


async def _ready(cluster: HouseCluster, pod: int) -> float | None:
    try:
        return await asyncio.to_thread(cluster.wait_ready, [pod], READY_WITHIN_S)
    except (TimeoutError, RuntimeError):
        return None


async def kill_scenario(
    cluster: HouseCluster,
    name: str,
    steps: list[tuple[int, Callable[[int], None], Callable[[int], None], float]],
) -> Outcome:
    """``steps``: (pod, fail, recover, seconds between them) in turn; each step waits
    until every name answers from the surviving sidecars, recovers, waits until the pod
    is ready and the ring has settled. Walkers run throughout."""
    async with DurableHouse(cluster) as house:
        house.start_walking(PY_HOMES, ERL_HOMES)
        await asyncio.sleep(3.0)
        timeline = []
        for pod, fail, recover, down_s in steps:
            t0 = time.monotonic()
            await asyncio.to_thread(fail, pod)
            survivors = [hp for i, hp in enumerate(house.clients) if i != pod]
            back_s = await house.wait_every_name_answers(NAMES_BACK_WITHIN_S, survivors)
            await asyncio.sleep(max(0.0, down_s - (time.monotonic() - t0)))
            await asyncio.to_thread(recover, pod)
            ready_s = await _ready(cluster, pod)
            settled_s = await house.wait_settled()
            timeline.append(
                {
                    "pod": pod,
                    "every_name_answers_s": None if back_s is None else round(back_s, 2),
                    "ready_after_recovery_s": None if ready_s is None else round(ready_s, 2),
                    "ring_settled_s": None if settled_s is None else round(settled_s, 2),
                }
            )
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)
        await house.stop_walking()
        await house.wait_every_name_answers(NAMES_BACK_WITHIN_S / 2)
        await house.wait_settled()
        house.figures["steps"] = timeline
        outcome = await house.check(name)
    return outcome


def assert_no_problems(outcome: Outcome) -> None:
    steps = outcome.figures.get("steps", [])
    problems = [str(p) for p in outcome.problems]
    assert problems == [], (
        f"{len(problems)} problems, by kind "
        f"{outcome.figures['problems_by_kind']}; first ones:\n" + "\n".join(problems[:8])
    )
    for step in steps:
        assert step["every_name_answers_s"] is not None, f"names did not all answer: {step}"
        assert step["ready_after_recovery_s"] is not None, f"pod not ready again: {step}"
        assert step["ring_settled_s"] is not None, f"ring never settled: {step}"
