"""A netsplit: one pod's link is cut for 30 s while people are walked on both sides
(clients in the root namespace on the majority, an erl node inside the cut pod on the
minority), then healed. Afterwards every name has exactly one copy, every walk that
returned ok on either side is in its person's merged log, and the seed's rules hold
again after a settle period. The merge is reported: how many names had a copy on each
side, and which copy won."""

from __future__ import annotations

import asyncio
import time

from py_nodes._terms import Atom
from tests.scenarios._house import (
    PEOPLE,
    ROOMS,
    TICK,
    House,
    HouseCluster,
    Snapshot,
    check_walks,
    local_names,
    placement,
    report,
    total,
    wait_for,
)

CUT_S = 30.0
SETTLE_S = 20.0


def collapse(start: str | None, rooms: list[str]) -> list[str]:
    out = []
    for room in rooms:
        if room != start:
            out.append(room)
            start = room
    return out


def missing_ok_walks(
    ok_walks: dict[str, list[str]], before: Snapshot, after: Snapshot
) -> list[str]:
    """Each person's ok walks must appear, in order, among the entries added to its log
    (other walks, from the other side, may be interleaved)."""
    problems = []
    start = before.stands()
    for person, rooms in ok_walks.items():
        expected = collapse(start.get(person), rooms)
        log = [room for _t, room in reversed(after.logs[person])]
        it = iter(log)
        if not all(room in it for room in expected):
            problems.append(f"{person}: ok walks {expected} not all in merged log {log}")
    return problems


async def python_processes(house: House) -> dict[str, int]:
    """Processes on each pod's Python node (workers, plus its own few)."""
    counts = {}
    for hp in house.clients:
        status = await hp.rpc("houseparty", "pod_status", [])
        memory = {str(k): v for k, v in status[Atom("python_memory")].items()}
        counts[str(status[Atom("python_node")])] = int(memory["processes"])
    return counts


