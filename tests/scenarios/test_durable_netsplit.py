"""A netsplit: pod 2's link is cut for 20 s, then healed, while people are walked on both
sides: Python clients and an erl client in the root namespace through sidecars 0 and 1,
an erl client inside pod 2 through its own sidecar, each side with people of its own.
Once the merge has settled, every walk answered ok on either side is in its person's
log, ``where_is`` is the last acknowledged room, and rooms and people agree (a room may
hold more than its max after the heal: both sides filled it). No walk on either side was
told that an existing room does not exist."""

from __future__ import annotations

import asyncio
import time

from tests.scenarios._durable import DurableHouse
from tests.scenarios._house import HouseCluster

CUT = 2
CUT_S = 20.0
SETTLE_S = 25.0  # the merge's own settling, and a second pass of it


async def scenario(cluster: HouseCluster) -> list[str]:
    async with DurableHouse(cluster) as house:
        minority = house.people[::5]
        majority = [p for p in house.people if p not in set(minority)]
        majority_clients = house.clients[:CUT]
        house.start_walking([0, 1, 0], [1, 0], sidecars=[0, 1], people=majority)
        house.start_walking([], [CUT], sidecars=[CUT], people=minority, erl_pod=CUT)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(cluster.cut, CUT)
        t_cut, cut_at = time.monotonic(), time.time()
        majority_s = await house.wait_every_name_answers(CUT_S - 2.0, majority_clients)
        await asyncio.sleep(max(0.0, CUT_S - (time.monotonic() - t_cut)))
        await asyncio.to_thread(cluster.heal, CUT)
        t_heal, heal_at = time.monotonic(), time.time()
        await asyncio.sleep(3.0)
        await house.stop_walking()
        back_s = await house.wait_every_name_answers(SETTLE_S)
        await house.wait_settled()
        # The merge settles in steps of its own after the heal: wait for it, bounded.
        clean_s = await house.wait_clean(SETTLE_S, healed_netsplit=True)
        house.figures.update(
            {
                "cut_s": CUT_S,
                "cut_at": round(cut_at, 3),
                "healed_at": round(heal_at, 3),
                "majority_every_name_answers_s": None
                if majority_s is None
                else round(majority_s, 2),
                "every_name_answers_after_heal_s": None if back_s is None else round(back_s, 2),
                "rules_hold_after_heal_s": None
                if clean_s is None
                else round(time.monotonic() - t_heal, 2),
            }
        )
        # Neither side says that an existing room does not exist: the minority answers
        # unavailable for the names the majority may hold.
        outcome = await house.check(
            "durable_netsplit", healed_netsplit=True, window=(0.0, float("inf"))
        )
    return [str(p) for p in outcome.problems]


def test_a_healed_netsplit_loses_no_acknowledged_walk(house: HouseCluster) -> None:
    problems = asyncio.run(scenario(house))
    assert problems == [], f"{len(problems)} problems; first ones:\n" + "\n".join(problems[:8])
