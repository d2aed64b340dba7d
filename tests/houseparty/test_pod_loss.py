"""A pod leaves: gracefully (state moves with the processes) or killed (names come back)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from typing import Any

import pytest

from houseparty import DestinationFull, HouseParty, Unavailable
from tests.houseparty.conftest import Cluster

ROOMS = [f"room_{i}" for i in range(12)]
PEOPLE = [f"guest_{i}" for i in range(60)]


def populate(hp: HouseParty, walks: int = 300) -> None:
    rng = random.Random(7)
    hp.add_rooms(ROOMS, max=8)
    for _ in range(walks):
        with contextlib.suppress(DestinationFull):
            hp.walk_into(rng.choice(ROOMS), rng.choice(PEOPLE))


def snapshot(hp: HouseParty) -> tuple[dict[str, list[str]], dict[str, Any]]:
    return hp.dump(), {p: hp.get_person_room_log(p) for p in PEOPLE}


def placement(hp: HouseParty) -> dict[str, str]:
    """Registered name -> node of its pid."""
    registered = hp.rpc("hp_registry", "registered", [])
    return {f"{kind}:{name}": str(pid.node) for (kind, name), pid in registered}


def test_graceful_stop_keeps_every_room_and_log(cluster: Cluster) -> None:
    with cluster.client(1) as hp:
        populate(hp)
        before = snapshot(hp)
        where_before = placement(hp)
    leaving = cluster.pods[1]
    on_leaving_pod = {n for n, node in where_before.items() if node == leaving.python_node}
    assert on_leaving_pod, "pod 2 held nothing: the ring did not spread the names"

    cluster.runner.stop_pod(2)

    with cluster.client(3) as hp:
        assert snapshot(hp) == before
        where_after = placement(hp)
        assert set(where_after) == set(where_before)
        assert leaving.python_node not in set(where_after.values())
        # Life goes on in the moved rooms.
        moved_room = next(n.split(":")[1] for n in sorted(on_leaving_pod) if n.startswith("room"))
        for person in PEOPLE:
            try:
                hp.walk_into(moved_room, person)
                break
            except DestinationFull:
                continue
        assert hp.where_is(person) == moved_room


def test_killed_pod_names_come_back(cluster: Cluster) -> None:
    with cluster.client(1) as hp:
        populate(hp, walks=150)
        names_before = set(placement(hp))
    killed = cluster.pods[2]

    cluster.runner.kill_pod(3)

    with cluster.client(1) as hp:
        deadline = time.monotonic() + 30
        while True:
            where = placement(hp)
            back = set(where) == names_before and killed.python_node not in where.values()
            if back or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(where) == names_before
        assert killed.python_node not in set(where.values())
        # Every name answers from a live worker.
        for room in ROOMS:
            assert isinstance(hp.who_is_in(room), list)
        for person in PEOPLE:
            hp.get_person_room_log(person)
        assert sorted(hp.dump()) == sorted(ROOMS)


@pytest.mark.parametrize("which", ["python", "sidecar"])
def test_dump_never_leaves_out_a_room_it_could_not_ask(cluster: Cluster, which: str) -> None:
    """A pod that cannot answer (paused with SIGSTOP) makes dump answer Unavailable, not a
    listing without its rooms; once it answers again, dump lists every room again."""
    with cluster.client(1) as hp:
        populate(hp, walks=150)
        before = hp.dump()
        assert sorted(before) == sorted(ROOMS)
        # A pod whose Python node holds a room (dump asks rooms only), other than the
        # client's own.
        with_rooms = {node for name, node in placement(hp).items() if name.startswith("room:")}
        paused = [i for i in (3, 2) if cluster.pods[i - 1].python_node in with_rooms]
        assert paused, "pods 2 and 3 hold no room: the ring did not spread them"
        state = cluster.runner.state().pod_states[paused[0]]
        pid = state.python_pid if which == "python" else state.sidecar_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(Unavailable):
                hp.dump()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert hp.dump() == before