async def scenario(cluster: HouseCluster) -> None:
    cut = 2
    async with House(cluster) as house:
        await house.walk_for(4.0)
        before = await house.snapshot(via=0)
        where_before = await placement(house.clients[0])
        procs_before = await python_processes(house)
        own_processes = {
            node: procs_before[node] - list(where_before.values()).count(node)
            for node in procs_before
        }
        cluster.probe(cut)  # the minority's client, started before the link goes

        walkers = house.walkers()
        for w in walkers:
            w.start()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(cluster.cut, cut)
        t_cut = time.monotonic()
        minority = asyncio.create_task(
            asyncio.to_thread(cluster.probe_walk, cut, house.shares[cut], ROOMS, CUT_S - 4.0, 5)
        )

        async def split_seen() -> bool:
            nodes = await house.clients[0].rpc("erlang", "nodes", [])
            return cluster.sidecars[cut] not in {str(n) for n in nodes}

        nodedown_s = await wait_for(split_seen, within=3 * TICK, every=0.1)

        async def majority_whole() -> bool:
            where = await placement(house.clients[0])
            return set(where) >= set(where_before) and cluster.pods[cut].python_node not in set(
                where.values()
            )

        majority_s = await wait_for(majority_whole, within=CUT_S - 8.0)
        minority_walks = await minority
        where_majority = await placement(house.clients[0])
        where_minority = await asyncio.to_thread(cluster.probe_registered, cut)
        await asyncio.sleep(max(0.0, CUT_S - (time.monotonic() - t_cut)))

        await asyncio.to_thread(cluster.heal, cut)
        t_heal = time.monotonic()

        async def joined() -> bool:
            nodes = await house.clients[0].rpc("erlang", "nodes", [])
            return cluster.sidecars[cut] in {str(n) for n in nodes}

        rejoin_s = await wait_for(joined, within=30.0, every=0.1)
        holders: dict[str, list[int]] = {}
        views: list[dict[str, str]] = []

        async def one_copy() -> bool:
            holders.clear()
            for i, hp in enumerate(house.clients):
                for name in await local_names(hp):
                    holders.setdefault(name, []).append(i)
            views[:] = [await placement(hp) for hp in house.clients]
            return (
                all(len(h) == 1 for h in holders.values())
                and all(v == views[0] for v in views)
                and set(views[0]) >= set(where_before)
            )

        one_copy_s = await wait_for(one_copy, within=SETTLE_S, every=0.5)
        await asyncio.sleep(3.0)
        for w in walkers:
            await w.stop()
        walking_s = time.monotonic() - t_cut + 1.0

        problems: list[str] = []

        async def rules_hold() -> bool:
            problems[:] = await house.invariants(via=0)
            return not problems

        rules_s = await wait_for(rules_hold, within=SETTLE_S, every=1.0)
        heal_to_rules_s = None if rules_s is None else time.monotonic() - t_heal
        after = await house.snapshot(via=0)
        where_after = await placement(house.clients[0])
        procs_after = await python_processes(house)

    # The merge: names with a copy on both sides, and whose copy won.
    conflicts = sorted(set(where_majority) & set(where_minority))
    minority_node = cluster.pods[cut].python_node
    won_by_minority = sorted(n for n in conflicts if where_after.get(n) == minority_node)
    duplicates = {n: h for n, h in holders.items() if len(h) > 1}
    extra = {
        node: procs_after[node] - list(where_after.values()).count(node) - own_processes[node]
        for node in procs_after
    }
    majority_ok = {p: rooms for w in walkers for p, rooms in w.ok_walks.items()}
    lost_majority = missing_ok_walks(majority_ok, before, after)
    lost_minority = missing_ok_walks(
        {p: minority_walks.ok_walks.get(p, []) for p in house.shares[cut]}, before, after
    )
    # The people only the majority walked: their logs hold exactly their ok walks unless
    # a copy restarted during the split (it knew no room) logged a walk into the room
    # the person already stood in.
    not_exact = check_walks([w for i, w in enumerate(walkers) if i != cut], before, after)
    stats = total(walkers)
    report(
        "netsplit",
        {
            "cut_s": CUT_S,
            "nodedown_seen_s": None if nodedown_s is None else round(nodedown_s, 2),
            "majority_has_every_name_s": None if majority_s is None else round(majority_s, 2),
            "names_before": len(where_before),
            "names_on_majority_during_split": len(where_majority),
            "names_on_minority_during_split": len(where_minority),
            "conflicts": len(conflicts),
            "conflicts_won_by_minority_copy": len(won_by_minority),
            "conflicts_won_by_majority_copy": len(conflicts) - len(won_by_minority),
            "rejoin_s": None if rejoin_s is None else round(rejoin_s, 2),
            "one_copy_after_heal_s": None if one_copy_s is None else round(one_copy_s, 2),
            "names_held_twice": len(duplicates),
            "extra_python_processes": extra,
            "rules_hold_after_heal_s": (
                None if heal_to_rules_s is None else round(heal_to_rules_s, 2)
            ),
            "rule_violations": len(problems),
            "rule_violations_by_kind": {
                "room_over_max": sum("over its max" in p for p in problems),
                "person_listed_in_two_rooms": sum("is listed in" in p for p in problems),
                "where_is_not_the_listing_room": sum("where_is says" in p for p in problems),
                "newest_log_entry_not_where_is": sum("newest log entry" in p for p in problems),
            },
            "rule_violations_first": problems[:12],
            "ok_walks_missing_majority": len(lost_majority),
            "ok_walks_missing_minority": len(lost_minority),
            "ok_walks_missing_first": (lost_majority + lost_minority)[:4],
            "logs_with_entries_beyond_ok_walks": len(not_exact),
            "logs_with_entries_beyond_ok_walks_first": [p[:300] for p in not_exact[:3]],
            "minority_walks": dict(minority_walks.outcomes),
            "majority_walking_s": round(walking_s, 1),
            **stats.figures(),
        },
    )
    assert nodedown_s is not None, f"no nodedown within {3 * TICK} s of the cut"
    assert majority_s is not None, "the majority never had every name"
    assert rejoin_s is not None, "the pods did not reconnect after the heal"
    assert one_copy_s is not None, f"names held twice after the heal: {duplicates}"
    assert set(where_after) >= set(where_before)
    assert all(v == 0 for v in extra.values()), f"losing copies still alive: {extra}"
    assert stats.unexpected == []
    assert lost_majority == [] and lost_minority == []
    assert problems == [], "the rules do not hold after the heal:\n" + "\n".join(problems)
    assert sorted(after.dump) == sorted(ROOMS)
    assert {p for p in PEOPLE if after.logs[p]} <= {
        n.split(":", 1)[1] for n in where_after if n.startswith("person:")
    }


def test_netsplit_heals_to_one_copy_of_every_name(house: HouseCluster) -> None:
    asyncio.run(scenario(house))
