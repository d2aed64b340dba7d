"""Durable state: a pod, or half of one, dies and no acknowledged walk is lost; rooms and
people agree afterwards; a lookup that cannot reach an owner answers unavailable."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from houseparty import DestinationFull, HouseParty, Unavailable
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster, Iex, start_cluster
from tests.houseparty.test_metrics import total
from tests.houseparty.test_state_changes import copies, once_back, owner_sidecar

ROOMS = [f"hall_{i}" for i in range(10)]
PEOPLE = [f"visitor_{i}" for i in range(80)]


def populate(hp: HouseParty, walks: int = 240) -> None:
    rng = random.Random(11)
    hp.add_rooms(ROOMS, max=20)
    for _ in range(walks):
        with contextlib.suppress(DestinationFull):
            hp.walk_into(rng.choice(ROOMS), rng.choice(PEOPLE))


def wait_all_answer(hp: HouseParty, timeout: float = 60.0) -> None:
    """Every room and person answers again (names restarted, ring settled)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for room in ROOMS:
                hp.who_is_in(room)
            for person in PEOPLE:
                hp.where_is(person)
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def state(
    hp: HouseParty,
) -> tuple[dict[str, list[str]], dict[str, str | None], dict[str, list[tuple[datetime, str]]]]:
    rooms = {room: sorted(hp.who_is_in(room)) for room in ROOMS}
    where = {person: hp.where_is(person) for person in PEOPLE}
    logs = {person: hp.get_person_room_log(person) for person in PEOPLE}
    return rooms, where, logs


def assert_agree(rooms: dict[str, list[str]], where: dict[str, str | None]) -> None:
    """Every person is listed in exactly the room where_is names, and nowhere else."""
    listed: dict[str, list[str]] = {}
    for room, people in rooms.items():
        for person in people:
            listed.setdefault(person, []).append(room)
    for person in PEOPLE:
        expected = [] if where[person] is None else [where[person]]
        assert listed.get(person, []) == expected, person


def walk_concurrently(
    cluster: Cluster, pods: list[int], stop: threading.Event
) -> list[tuple[str, str]]:
    """Walks from several sidecars at once until ``stop``, each walker with people of its
    own, each walk into a room its person was not walked into last: the (person, room)
    of each walk answered ok, in order per person."""
    acked: list[tuple[str, str]] = []
    lock = threading.Lock()
    walkers = len(pods) * 3

    def walker(pod: int, index: int) -> None:
        rng = random.Random(index)
        mine = PEOPLE[index::walkers]
        with cluster.client(pod) as hp:
            last = {p: {hp.where_is(p)} for p in mine}
            while not stop.is_set():
                person = rng.choice(mine)
                room = rng.choice([r for r in ROOMS if r not in last[person]])
                try:
                    hp.walk_into(room, person)
                except DestinationFull:
                    continue
                except Unavailable:
                    # It may have happened: the next walk avoids both rooms.
                    last[person].add(room)
                    continue
                last[person] = {room}
                with lock:
                    acked.append((person, room))

    threads = [
        threading.Thread(target=walker, args=(pod, i), daemon=True)
        for i, pod in enumerate(pods * 3)
    ]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=120)
    return acked


def check_nothing_lost(
    cluster: Cluster,
    before: dict[str, int],
    acked: list[tuple[str, str]],
    empty_rooms: frozenset[str] = frozenset(),
) -> None:
    """No walk answered ok is lost, and rooms and people agree; ``empty_rooms``, rooms
    nobody walks into, are all there too."""
    with cluster.client(1) as hp:
        wait_all_answer(hp)
        # A dead sidecar's Python node stopped its orphans at once, and a restored room
        # answers only once those it lists and those who link to it have answered.
        rooms, where, logs = state(hp)
        # dump lists them all too, not Unavailable: nothing is left restarting.
        assert hp.dump() == {**rooms, **{room: [] for room in empty_rooms}}
    assert_agree(rooms, where)
    for room, people in rooms.items():
        assert len(people) <= 20, room
    for person in PEOPLE:
        # Every walk answered ok is in the person's log, in order (a walk whose answer
        # was lost may sit between them).
        entered = iter([room for _, room in reversed(logs[person])][before[person] :])
        mine = [room for p, room in acked if p == person]
        assert all(room in entered for room in mine), (
            person,
            mine,
            [room for _, room in reversed(logs[person])][before[person] :],
        )
        # where_is names the last acknowledged room, or a later walk's.
        if mine:
            assert where[person] is not None


