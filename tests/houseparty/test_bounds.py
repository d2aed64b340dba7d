"""Bounded sizes: a room's max has an upper limit, refused by name on every API; a room
of thousands of people takes walks in and out and lists them sorted; a person's log
keeps its newest walks up to the pod's cap, through a handoff and a pod's death."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from houseparty import (
    ROOM_MAX_LIMIT,
    BadArgument,
    DestinationFull,
    HouseParty,
    HousePartyError,
    Unavailable,
)
from houseparty.cli import main
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster, cluster_with_env
from tests.py_nodes.conftest import ErlNode

ERROR = Atom("error")


def test_a_rooms_max_has_an_upper_limit(cluster: Cluster) -> None:
    with cluster.client() as hp:
        hp.add_rooms(["hall"], max=ROOM_MAX_LIMIT)  # the limit itself is taken
        with pytest.raises(BadArgument, match=f"max must be at most {ROOM_MAX_LIMIT}"):
            hp.add_rooms(["attic"], max=ROOM_MAX_LIMIT + 1)
        with pytest.raises(BadArgument, match=f"max must be at most {ROOM_MAX_LIMIT}"):
            hp.set_room_max("hall", 10**9)
        assert sorted(hp.dump()) == ["hall"]

    erl = ErlNode(cluster.cookie)
    try:
        s = cluster.sidecars[1]

        def call(expr: str) -> Any:
            return erl.eval_sync(f"rpc:call('{s}', houseparty, {expr})")

        too_large = (ERROR, (Atom("max_too_large"), 20000, ROOM_MAX_LIMIT))
        assert call("add_rooms, [[cellar], #{max => 20000}]") == too_large
        assert call("set_room_max, [hall, 20000]") == too_large
        assert call(f"set_room_max, [hall, {ROOM_MAX_LIMIT}]") == Atom("ok")
        big = 10**30  # a bignum is refused as well, not taken as a max
        assert call(f"set_room_max, [hall, {big}]") == (
            ERROR,
            (Atom("max_too_large"), big, ROOM_MAX_LIMIT),
        )
        assert sorted(str(r) for r in call("dump, []")) == ["hall"]
    finally:
        erl.stop()

    # The CLI refuses it as a usage error, naming the range, before it connects.
    runner = CliRunner()
    for args in (["set-max", "hall", "10001"], ["add-rooms", "attic", "--max", "10001"]):
        result = runner.invoke(main, [*args, "--node", cluster.sidecars[0]])
        assert result.exit_code == 2, result.output
        assert "1<=x<=10000" in result.output
        assert "Traceback" not in result.output


def test_a_room_of_thousands_takes_walks_in_and_out(cluster: Cluster) -> None:
    people = [f"guest_{i:05d}" for i in range(3000)]
    erl = ErlNode(cluster.cookie)
    try:
        s = cluster.sidecars[0]
        assert erl.eval_sync(
            f"rpc:call('{s}', houseparty, add_rooms, [[ballroom, porch], #{{max => 3000}}])"
        ) == Atom("ok")
        # People enter in reverse order of their names: the room lists them sorted.
        walk = f"rpc:call('{s}', houseparty, walk_into, [ballroom, [{{}}]], 120000)"
        for start in range(len(people), 0, -500):
            batch = ",".join(reversed(people[max(0, start - 500) : start]))
            assert erl.eval_sync(walk.replace("{}", batch), timeout=150) == Atom("ok")
    finally:
        erl.stop()
    with cluster.client(2) as hp:
        assert hp.who_is_in("ballroom") == people
        # Full at its max: one more is refused; leaving makes room again.
        with pytest.raises(DestinationFull):
            hp.walk_into("ballroom", "late")
        hp.walk_into("porch", ["guest_01500", "guest_00000"])
        assert hp.who_is_in("porch") == ["guest_00000", "guest_01500"]
        hp.walk_into("ballroom", "late")
        inside = hp.who_is_in("ballroom")
        assert len(inside) == 2999
        assert inside == sorted([*people[1:1500], *people[1501:], "late"])
        with pytest.raises(BadArgument, match="holds 2999 people"):
            hp.set_room_max("ballroom", 2000)
        assert hp.dump()["ballroom"] == inside
    # The room's new owner after a handoff holds the same people.
    owner = _owner_pod(cluster, "room", "ballroom")
    cluster.runner.stop_pod(owner)
    alive = next(i for i in (1, 2, 3) if i != owner)
    with cluster.client(alive) as hp:
        assert hp.who_is_in("ballroom") == inside


LOG_MAX = 5


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three pods whose people keep LOG_MAX walks."""
    with cluster_with_env(
        tmp_path_factory.mktemp("capped"), {"HP_PERSON_LOG_MAX": str(LOG_MAX)}
    ) as cluster:
        yield cluster


def _owner_pod(cluster: Cluster, kind: str, name: str) -> int:
    for index in range(1, len(cluster.pods) + 1):
        try:
            with cluster.client(index) as hp:
                pid = hp.rpc("hp_registry", "whereis_name", [(Atom(kind), Atom(name))])
        except HousePartyError:  # a stopped pod: ask the next one
            continue
        nodes = [p.python_node for p in cluster.pods]
        return nodes.index(pid.node.name) + 1
    raise AssertionError(f"no pod answers for {kind} {name}")


def _log_rooms(hp: HouseParty, person: str) -> list[str]:
    # Right after a pod's death the person may be restarting from its replica.
    deadline = time.monotonic() + 60
    while True:
        try:
            return [room for _when, room in hp.get_person_room_log(person)]
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_persons_log_keeps_its_newest_walks(capped: Cluster) -> None:
    rooms = [f"room_{i}" for i in range(12)]
    with capped.client() as hp:
        hp.add_rooms(rooms)
        for room in rooms[:8]:
            hp.walk_into(room, "rover")
        # Newest first, the oldest three dropped.
        assert _log_rooms(hp, "rover") == rooms[7:2:-1]
        assert hp.where_is("rover") == "room_7"

    # A handoff carries the capped log, and the log goes on from it.
    owner = _owner_pod(capped, "person", "rover")
    capped.runner.stop_pod(owner)
    alive = [i for i in (1, 2, 3) if i != owner]
    with capped.client(alive[0]) as hp:
        assert _log_rooms(hp, "rover") == rooms[7:2:-1]
        hp.walk_into("room_8", "rover")
        assert _log_rooms(hp, "rover") == rooms[8:3:-1]

    # So does the replica a killed pod's people restart from.
    owner = _owner_pod(capped, "person", "rover")
    capped.runner.kill_pod(owner)
    survivor = next(i for i in alive if i != owner)
    with capped.client(survivor) as hp:
        assert _log_rooms(hp, "rover") == rooms[8:3:-1]
        hp.walk_into("room_9", "rover")
        assert _log_rooms(hp, "rover") == rooms[9:4:-1]
        assert hp.where_is("rover") == "room_9"


@pytest.mark.parametrize("value", ["0", "-3", "many", ""])
def test_a_pod_refuses_a_bad_log_cap_by_name(value: str) -> None:
    env = {**os.environ, "HOUSEPARTY_COOKIE": "c", "HP_PERSON_LOG_MAX": value}
    done = subprocess.run(
        [sys.executable, "-m", "houseparty.pod"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"HP_PERSON_LOG_MAX must be a number, 1 or more, got {value!r}" in done.stderr
    assert "Traceback" not in done.stderr
