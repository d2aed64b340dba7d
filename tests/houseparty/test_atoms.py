"""Names without unbounded atoms: millions of distinct names through every entry point of
the API leave a sidecar with a small atom table standing; a name becomes an atom only
when it exists or is created, and creation stops with ``too_many_names`` before the
table fills. Reads ask the other sidecars before they answer that a name is absent."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from houseparty import (
    DestinationFull,
    HouseParty,
    TooManyNames,
    Unavailable,
    UnknownRoom,
)
from houseparty.cli import main
from tests.houseparty.conftest import Cluster, cluster_with_env
from tests.py_nodes.conftest import ErlNode

#: The sidecar's atom table: small, so that names could fill it in seconds.
ATOM_LIMIT = 20_000
#: Names sent through each batch entry point, and through each single-name one.
MILLION = 1_000_000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One pod whose sidecar has an atom table of ATOM_LIMIT (ERL_FLAGS comes after the
    command line, so its +t is the one taken)."""
    with cluster_with_env(
        tmp_path_factory.mktemp("atoms"), {"ERL_FLAGS": f"+t {ATOM_LIMIT}"}, 1
    ) as c:
        yield c


@pytest.fixture(scope="module")
def erl(small: Cluster) -> Iterator[ErlNode]:
    """An erl user: hidden, so that it has no say in which atoms exist."""
    node = ErlNode(small.cookie, extra=("-hidden",))
    try:
        yield node
    finally:
        node.stop()


def on_sidecar(erl: ErlNode, cluster: Cluster, body: str, timeout: float = 300.0) -> Any:
    """Evaluates ``body`` on the sidecar, as an erl user's fun."""
    sidecar = cluster.sidecars[0]
    return erl.eval_sync(
        f"erpc:call('{sidecar}', erlang, apply, [fun() -> {body} end, []], {int(timeout * 1000)})",
        timeout,
    )


def atoms(erl: ErlNode, cluster: Cluster) -> tuple[int, int]:
    count, limit = on_sidecar(erl, cluster, "hp_names:atoms()")
    return count, limit


def refused_and_read(hp: HouseParty, names: int) -> None:
    """Each entry point of the Python client, with names no one has used (a walk into the
    full closet makes its first person: b0, the same each time; more rooms than the table
    can take are refused whole)."""
    with pytest.raises(UnknownRoom, match="unknown room: nowhere"):
        hp.walk_into("nowhere", [f"a{i}" for i in range(names)])
    with pytest.raises(DestinationFull):
        hp.walk_into("closet", [f"b{i}" for i in range(names)])
    with pytest.raises(TooManyNames):
        hp.add_rooms([f"c{i}" for i in range(max(names, ATOM_LIMIT))])
    for i in range(min(names, 2_000)):
        with pytest.raises(UnknownRoom):
            hp.who_is_in(f"d{i}")
        with pytest.raises(UnknownRoom):
            hp.set_room_max(f"e{i}", 3)
        assert hp.where_is(f"f{i}") is None
        assert hp.get_person_room_log(f"g{i}") == []


def read_from_erl(erl: ErlNode, cluster: Cluster, names: int) -> None:
    """Each single-name entry point from an erl user, with distinct binaries."""
    for call, absent in [
        ("who_is_in(N)", "{error, {unknown_room, N}}"),
        ("set_room_max(N, 3)", "{error, {unknown_room, N}}"),
        ("where_is(N)", "nil"),
        ("get_person_room_log(N)", "[]"),
        ('walk_into(N, [<<"p">>])', "{error, {unknown_room, N}}"),
    ]:
        wrong = on_sidecar(
            erl,
            cluster,
            f"""lists:foldl(fun(I, Wrong) ->
                                N = <<"zz_", (integer_to_binary(I))/binary>>,
                                case houseparty:{call} of
                                    {absent} -> Wrong;
                                    _ -> Wrong + 1
                                end
                            end, 0, lists:seq(1, {names}))""",
        )
        assert wrong == 0, call


