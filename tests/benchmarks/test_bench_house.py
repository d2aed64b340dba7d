"""The walks benchmark's BEAM baseline (``benchmarks/hp_bench_house.erl``) does what a
HouseParty walk does, on a real 3-pod cluster: its rooms and people are registered on the
sidecars, a walk moves a person and logs it, a full room refuses, and the reads agree."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks._harness import BenchCluster, DriverBuild, bench_cluster
from houseparty._client import from_term
from py_nodes._terms import Atom

pytestmark = pytest.mark.skipif(shutil.which("erlc") is None, reason="Erlang/OTP is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchCluster]:
    workdir: Path = tmp_path_factory.mktemp("house")
    with bench_cluster(workdir, DriverBuild.compile(workdir)) as running:
        running.wait_settled()
        yield running


def house(cluster: BenchCluster, sidecar: int, function: str, *args: Any) -> Any:
    """hp_bench_house:Function(Args) on sidecar ``sidecar`` (0-based), as plain values."""
    return from_term(cluster.on(cluster.sidecars[sidecar], "hp_bench_house", function, list(args)))


@pytest.mark.timeout(120)
def test_a_walk_moves_the_person_logs_it_and_a_full_room_refuses(cluster: BenchCluster) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert house(cluster, 0, "add_rooms", [Atom("den"), Atom("hall")], 2) == "ok"
    # Registered in hp_registry, their processes on the sidecars themselves.
    for room in ("den", "hall"):
        pid = cluster.hp.rpc("hp_registry", "whereis_name", [(Atom("bench_room"), Atom(room))])
        assert pid.node.name in cluster.sidecars

    assert house(cluster, 0, "walk_into", Atom("den"), Atom("ann")) == "ok"
    assert house(cluster, 1, "where_is", Atom("ann")) == "den"
    assert house(cluster, 2, "who_is_in", Atom("den")) == ["ann"]
    ((when, room),) = house(cluster, 1, "get_person_room_log", Atom("ann"))
    assert room == "den"
    assert before < when <= datetime.now(UTC) + timedelta(seconds=5)

    assert house(cluster, 1, "walk_into", Atom("hall"), Atom("ann")) == "ok"
    assert house(cluster, 0, "who_is_in", Atom("den")) == []
    assert house(cluster, 0, "who_is_in", Atom("hall")) == ["ann"]
    log = house(cluster, 2, "get_person_room_log", Atom("ann"))
    assert [r for _, r in log] == ["hall", "den"]  # newest first
    assert log[0][0] >= log[1][0]

    # Walking into the room one stands in changes nothing.
    assert house(cluster, 2, "walk_into", Atom("hall"), Atom("ann")) == "ok"
    assert len(house(cluster, 0, "get_person_room_log", Atom("ann"))) == 2

    # hall holds 2: the third is refused, stays nowhere, and nothing is logged.
    assert house(cluster, 0, "walk_into", Atom("hall"), Atom("bob")) == "ok"
    assert house(cluster, 0, "walk_into", Atom("hall"), Atom("cy")) == ("error", "destination_full")
    assert house(cluster, 1, "who_is_in", Atom("hall")) == ["ann", "bob"]
    assert house(cluster, 1, "where_is", Atom("cy")) is None
    assert house(cluster, 1, "get_person_room_log", Atom("cy")) == []

    assert house(cluster, 0, "walk_into", Atom("attic"), Atom("ann")) == (
        "error",
        ("unknown_room", "attic"),
    )
    assert house(cluster, 0, "where_is", Atom("ann")) == "hall"
    assert house(cluster, 2, "where_is", Atom("nobody")) is None
    assert house(cluster, 2, "get_person_room_log", Atom("nobody")) == []
    assert house(cluster, 2, "who_is_in", Atom("attic")) == ("error", ("unknown_room", "attic"))


@pytest.mark.timeout(120)
def test_the_benchmark_loop_walks_people_and_rooms_and_people_agree(
    cluster: BenchCluster,
) -> None:
    rooms = [Atom(f"loop{i}") for i in range(1, 6)]
    assert house(cluster, 0, "add_rooms", rooms, 100) == "ok"
    assert house(cluster, 1, "add_people", "lw", 1, 40) == "ok"
    done, micros, lats, errors = house(
        cluster, 2, "run", Atom("beam"), Atom("walk"), rooms, "lw", 40, 90, 3
    )
    assert (done, errors) == (90, 0)
    assert len(lats) == 90 and micros > 0
    for read in ("who_is_in", "where_is", "room_log"):
        done, _, _, errors = house(
            cluster, 0, "run", Atom("beam"), Atom(read), rooms, "lw", 40, 30, 3
        )
        assert (done, errors) == (30, 0)
    # Every person stands in at most one room, the one that lists it, and has walked
    # there last.
    listed = {p: r.name for r in rooms for p in house(cluster, 1, "who_is_in", r)}
    for i in range(1, 41):
        person = Atom(f"lw{i}")
        where = house(cluster, i % 3, "where_is", person)
        assert listed.get(person.name) == where
        log = house(cluster, 0, "get_person_room_log", person)
        assert (log[0][1] if log else None) == where
    assert listed