def run_kill_scenario(
    cluster: Cluster, kill: Callable[[], None], empty_rooms: frozenset[str] = frozenset()
) -> None:
    with cluster.client(1) as hp:
        populate(hp)
        before = {p: len(hp.get_person_room_log(p)) for p in PEOPLE}
    stop = threading.Event()
    acked: list[tuple[str, str]] = []
    runner = threading.Thread(
        target=lambda: acked.extend(walk_concurrently(cluster, [1, 2], stop)), daemon=True
    )
    runner.start()
    time.sleep(2.0)
    kill()
    time.sleep(4.0)
    stop.set()
    runner.join(timeout=180)
    assert acked, "no walk was answered ok"
    check_nothing_lost(cluster, before, acked, empty_rooms)


def test_a_killed_pod_loses_no_acknowledged_walk(cluster: Cluster) -> None:
    run_kill_scenario(cluster, lambda: cluster.runner.kill_pod(3))


def test_a_pod_whose_python_node_dies_a_moment_first_loses_no_acknowledged_walk(
    cluster: Cluster,
) -> None:
    """A lost machine takes a pod's two nodes in no set order: here the Python node goes
    first, and its sidecar, which has begun to hand the names over, a moment later."""

    def kill() -> None:
        cluster.runner.kill_node(3, "python")
        time.sleep(0.01)
        cluster.runner.kill_node(3, "sidecar")

    run_kill_scenario(cluster, kill)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.3)


def ring_of(cluster: Cluster, pod: int) -> list[str]:
    with cluster.client(pod) as hp:
        return sorted(str(n) for n in hp.rpc("hp_registry_server", "info", [])[Atom("peers")])


def workers_on(cluster: Cluster, pod: int, via: int) -> int:
    """How many workers pod ``pod``'s Python node runs, asked through sidecar ``via``."""
    hp_workers = (Atom("hp_workers"), Atom(cluster.pods[pod - 1].python_node))
    with cluster.client(via) as hp:
        counts = hp.rpc("gen_server", "call", [hp_workers, Atom("workers")])
    return sum(counts.values())


def test_a_killed_python_node_loses_nothing_and_its_pod_leaves_then_rejoins(
    cluster: Cluster,
) -> None:
    run_kill_scenario(cluster, lambda: cluster.runner.kill_node(3, "python"))
    lost = cluster.pods[2]
    # The pod without its Python node owns nothing: its peers dropped it from the ring.
    assert lost.sidecar_node not in ring_of(cluster, 1)
    assert not cluster.runner.ready(lost)
    with cluster.client(1) as hp:
        before = state(hp)
    cluster.runner.start_node(3, "python")
    wait_until(lambda: cluster.runner.ready(lost), 60, "pod 3 ready again")
    wait_until(lambda: lost.sidecar_node in ring_of(cluster, 1), 30, "pod 3 back in the ring")
    wait_until(lambda: workers_on(cluster, 3, 1) > 0, 30, "names moved back to pod 3")
    with cluster.client(2) as hp:
        wait_all_answer(hp)
        assert state(hp) == before


def add_annex(cluster: Cluster) -> frozenset[str]:
    """Adds 30,000 rooms nobody walks into, so that names are still moving a moment
    after a Python node goes; returns their names."""
    annex = sorted(f"annex_{i}" for i in range(30_000))
    with cluster.client(1) as hp:
        for start in range(0, len(annex), 5_000):
            hp.add_rooms(annex[start : start + 5_000])
    return frozenset(annex)


def test_a_python_node_killed_while_its_pod_drains_loses_nothing(cluster: Cluster) -> None:
    """The Python node is killed (out of memory, or past the grace period) in the middle
    of its pod's graceful stop: the names not handed over yet move all the same, from
    their owner copies on the sidecar."""
    # Enough names that the kill lands while the drain is under way.
    annex = add_annex(cluster)
    python_pid = next(pod.python_pid for spec, pod in cluster.runner.pods() if spec.index == 3)
    assert python_pid

    def kill() -> None:
        with cluster.client(3) as hp:
            os.kill(python_pid, signal.SIGTERM)  # the pod's stop: its sidecar drains
            deadline = time.monotonic() + 10
            while not (info := hp.rpc("hp_registry_server", "info", []))[Atom("draining")]:
                assert time.monotonic() < deadline, "pod 3 did not drain"
                time.sleep(0.005)
        cluster.runner.kill_node(3, "python")
        assert info[Atom("names")] > 1_000, "the drain was nearly over before the kill"

    run_kill_scenario(cluster, kill, annex)


