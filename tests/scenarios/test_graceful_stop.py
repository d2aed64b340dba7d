"""A pod stopped as Kubernetes stops it (SIGTERM to the Python node, which drains through
its sidecar, then to the sidecar) loses no room, no person and no log entry: neither
when the house is quiet nor while clients walk people around."""

from __future__ import annotations

import asyncio
import time

from tests.scenarios._house import (
    PEOPLE,
    House,
    HouseCluster,
    check_walks,
    lost_log_entries,
    placement,
    report,
    total,
)


async def scenario(cluster: HouseCluster) -> None:
    async with House(cluster) as house:
        await house.walk_for(4.0)  # everyone somewhere, logs of a few entries

        # Quiet house: the state before and after the stop is the same, name for name.
        before = await house.snapshot(via=2)
        where_before = await placement(house.clients[2])
        leaving = cluster.pods[1].python_node
        moved = sorted(n for n, node in where_before.items() if node == leaving)
        assert moved, "pod 1 held nothing: the ring did not spread the names"
        quiet_stop_s = await asyncio.to_thread(cluster.stop, 1)
        after = await house.snapshot(via=2)
        where_after = await placement(house.clients[2])
        assert after.dump == before.dump
        assert after.logs == before.logs
        assert set(where_after) == set(where_before)
        assert leaving not in set(where_after.values())

        await asyncio.to_thread(cluster.start, 1)
        rejoin_s = await asyncio.to_thread(cluster.wait_ready, [1])

        # Busy house: walkers on every sidecar while pod 2 stops.
        start = await house.snapshot(via=0)
        walkers = house.walkers()
        for w in walkers:
            w.start()
        await asyncio.sleep(2.0)
        t0 = time.monotonic()
        busy_stop_s = await asyncio.to_thread(cluster.stop, 2)
        await asyncio.sleep(3.0)
        for w in walkers:
            await w.stop()
        walking_s = time.monotonic() - t0 + 2.0
        end = await house.snapshot(via=0)
        problems = await house.invariants(via=0)
        lost = lost_log_entries(start.logs, end.logs)
        walk_problems = check_walks(walkers, start, end)
        where_end = await placement(house.clients[0])

    stats = total(walkers)
    report(
        "graceful_stop",
        {
            "quiet_stop": {
                "names_moved": len(moved),
                "stop_s": round(quiet_stop_s, 2),
                "state_equal": True,
            },
            "rejoin_ready_s": round(rejoin_s, 2),
            # Read while names still moved onto the rejoined pod: a room being handed over
            # is missing from dump() or listed empty for a moment.
            "people_missing_from_dump_after_rejoin": sum(
                1 for p, room in start.stands().items() if start.where().get(p) != room
            ),
            "busy_stop": {
                "stop_s": round(busy_stop_s, 2),
                "walking_s": round(walking_s, 1),
                **stats.figures(),
                "uncertain_people": sum(len(w.uncertain) for w in walkers),
                "log_entries_lost": sum(lost.values()),
                "ok_walks_missing_from_logs": len(walk_problems),
                "ok_walks_problems_first": [p[:400] for p in walk_problems[:4]],
                "invariant_violations": len(problems),
            },
        },
    )
    assert problems == []
    assert lost == {}
    assert walk_problems == []
    assert stats.unexpected == []
    assert stats.gave_up == 0
    assert set(where_end) == {f"room:{r}" for r in end.dump} | {
        f"person:{p}" for p in PEOPLE if end.logs[p]
    }
    assert cluster.pods[2].python_node not in set(where_end.values())


def test_graceful_stop_loses_nothing(house: HouseCluster) -> None:
    asyncio.run(scenario(house))