def test_millions_of_names_leave_the_sidecar_standing(small: Cluster, erl: ErlNode) -> None:
    with small.client() as hp:
        hp.add_rooms(["hall", "closet"], max=1)
        hp.walk_into("closet", "guest")
        # Once through every path first, so that the code they load is loaded.
        refused_and_read(hp, 10)
        read_from_erl(erl, small, 10)
        start, limit = atoms(erl, small)
        assert limit == ATOM_LIMIT

        refused_and_read(hp, MILLION)
        read_from_erl(erl, small, MILLION)
        assert atoms(erl, small)[0] == start

    # New people are made until the table is 80% full, then refused by name.
    with HouseParty(small.sidecars[0], cookie=small.cookie) as hp:
        hp.set_room_max("hall", 10_000)
        made = 0
        with pytest.raises(TooManyNames, match="as many names as it can"):
            for chunk in range(0, 40_000, 1_000):
                hp.walk_into("hall", [f"n{i}" for i in range(chunk, chunk + 1_000)])
                made += 1_000
        count, _ = atoms(erl, small)
        assert count <= ATOM_LIMIT * 8 // 10
        assert made >= 1_000
        # A name that exists is still used everywhere; only new ones are refused.
        hp.walk_into("hall", "guest")
        hp.walk_into("closet", "n0")
        assert hp.where_is("n0") == "closet"
        assert hp.who_is_in("closet") == ["n0"]
        with pytest.raises(TooManyNames):
            hp.add_rooms(["attic"])
        with pytest.raises(TooManyNames):
            hp.walk_into("hall", ["someone_new"])
        assert sorted(hp.dump()) == ["closet", "hall"]
    result = CliRunner().invoke(
        main,
        ["walk", "hall", "someone_else", "--node", small.sidecars[0]],
        env={"HOUSEPARTY_COOKIE": small.cookie},
    )
    assert result.exit_code == 3, result.output
    assert "as many names as it can" in result.output
    # One more: the CLI's node name, as every node that connects.
    assert atoms(erl, small)[0] == count + 1


def test_a_name_only_another_sidecar_knows_is_found(cluster: Cluster) -> None:
    """Sidecar 1 has no atom for a name created through sidecar 2 and owned elsewhere: it
    asks the others before it answers, and a paused one makes it unavailable."""
    erl = ErlNode(cluster.cookie, extra=("-hidden",))
    try:
        first, second, third = cluster.sidecars
        # Names placed while the ring still settles move about and reach every sidecar.
        deadline = time.monotonic() + 60
        while any(
            erl.eval_sync(f"rpc:call('{s}', hp_registry_server, unsettled, [])") is not False
            for s in cluster.sidecars
        ):
            assert time.monotonic() < deadline, "the ring did not settle"
            time.sleep(0.3)
        rooms = [f"atoms_room_{i}" for i in range(40)]
        with HouseParty(second, cookie=cluster.cookie) as hp:
            hp.add_rooms(rooms)
            hp.walk_into(rooms[0], "atoms_person")

        def known(sidecar: str, names: list[str]) -> list[bool]:
            listed = ", ".join(f'<<"{n}">>' for n in names)
            return list(erl.eval_sync(f"rpc:call('{sidecar}', hp_names, known, [[{listed}]])"))

        # The person's room is not empty, so it is left out of the rooms to read.
        empty = rooms[1:]
        unseen = [r for r, k in zip(empty, known(first, empty), strict=True) if not k]
        assert unseen, "every room's atom reached sidecar 1: nothing to ask the others"
        with HouseParty(first, cookie=cluster.cookie) as hp:
            assert hp.who_is_in(unseen[0]) == []
            assert hp.where_is("atoms_person") == rooms[0]
            hp.walk_into(unseen[-1], "atoms_person")
            assert hp.where_is("atoms_person") == unseen[-1]
            with pytest.raises(UnknownRoom):
                hp.who_is_in("atoms_room_none")
        assert known(first, ["atoms_room_none"]) == [False]

        # A sidecar that cannot be asked: the name may exist there, so not "absent".
        pid = cluster.runner.state().pod_states[3].sidecar_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            with (
                HouseParty(first, cookie=cluster.cookie) as hp,
                pytest.raises(Unavailable, match=f"names_not_asked.*{third}"),
            ):
                hp.who_is_in("atoms_room_never")
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        erl.stop()