def test_a_python_node_killed_again_while_names_move_back_loses_nothing(
    cluster: Cluster,
) -> None:
    """The Python node is killed, comes back, and is killed again while the other pods
    hand its pod's share of the names back: those it took go on from its sidecar's
    copies, and those on their way stay with their senders."""
    annex = add_annex(cluster)
    lost = cluster.pods[2]

    def kill() -> None:
        cluster.runner.kill_node(3, "python")
        wait_until(lambda: not cluster.runner.ready(lost), 30, "pod 3 not ready")
        cluster.runner.start_node(3, "python")
        with cluster.client(3) as hp:
            deadline = time.monotonic() + 60
            while hp.rpc("hp_registry_server", "info", [])[Atom("names")] < 500:
                assert time.monotonic() < deadline, "no name moved back to pod 3"
                time.sleep(0.005)
        cluster.runner.kill_node(3, "python")

    run_kill_scenario(cluster, kill, annex)


def test_a_killed_sidecar_leaves_no_orphan_and_its_pod_recovers(cluster: Cluster) -> None:
    run_kill_scenario(cluster, lambda: cluster.runner.kill_node(3, "sidecar"))
    lost = cluster.pods[2]
    # Its Python node stopped the workers it could no longer answer for.
    cluster.runner.start_node(3, "sidecar")
    wait_until(lambda: cluster.runner.ready(lost), 60, "pod 3 ready again by itself")
    with cluster.client(1) as hp:
        before = state(hp)
    wait_until(lambda: lost.sidecar_node in ring_of(cluster, 1), 30, "pod 3 back in the ring")
    with cluster.client(2) as hp:
        wait_all_answer(hp)
        rooms, where, logs = state(hp)
        assert (rooms, where, logs) == before
        registered = hp.rpc("hp_registry", "registered", [])
    # Every worker on pod 3's Python node is one the registry knows: no orphans.
    on_pod_3 = [pid for _, pid in registered if str(pid.node) == lost.python_node]
    assert workers_on(cluster, 3, 1) == len(on_pod_3)


def test_a_lookup_against_a_paused_owner_answers_unavailable(cluster: Cluster) -> None:
    with cluster.client(1) as hp:
        populate(hp, walks=100)
        # Enough rooms that the paused pod owns some.
        hp.add_rooms([f"annex_{i}" for i in range(30)])
        registered = hp.rpc("hp_registry", "registered", [])
    paused = cluster.pods[2]
    on_paused = [
        (str(kind), str(name))
        for (kind, name), pid in registered
        if str(pid.node) == paused.python_node
    ]
    person = next(name for kind, name in on_paused if kind == "person")
    room = next(name for kind, name in on_paused if kind == "room")
    sidecar_pid = cluster.runner.state().pod_states[3].sidecar_pid
    assert sidecar_pid is not None
    os.kill(sidecar_pid, signal.SIGSTOP)
    try:
        with cluster.client(1) as hp:
            for ask in (
                lambda: hp.where_is(person),
                lambda: hp.get_person_room_log(person),
                lambda: hp.who_is_in(room),
            ):
                with pytest.raises(Unavailable):
                    ask()
    finally:
        os.kill(sidecar_pid, signal.SIGCONT)
    with cluster.client(1) as hp:
        wait_all_answer(hp)
        assert hp.get_person_room_log(person)


def room_on_pod_3_and_another(cluster: Cluster, hp: Any, prefix: str) -> tuple[str, str]:
    """Of 30 new rooms, one that pod 3's Python node runs and one it does not."""
    rooms = [f"{prefix}_{i}" for i in range(30)]
    hp.add_rooms(rooms)
    on_pod_3 = {
        str(name)
        for (kind, name), pid in hp.rpc("hp_registry", "registered", [])
        if str(pid.node) == cluster.pods[2].python_node
    }
    return (
        next(room for room in rooms if room in on_pod_3),
        next(room for room in rooms if room not in on_pod_3),
    )


def person_off_pod_3(cluster: Cluster, hp: Any, prefix: str, room: str) -> str:
    """A new person, walked into ``room``, that pod 3 does not own."""
    for i in itertools.count():
        person = f"{prefix}_{i}"
        hp.walk_into(room, person)
        if owner_sidecar(cluster, hp, (Atom("person"), Atom(person))) != cluster.sidecars[2]:
            return person
    raise AssertionError("unreachable")


