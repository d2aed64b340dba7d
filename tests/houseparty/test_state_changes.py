"""A put carries a worker's changes, not its whole state: the sidecars' copies of rooms,
people and workers of your own still equal what their callers read, also after a holder
lost its copies and had to take the whole state again, and a killed pod's workers come
back with every acknowledged change."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from houseparty import HouseParty, Unavailable, Workers
from houseparty._connection import SyncClient
from houseparty._house import WALKED_PUT_S
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster
from tests.houseparty.own_cluster import own_cluster

__all__ = ["own_cluster"]  # the module's cluster fixture

T = TypeVar("T")

ROOMS = [f"changes_hall_{i}" for i in range(6)]
PEOPLE = [f"changes_visitor_{i}" for i in range(5)]
H_LOG, H_INTENT, H_PEOPLE = Atom("log"), Atom("intent"), Atom("people")
H_LINKS = Atom("hp_links")


def copies(
    cluster: Cluster, hp: SyncClient, name: Any, sidecars: list[str] | None = None
) -> dict[str, Any]:
    """Each sidecar's copy of ``name``'s state, for the sidecars (``sidecars``, else all of
    the cluster's) that hold one."""
    held = {}
    for sidecar in cluster.sidecars if sidecars is None else sidecars:
        copy = hp.rpc("rpc", "call", [Atom(sidecar), Atom("hp_replica"), Atom("lookup"), [name]])
        if copy != Atom("none"):
            held[sidecar] = copy[1]
    return held


def logged_rooms(hp: HouseParty, person: str) -> list[str]:
    return [room for _, room in reversed(hp.get_person_room_log(person))]


def copy_rooms(state: dict[Atom, Any]) -> list[str]:
    """The rooms a person's copy has it walk into: its log, then the walk under way (a
    walk's log entry is held with the person's next change; until then its intent is)."""
    walks = [*state[H_LOG], *([state[H_INTENT]] if H_INTENT in state else [])]
    return [room.name for _, room in walks]


def assert_copies_match(cluster: Cluster, hp: HouseParty) -> None:
    """Owner and successor hold each name, and their copies read as the API does."""
    for person in PEOPLE:
        held = copies(cluster, hp, (Atom("person"), Atom(person)))
        assert len(held) >= 2, (person, held)
        for sidecar, state in held.items():
            assert copy_rooms(state) == logged_rooms(hp, person), sidecar
    for room in ROOMS:
        # A walk's leave of its old room reaches the room's copies at most 0.2 s after it
        # was answered (houseparty.workers.UNHELD_PUT_S).
        deadline = time.monotonic() + 2
        while True:
            held = copies(cluster, hp, (Atom("room"), Atom(room)))
            listed = sorted(hp.who_is_in(room))
            held_lists = {s: sorted(p.name for p in st[H_PEOPLE]) for s, st in held.items()}
            if len(held) >= 2 and all(people == listed for people in held_lists.values()):
                break
            assert time.monotonic() < deadline, (room, listed, held_lists)
            time.sleep(0.1)


def restart_replica(hp: SyncClient, sidecar: str) -> None:
    """Kills ``sidecar``'s hp_replica, and with it every copy it held; waits for its
    supervisor to start it again."""
    pid = hp.rpc(
        "rpc", "call", [Atom(sidecar), Atom("erlang"), Atom("whereis"), [Atom("hp_replica")]]
    )
    hp.rpc("erlang", "exit", [pid, Atom("kill")])
    deadline = time.monotonic() + 10
    while hp.rpc(
        "rpc", "call", [Atom(sidecar), Atom("erlang"), Atom("whereis"), [Atom("hp_replica")]]
    ) in (pid, Atom("undefined")):
        assert time.monotonic() < deadline, "hp_replica did not come back"
        time.sleep(0.1)


def once_back(read: Callable[[], T]) -> T:
    """``read()`` once the names it reads answer again after their pod was killed."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return read()
        except Unavailable:
            assert time.monotonic() < deadline, "the names did not come back"
            time.sleep(0.5)


def owner_sidecar(cluster: Cluster, hp: SyncClient, name: Any) -> str:
    pid = hp.rpc("hp_registry", "whereis_name", [name])
    return next(p.sidecar_node for p in cluster.pods if p.python_node == pid.node.name)


def test_copies_follow_the_changes_and_heal_when_a_holder_lost_them(cluster: Cluster) -> None:
    with cluster.client(1) as hp:
        hp.add_rooms(ROOMS, max=50)
        rooms = itertools.cycle(ROOMS)
        for _ in range(12):
            for person in PEOPLE:
                hp.walk_into(next(rooms), person)
        assert_copies_match(cluster, hp)

        person = PEOPLE[0]
        owner = owner_sidecar(cluster, hp, (Atom("person"), Atom(person)))
        # The successors lose their copies: the owner's next changes cannot be applied
        # there, and the owner sends them its whole copy instead.
        for sidecar in cluster.sidecars:
            if sidecar != owner:
                restart_replica(hp, sidecar)
        hp.walk_into(next(rooms), person)
        successors = copies(cluster, hp, (Atom("person"), Atom(person)))
        assert set(successors) - {owner}, "no successor holds the person again"
        for state in successors.values():
            assert copy_rooms(state) == logged_rooms(hp, person)
            assert len(copy_rooms(state)) == 13

        # The owner loses its copies: the Python node's next changes cannot be applied
        # there, and the person puts its whole state; the walk is answered ok all the same.
        restart_replica(hp, owner)
        hp.walk_into(next(rooms), person)
        for state in copies(cluster, hp, (Atom("person"), Atom(person))).values():
            assert copy_rooms(state) == logged_rooms(hp, person)
            assert len(copy_rooms(state)) == 14
        expected = logged_rooms(hp, person)

    # Every copy is whole: the person's pod killed, the person restarts from one.
    pod = next(i for i, p in enumerate(cluster.pods, 1) if p.sidecar_node == owner)
    cluster.runner.kill_pod(pod)
    survivor = next(i for i in range(1, 4) if i != pod)
    with cluster.client(survivor) as hp:
        assert once_back(lambda: logged_rooms(hp, person)) == expected


def test_a_walk_done_reaches_the_copies_without_its_intent(cluster: Cluster) -> None:
    """A walk's put holds its intent; the walk itself reaches the copies soon after on its
    own, so that a person restored from one after a quiet spell does not walk again, nor
    link to the room it left."""
    person, first, second = "settled_walker", ROOMS[0], ROOMS[1]
    key = (Atom("person"), Atom(person))
    with cluster.client(1) as hp:
        hp.add_rooms(ROOMS, max=50)
        hp.walk_into(first, person)
        hp.walk_into(second, person)
        deadline = time.monotonic() + WALKED_PUT_S + 5
        while True:
            held = copies(cluster, hp, key)
            settled = [
                H_INTENT not in state
                and copy_rooms(state) == [first, second]
                and state[H_LINKS] == [(Atom("room"), Atom(second))]
                for state in held.values()
            ]
            if len(held) >= 2 and all(settled):
                break
            assert time.monotonic() < deadline, held
            time.sleep(0.2)


def test_a_long_log_is_held_in_chunks_through_a_lost_copy_and_a_kill(cluster: Cluster) -> None:
    """A person's log grows past a chunk of the sidecars' tables (256 walks): the copies
    still read as the log does, a successor that lost its copy takes the owner's whole
    one again, and the person restarts from it with every walk when its pod is killed."""
    person = PEOPLE[1]
    name = (Atom("person"), Atom(person))
    with cluster.client(1) as hp:
        hp.add_rooms(ROOMS, max=50)
        rooms = itertools.cycle(ROOMS)
        for _ in range(700):
            hp.walk_into(next(rooms), person)
        owner = owner_sidecar(cluster, hp, name)
        chunks = hp.rpc(
            "rpc", "call", [Atom(owner), Atom("hp_replica_table"), Atom("chunk_count"), []]
        )
        assert chunks >= 700 // 256
        held = copies(cluster, hp, name)
        assert len(held) >= 2
        for state in held.values():
            assert copy_rooms(state) == logged_rooms(hp, person)
        for sidecar in cluster.sidecars:
            if sidecar != owner:
                restart_replica(hp, sidecar)
        hp.walk_into(next(rooms), person)
        expected = logged_rooms(hp, person)
        assert len(expected) == 701
        held = copies(cluster, hp, name)
        assert set(held) - {owner}, "no successor holds the person again"
        for state in held.values():
            assert copy_rooms(state) == expected

    pod = next(i for i, p in enumerate(cluster.pods, 1) if p.sidecar_node == owner)
    cluster.runner.kill_pod(pod)
    survivor = next(i for i in range(1, 4) if i != pod)
    with cluster.client(survivor) as hp:
        assert once_back(lambda: logged_rooms(hp, person)) == expected
        hp.walk_into(next(rooms), person)
        assert len(logged_rooms(hp, person)) == 702


def test_a_worker_of_your_own_puts_its_changes(own_cluster: Cluster) -> None:
    """The tests' journal keeps its newest 20 lines and puts only the lines written since
    its last put (``Worker.state_changes``)."""
    names = [f"journal_{i}" for i in range(12)]
    with Workers(own_cluster.sidecars[0], cookie=own_cluster.cookie) as w:
        for name in names:
            w.register(name, "journal", 20)
        for k in range(30):
            for name in names:
                assert w.call(name, ("write", f"{name} {k}".encode())) == k + 1

        def assert_held(name: str, written: int) -> None:
            held = copies(own_cluster, w, name.encode())
            assert len(held) >= 2, held
            lines = w.call(name, "read")
            assert lines == [f"{name} {k}".encode() for k in range(written - 20, written)]
            for state in held.values():
                assert state == {b"keep": 20, b"lines": lines, b"written": written}

        for name in names:
            assert_held(name, 30)
        # Its sidecar lost every copy: the next write puts the whole journal again.
        first = names[0]
        owner = owner_sidecar(own_cluster, w, first.encode())
        restart_replica(w, owner)
        assert w.call(first, ("write", f"{first} 30".encode())) == 31
        assert_held(first, 31)

    pod = next(i for i, p in enumerate(own_cluster.pods, 1) if p.sidecar_node == owner)
    own_cluster.runner.kill_pod(pod)
    survivor = next(i for i in range(3) if i != pod - 1)
    with Workers(own_cluster.sidecars[survivor], cookie=own_cluster.cookie) as w:
        lines = once_back(lambda: [w.call(name, "read") for name in names])
        written = [31 if name == first else 30 for name in names]
        assert lines == [
            [f"{name} {k}".encode() for k in range(n - 20, n)]
            for name, n in zip(names, written, strict=True)
        ]
