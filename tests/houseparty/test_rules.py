"""The seed's rules under bad input and under many concurrent clients."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import pytest

from houseparty import AsyncHouseParty, BadArgument, DestinationFull, UnknownRoom
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster
from tests.py_nodes.conftest import ErlNode


def test_bad_input_changes_nothing(cluster: Cluster) -> None:
    with cluster.client() as hp:
        hp.add_rooms(["kitchen", "den"])
        hp.walk_into("kitchen", ["kid"])
        before = hp.dump()
        with pytest.raises(UnknownRoom):
            hp.walk_into("garage", ["kid", "play"])
        with pytest.raises(BadArgument):
            hp.walk_into("den", ["play", 5])  # type: ignore[list-item]
        with pytest.raises(BadArgument):
            hp.walk_into("den", 5)  # type: ignore[arg-type]
        with pytest.raises(BadArgument):
            hp.add_rooms(["attic", ""])
        with pytest.raises(BadArgument):
            hp.add_rooms(["attic"], max=0)
        with pytest.raises(BadArgument):
            hp.set_room_max("den", -3)
        with pytest.raises(UnknownRoom):
            hp.set_room_max("garage", 3)
        assert hp.dump() == before
        assert hp.where_is("play") is None

        hp.add_rooms(["closet"], max=1)
        hp.walk_into("closet", "kid")
        with pytest.raises(DestinationFull):
            hp.walk_into("closet", "play")
        hp.add_rooms(["bathroom"], max=2)
        with pytest.raises(DestinationFull) as full:
            hp.walk_into("bathroom", ["play", "sidney", "bilal", "kid"])
        assert (full.value.room, full.value.refused) == ("bathroom", "bilal")
        assert full.value.walked_in == ["play", "sidney"]
        assert str(full.value) == (
            "bathroom is full: bilal was refused; play and sidney walked in before"
        )
        assert hp.who_is_in("bathroom") == ["play", "sidney"]
        hp.walk_into("kitchen", ["play", "sidney"])
        with pytest.raises(BadArgument, match="more than that max"):
            hp.set_room_max("kitchen", 1)
        assert hp.who_is_in("kitchen") == ["play", "sidney"]
        hp.set_room_max("closet", 2)
        hp.walk_into("closet", "play")
        assert hp.who_is_in("closet") == ["kid", "play"]
        assert hp.who_is_in("kitchen") == ["sidney"]


def test_bad_input_from_erl(cluster: Cluster) -> None:
    erl = ErlNode(cluster.cookie)
    s = cluster.sidecars[0]
    try:

        def call(expr: str) -> Any:
            return erl.eval_sync(f"rpc:call('{s}', houseparty, {expr})")

        assert str(call("add_rooms, [[kitchen]]")) == "ok"
        bad = call("walk_into, [kitchen, [kid, 42]]")
        assert bad == (Atom("error"), (Atom("bad_name"), 42))
        assert str(call("where_is, [kid]")) == "nil"
        # A name is an atom or the UTF-8 binary of one; answers name people by their atoms.
        assert str(call('walk_into, [<<"kitchen">>, [<<"play">>]]')) == "ok"
        assert call("who_is_in, [kitchen]") == [Atom("play")]
        for reserved in ("nil", '<<"nil">>', '<<"">>', "<<255>>", f'<<"{"x" * 256}">>'):
            assert call(f"walk_into, [kitchen, [{reserved}]]")[1][0] == Atom("bad_name")
        bad_rooms = call('add_rooms, [[attic, "cellar"]]')
        assert str(bad_rooms[0]) == "error"
        assert sorted(str(r) for r in call("dump, []")) == ["kitchen"]
        assert str(call("add_rooms, [[attic], #{max => 0}]")[1][0]) == "bad_max"
        assert str(call("who_is_in, [garage]")[1][0]) == "unknown_room"
        # A request a room or person does not know, sent straight to it: answered, and
        # the worker keeps its state (the same process answers).
        for key in ("{room, kitchen}", "{person, play}"):
            pid = erl.eval_sync(f"rpc:call('{s}', hp_registry, whereis_name, [{key}])")
            asked = f"rpc:call('{s}', gen_server, call, [{{via, hp_registry, {key}}}, nonsense])"
            assert erl.eval_sync(asked) == (Atom("error"), Atom("unknown_request"))
            assert erl.eval_sync(f"rpc:call('{s}', hp_registry, whereis_name, [{key}])") == pid
        assert call("who_is_in, [kitchen]") == [Atom("play")]
        assert call("where_is, [play]") == Atom("kitchen")
    finally:
        erl.stop()


def test_concurrent_random_walks_keep_the_invariants(cluster: Cluster) -> None:
    rooms = [f"room_{i}" for i in range(6)]
    people = [f"person_{i}" for i in range(30)]
    max_people = 4

    async def client(sidecar: str, seed: int, walks: int) -> tuple[int, int]:
        rng = random.Random(seed)
        done = refused = 0
        async with AsyncHouseParty(sidecar, cookie=cluster.cookie) as hp:

            async def walker() -> None:
                nonlocal done, refused
                for _ in range(walks):
                    try:
                        await hp.walk_into(rng.choice(rooms), rng.choice(people))
                        done += 1
                    except DestinationFull:
                        refused += 1

            await asyncio.gather(*(walker() for _ in range(4)))
        return done, refused

    async def scenario() -> list[tuple[int, int]]:
        async with AsyncHouseParty(cluster.sidecars[0], cookie=cluster.cookie) as hp:
            await hp.add_rooms(rooms, max=max_people)
        return await asyncio.gather(
            *(client(s, seed, 100) for seed, s in enumerate(cluster.sidecars))
        )

    results = asyncio.run(scenario())
    assert sum(d + r for d, r in results) == 3 * 4 * 100
    assert sum(r for _d, r in results) > 0, "no walk was ever refused: the rooms never filled"

    with cluster.client(2) as hp:
        dump = hp.dump()
        assert sorted(dump) == rooms
        listed: dict[str, str] = {}
        for room, inside in dump.items():
            assert len(inside) <= max_people, (room, inside)
            assert inside == sorted(inside)
            for person in inside:
                assert person not in listed, f"{person} is in {listed[person]} and {room}"
                listed[person] = room
        for person in people:
            where = hp.where_is(person)
            assert where == listed.get(person), person
            log = hp.get_person_room_log(person)
            if where is None:
                assert log == []
            else:
                assert log[0][1] == where
                # No entry repeats the room before it: walking into one's own room logs nothing.
                assert all(a[1] != b[1] for a, b in itertools.pairwise(log)), log


def test_dump_returns_while_a_room_dies(cluster: Cluster) -> None:
    rooms = [f"hall_{i}" for i in range(30)]
    with cluster.client() as hp:
        hp.add_rooms(rooms)
        hp.walk_into("hall_7", ["ann", "bo"])
        victim = hp.rpc("hp_registry", "whereis_name", [(Atom("room"), Atom("hall_7"))])

        async def dumps_while_killing() -> list[dict[str, list[str]]]:
            async with AsyncHouseParty(cluster.sidecars[1], cookie=cluster.cookie) as ahp:
                pending = [asyncio.ensure_future(ahp.dump()) for _ in range(5)]
                await asyncio.sleep(0.01)
                await ahp.rpc("erlang", "exit", [victim, Atom("kill")])
                pending += [asyncio.ensure_future(ahp.dump()) for _ in range(5)]
                return await asyncio.wait_for(asyncio.gather(*pending), 30)

        for dump in asyncio.run(dumps_while_killing()):
            assert set(dump) <= set(rooms)
            assert len(dump) >= len(rooms) - 1
        # The killed room started again, with its people, and is in the dump again.
        assert hp.who_is_in("hall_7") == ["ann", "bo"]
        assert hp.rpc("hp_registry", "whereis_name", [(Atom("room"), Atom("hall_7"))]) != victim
        deadline = time.monotonic() + 10
        while set(hp.dump()) != set(rooms):
            assert time.monotonic() < deadline, "the restarted room is not in the dump"
            time.sleep(0.1)


def test_a_person_leaves_the_live_copy_of_a_room_that_restarted(cluster: Cluster) -> None:
    """A person leaves its room by the pid it walked in by, a hint: once that copy has
    crashed and the room runs again under a new pid, the leave reaches the new copy."""
    key = (Atom("room"), Atom("porch"))
    with cluster.client() as hp:
        hp.add_rooms(["porch", "attic"])
        hp.walk_into("porch", ["cy", "dee"])
        first = hp.rpc("hp_registry", "whereis_name", [key])
        hp.rpc("erlang", "exit", [first, Atom("kill")])
        deadline = time.monotonic() + 10
        while hp.rpc("hp_registry", "whereis_name", [key]) in (first, Atom("undefined")):
            assert time.monotonic() < deadline, "the killed room did not start again"
            time.sleep(0.05)
        assert hp.who_is_in("porch") == ["cy", "dee"]
        hp.walk_into("attic", "cy")
        assert hp.who_is_in("porch") == ["dee"]
        assert hp.who_is_in("attic") == ["cy"]
        assert hp.where_is("cy") == "attic"
