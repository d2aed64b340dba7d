"""A pod killed outright (SIGKILL to everything in it, epmd included) while clients walk:
every name comes back on the surviving pods within a bounded time, with its replicated
state. No person's log loses an entry, no surviving room lists a person who stands
elsewhere, and the rules hold."""

from __future__ import annotations

import asyncio
import time

from tests.scenarios._house import (
    ROOMS,
    House,
    HouseCluster,
    check_walks,
    lost_log_entries,
    placement,
    report,
    total,
    wait_for,
)

RECOVERY_BOUND_S = 20.0


async def scenario(cluster: HouseCluster) -> None:
    async with House(cluster) as house:
        await house.walk_for(4.0)
        before = await house.snapshot(via=0)
        where_before = await placement(house.clients[0])
        killed = cluster.pods[2].python_node
        on_killed = {n for n, node in where_before.items() if node == killed}
        assert on_killed, "pod 2 held nothing: the ring did not spread the names"

        walkers = house.walkers()
        for w in walkers:
            w.start()
        await asyncio.sleep(1.5)
        t0 = time.monotonic()
        await asyncio.to_thread(cluster.kill, 2)
        kill_s = time.monotonic() - t0

        async def all_back() -> bool:
            where = await placement(house.clients[0])
            return set(where) >= set(where_before) and killed not in set(where.values())

        recover_s = await wait_for(all_back, within=30.0)
        if recover_s is not None:
            recover_s += kill_s
        await asyncio.sleep(3.0)
        for w in walkers:
            await w.stop()
        where_after = await placement(house.clients[0])
        after = await house.snapshot(via=0)
        problems = await house.invariants(via=0)

    lost = lost_log_entries(before.logs, after.logs)
    people_on_killed = {n.split(":", 1)[1] for n in on_killed if n.startswith("person:")}
    rooms_on_killed = {n.split(":", 1)[1] for n in on_killed if n.startswith("room:")}
    walk_problems = check_walks(walkers, before, after)
    # The surviving rooms kept their lists; a person restarted without its state would
    # not know it stood in one of them.
    stands = after.stands()
    stale_listings = {
        room: stale
        for room, inside in sorted(after.dump.items())
        if room not in rooms_on_killed
        for stale in [sorted(p for p in inside if p in people_on_killed and stands.get(p) != room)]
        if stale
    }
    stats = total(walkers)
    report(
        "sigkill",
        {
            "names_on_killed_pod": len(on_killed),
            "rooms_on_killed_pod": len(rooms_on_killed),
            "people_on_killed_pod": len(people_on_killed),
            "recover_s": None if recover_s is None else round(recover_s, 2),
            "people_whose_log_was_reset": len(lost),
            "log_entries_lost": sum(lost.values()),
            "rooms_restarted": sorted(rooms_on_killed),
            "people_reset": sorted(lost),
            "surviving_rooms_listing_reset_people": stale_listings,
            "reset_people_listed_by_surviving_rooms": sum(len(v) for v in stale_listings.values()),
            "invariant_violations_after": len(problems),
            "invariant_violations": problems[:20],
            **stats.figures(),
        },
    )
    assert recover_s is not None and recover_s < RECOVERY_BOUND_S, (
        f"names not all back within {RECOVERY_BOUND_S} s: missing "
        f"{sorted(set(where_before) - set(where_after))}"
    )
    assert set(where_after) >= set(where_before)
    assert killed not in set(where_after.values())
    assert sorted(after.dump) == sorted(ROOMS)
    # The killed pod's workers came back with their state.
    assert lost == {}, lost
    assert stale_listings == {}
    assert problems == []
    assert walk_problems == []
    assert stats.unexpected == []


def test_killed_pod_names_come_back(house: HouseCluster) -> None:
    asyncio.run(scenario(house))