def test_a_room_restored_from_a_copy_that_missed_a_walk_out_lets_the_person_go(
    cluster: Cluster,
) -> None:
    """A walk answers before the old room's copy drops the person (the person holds
    where it went): restored from a copy that still lists the person, the room asks it
    and lists only those who stand in it."""
    with cluster.client(1) as hp:
        old, new = room_on_pod_3_and_another(cluster, hp, "annex")
        person = person_off_pod_3(cluster, hp, "stroller", old)

        def old_copy_lists_person() -> bool:
            held = copies(cluster, hp, (Atom("room"), Atom(old)), cluster.sidecars[:2]).values()
            return any(Atom(person) in copy[Atom("people")] for copy in held)

        # The walk in goes to the room's copies on its own, at the latest 0.2 s later.
        wait_until(old_copy_lists_person, 5, "the old room's copies list the person")
        hp.walk_into(new, person)
        # Stopped before it puts the old room's change, which no other change carries.
        python_pid = cluster.runner.state().pod_states[3].python_pid
        assert python_pid is not None
        os.kill(python_pid, signal.SIGSTOP)
        assert old_copy_lists_person()
        cluster.runner.kill_pod(3)
        assert person not in once_back(lambda: hp.who_is_in(old))
        assert hp.where_is(person) == new
        assert person in hp.who_is_in(new)


def test_a_room_restored_from_a_copy_that_missed_a_walk_in_takes_the_person_in(
    cluster: Cluster,
) -> None:
    """A walk answers before the new room's copies hold the person: the person's own copy,
    held before it walked in, links to the room. Restored from a copy without the person,
    the room finds it by that link, asks it, and lists it."""
    with cluster.client(1) as hp:
        target, lobby = room_on_pod_3_and_another(cluster, hp, "wing")
        person = person_off_pod_3(cluster, hp, "visitor", lobby)
        # The room's first change is held (a restart without any copy would not ask who
        # links to it); the person's walk in is not.
        hp.walk_into(target, "opener")
        hp.walk_into(target, person)
        # Stopped before it puts the new room's change, which no other change carries.
        python_pid = cluster.runner.state().pod_states[3].python_pid
        assert python_pid is not None
        os.kill(python_pid, signal.SIGSTOP)
        successor = copies(cluster, hp, (Atom("room"), Atom(target)), cluster.sidecars[:2])
        assert successor
        assert not any(Atom(person) in copy[Atom("people")] for copy in successor.values())
        cluster.runner.kill_pod(3)
        assert person in once_back(lambda: hp.who_is_in(target))
        assert hp.where_is(person) == target
        assert person not in hp.who_is_in(lobby)


def test_a_walk_that_fills_a_room_or_leaves_a_full_one_is_held(cluster: Cluster) -> None:
    """A room's copies hold the walk that fills it, and the one that leaves it full,
    before the walk answers: a copy is exact whenever its room was full, so a room
    restored from one never lets a person in beyond its max."""
    with cluster.client(1) as hp:
        hp.add_rooms(["snug", "porch"], max=2)

        def copied(room: str) -> list[set[str]]:
            held = copies(cluster, hp, (Atom("room"), Atom(room))).values()
            return [{str(person) for person in copy[Atom("people")]} for copy in held]

        hp.walk_into("snug", "first")
        hp.walk_into("porch", "third")
        hp.walk_into("snug", "second")
        assert copied("snug") == [{"first", "second"}] * 2
        hp.walk_into("porch", "second")
        assert copied("snug") == [{"first"}] * 2
        assert copied("porch") == [{"second", "third"}] * 2


def test_copies_follow_the_ring_through_a_graceful_stop_and_a_kill(cluster: Cluster) -> None:
    with cluster.client(1) as hp:
        populate(hp)
        before = state(hp)
    # The names whose copies pod 3 held get new successors once it has left, and those
    # it handed over take theirs with them: losing pod 2 now loses nothing either.
    cluster.runner.stop_pod(3)
    assert_kill_loses_nothing(cluster, 2, before, asked=1)


