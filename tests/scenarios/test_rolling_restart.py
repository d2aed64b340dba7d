"""A rolling restart: each pod in turn is stopped gracefully and started again, and the
next one goes only once it is ready (its sidecar's /readyz), while clients walk people
around. Nothing that existed before the roll is lost, every walk that returned ok is in
its person's log, and the seed's rules hold afterwards."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.scenarios._house import (
    House,
    HouseCluster,
    check_walks,
    lost_log_entries,
    placement,
    report,
    total,
    wait_for,
)

SETTLE_S = 2.0  # between steps, as minReadySeconds gives the ring time to rebalance


async def scenario(cluster: HouseCluster) -> None:
    async with House(cluster) as house:
        await house.walk_for(4.0)
        before = await house.snapshot(via=0)
        where_before = await placement(house.clients[0])

        walkers = house.walkers()
        for w in walkers:
            w.start()
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        steps: list[dict[str, Any]] = []
        previous = before
        for i in range(len(cluster.pods)):
            via = (i + 1) % len(cluster.pods)
            stop_s = await asyncio.to_thread(cluster.stop, i)
            await asyncio.to_thread(cluster.start, i)
            ready_s = await asyncio.to_thread(cluster.wait_ready, [i])
            node = cluster.pods[i].python_node

            async def holds_names(node: str = node, via: int = via) -> bool:
                where = await placement(house.clients[via])
                return node in set(where.values())

            names_back_s = await wait_for(holds_names, within=15.0)
            await asyncio.sleep(SETTLE_S)
            where = await placement(house.clients[via])
            # Logs only grow, so a snapshot taken while people walk still shows a loss.
            now = await house.snapshot(via=via)
            lost_here = lost_log_entries(previous.logs, now.logs)
            previous = now
            steps.append(
                {
                    "pod": i,
                    "stop_s": round(stop_s, 2),
                    "ready_s": round(ready_s, 2),
                    "names_back_s": None if names_back_s is None else round(names_back_s, 2),
                    "names_on_pod_after": list(where.values()).count(node),
                    "people_whose_log_lost_entries": sorted(lost_here),
                }
            )
        roll_s = time.monotonic() - t0
        await asyncio.sleep(2.0)
        for w in walkers:
            await w.stop()
        after = await house.snapshot(via=0)
        where_after = await placement(house.clients[0])
        problems = await house.invariants(via=0)

    lost = lost_log_entries(before.logs, after.logs)
    walk_problems = check_walks(walkers, before, after)
    stats = total(walkers)
    report(
        "rolling_restart",
        {
            "roll_s": round(roll_s, 1),
            "steps": steps,
            "names_before": len(where_before),
            "names_after": len(where_after),
            "log_entries_lost": sum(lost.values()),
            "ok_walks_missing_from_logs": len(walk_problems),
            "ok_walks_problems_first": walk_problems[:6],
            "invariant_violations": len(problems),
            "invariant_violations_first": problems[:6],
            "uncertain_people": sum(len(w.uncertain) for w in walkers),
            **stats.figures(),
        },
    )
    assert set(where_after) >= set(where_before)
    for room, inside in before.dump.items():
        assert room in after.dump, f"{room} was lost"
        assert isinstance(inside, list)
    assert lost == {}
    assert walk_problems == []
    assert problems == []
    assert stats.unexpected == []
    assert stats.gave_up == 0
    assert all(s["names_on_pod_after"] > 0 for s in steps), steps


def test_rolling_restart_loses_nothing(house: HouseCluster) -> None:
    asyncio.run(scenario(house))