def test_copies_follow_the_ring_through_a_restart_and_a_second_kill(cluster: Cluster) -> None:
    """Pod 3 killed and started again: its names ran on pods 1 and 2 meanwhile and moved
    back, and their copies moved to the new successors. Pods 1 and 2 kept copies of names
    they neither own nor succeed any more: two sweeps of a cluster where nothing moves
    drop those, and only those. Losing another pod then loses nothing either."""
    with cluster.client(1) as hp:
        populate(hp)
    cluster.runner.kill_pod(3)
    cluster.runner.start_pod(3)
    wait_until(
        lambda: cluster.pods[2].sidecar_node in ring_of(cluster, 1), 30, "pod 3 back in the ring"
    )
    with cluster.client(2) as hp:
        wait_all_answer(hp)
        before = state(hp)
        # Rooms, and the people who walked (the others were never registered).
        names = [(Atom("room"), Atom(r)) for r in ROOMS] + [
            (Atom("person"), Atom(p)) for p, room in before[1].items() if room is not None
        ]
        ring = hp.rpc("hp_registry_store", "ring", [])
        # The owner and the successor of each name on the ring.
        holders = {
            name: sorted(n.name for n in hp.rpc("hp_ring", "key_to_nodes", [name, 2, ring]))
            for name in names
        }

        def held() -> dict[Any, list[str]]:
            return {name: sorted(copies(cluster, hp, name)) for name in names}

        wait_until(
            lambda: all(set(holders[n]) <= set(h) for n, h in held().items()),
            30,
            "copies on the holders",
        )
        strays = sum(len(set(h) - set(holders[n])) for n, h in held().items())
        assert strays > 0
        swept = total(cluster.pods, "houseparty_replica_swept_total")

        def swept_after_sweeping() -> bool:
            for sidecar in cluster.sidecars:
                hp.rpc("erlang", "send", [(Atom("hp_replica"), Atom(sidecar)), Atom("sweep")])
            return held() == holders

        wait_until(swept_after_sweeping, 60, "the stray copies swept")
        assert total(cluster.pods, "houseparty_replica_swept_total") == swept + strays
    assert_kill_loses_nothing(cluster, 1, before, asked=2)


def assert_kill_loses_nothing(
    cluster: Cluster,
    pod: int,
    before: tuple[dict[str, list[str]], dict[str, str | None], Any],
    asked: int,
) -> None:
    """Kills ``pod`` once the copies have had a moment to follow the ring: every room
    and person, asked through pod ``asked``, answers as before, and they agree."""
    time.sleep(3.0)
    cluster.runner.kill_pod(pod)
    with cluster.client(asked) as hp:
        wait_all_answer(hp)
        after = state(hp)
    assert after == before
    assert_agree(after[0], after[1])


def test_a_walk_left_under_way_is_finished_before_the_person_answers(cluster: Cluster) -> None:
    """A copy that takes over a walk under way (a merge here; a restart or a handoff alike)
    finishes it before the next request: a walk back into the room the person stood in
    before is a move of its own, logged, and ``where_is`` names the walk's room."""
    with cluster.client(1) as hp:
        hp.add_rooms(["den", "hall"], max=5)
        hp.walk_into("den", "ana")
    iex = Iex(cluster.cookie, cluster.sidecars[0])
    # The merge's state and the next request reach the person in one go, so that the
    # request is in its mailbox before the merge is handled.
    merge = (
        "pid = :hp_registry.whereis_name({:person, :ana}); "
        "GenServer.cast(pid, {:swarm, :resolve_conflict, "
        "%{log: [], intent: {System.os_time(:microsecond), :hall}}}); "
    )
    try:
        assert iex.run(merge + "GenServer.call(pid, {:walk_into, :den})") == ":ok"
        assert iex.run(merge + "GenServer.call(pid, :where_is)") == ":hall"
    finally:
        iex.close()
    with cluster.client(2) as hp:
        assert [room for _, room in reversed(hp.get_person_room_log("ana"))] == [
            "den",
            "hall",
            "den",
            "hall",
        ]
        assert hp.where_is("ana") == "hall"
        assert hp.who_is_in("hall") == ["ana"]
        assert hp.who_is_in("den") == []


def test_with_two_copies_two_pods_killed_together_lose_nothing(tmp_path: Path) -> None:
    """With ``HP_REPLICA_COPIES=2`` every name is held on all three pods: killing two at
    once leaves the third to restart all of them, state and registration alike."""
    cluster = start_cluster(tmp_path, replica_copies=2)
    try:
        with cluster.client(1) as hp:
            populate(hp)
            rooms, where, logs = state(hp)
        people = [p for p in PEOPLE if where[p] is not None]
        time.sleep(3.0)  # the copies of names registered while the ring settled
        cluster.runner.kill_pod(2)
        cluster.runner.kill_pod(3)
        with cluster.client(1) as hp:
            deadline = time.monotonic() + 60
            while True:
                try:
                    after = (
                        {room: sorted(hp.who_is_in(room)) for room in ROOMS},
                        {p: hp.where_is(p) for p in people},
                        {p: hp.get_person_room_log(p) for p in people},
                    )
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "the names did not come back"
                    time.sleep(0.5)
        assert after == (rooms, {p: where[p] for p in people}, {p: logs[p] for p in people})
    finally:
        cluster.runner.down(timeout=60)
