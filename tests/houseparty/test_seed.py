"""The seed's two iex sessions, verbatim, and the same sessions from erl and Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from houseparty import DestinationFull, UnknownRoom
from tests.houseparty.conftest import Cluster, Iex
from tests.py_nodes.conftest import ErlNode

SESSION_1 = [
    ("HouseParty.add_rooms([:den, :living_room, :kitchen])", ":ok"),
    ("HouseParty.walk_into(:kitchen, [:kid, :bilal])", ":ok"),
    ("HouseParty.walk_into(:living_room, [:play, :sidney, :kid])", ":ok"),
    ("HouseParty.dump()", "%{den: [], kitchen: [:bilal], living_room: [:kid, :play, :sidney]}"),
    ("HouseParty.who_is_in(:kitchen)", "[:bilal]"),
    ("HouseParty.where_is(:kid)", ":living_room"),
]

PEEPS = '1..99 |> Enum.map(fn(i) -> "peep_#{i}" |> String.to_atom() end)'


def test_seed_iex_sessions(cluster: Cluster) -> None:
    iex = Iex(cluster.cookie, cluster.sidecars[0])
    try:
        for line, expected in SESSION_1:
            assert iex.run(line) == expected, line
        # The second session, typed on in the same shell. By the rules, the kitchen
        # (bilal already in it) takes nine peeps and refuses the tenth; kid is refused
        # by the full kitchen, which leaves no log entry.
        assert iex.run("HouseParty.add_rooms([:kitchen, :living_room, :bathroom])") == ":ok"
        assert iex.run(f"HouseParty.walk_into(:kitchen, {PEEPS})") == "{:error, :destination_full}"
        dump = iex.run("HouseParty.dump()")
        assert (
            iex.run(
                "v(-1) == %{bathroom: [], den: [], living_room: [:kid, :play, :sidney],"
                ' kitchen: Enum.sort([:bilal | Enum.map(1..9, &:"peep_#{&1}")])}'
            )
            == "true"
        ), dump
        assert iex.run("HouseParty.walk_into(:kitchen, :kid)") == "{:error, :destination_full}"
        for room in ("den", "bathroom", "den"):
            assert iex.run(f"HouseParty.walk_into(:{room}, :kid)") == ":ok"
        rooms = iex.run(
            "HouseParty.get_person_room_log(:kid) |> Enum.map(fn({_dt, room}) -> room end)"
        )
        assert rooms == "[:den, :bathroom, :den, :living_room, :kitchen]"
        log = iex.run("HouseParty.get_person_room_log(:kid)")
        assert log.count("~U[") == 5, log
    finally:
        iex.close()


def test_seed_from_erl(cluster: Cluster) -> None:
    erl = ErlNode(cluster.cookie)
    s = cluster.sidecars[1]
    try:

        def call(expr: str) -> Any:
            return erl.eval_sync(f"rpc:call('{s}', houseparty, {expr})")

        assert str(call("add_rooms, [[den, living_room, kitchen]]")) == "ok"
        assert str(call("walk_into, [kitchen, [kid, bilal]]")) == "ok"
        assert str(call("walk_into, [living_room, [play, sidney, kid]]")) == "ok"
        dump = erl.eval_sync(
            f"rpc:call('{s}', houseparty, dump, []) =:= "
            "#{den => [], kitchen => [bilal], living_room => [kid, play, sidney]}"
        )
        assert dump is True
        assert [str(a) for a in call("who_is_in, [kitchen]")] == ["bilal"]
        assert str(call("where_is, [kid]")) == "living_room"
        assert str(call("where_is, [nobody]")) == "nil"
        log = call("get_person_room_log, [kid]")
        assert [str(room) for _dt, room in log] == ["living_room", "kitchen"]
    finally:
        erl.stop()


def test_seed_from_python(cluster: Cluster) -> None:
    with cluster.client(3) as hp:
        hp.add_rooms(["den", "living_room", "kitchen"])
        hp.walk_into("kitchen", ["kid", "bilal"])
        hp.walk_into("living_room", ["play", "sidney", "kid"])
        assert hp.dump() == {
            "den": [],
            "kitchen": ["bilal"],
            "living_room": ["kid", "play", "sidney"],
        }
        assert hp.who_is_in("kitchen") == ["bilal"]
        assert hp.where_is("kid") == "living_room"
        assert hp.where_is("nobody") is None

        hp.add_rooms(["kitchen", "living_room", "bathroom"])
        with pytest.raises(DestinationFull):
            hp.walk_into("kitchen", [f"peep_{i}" for i in range(1, 100)])
        assert hp.who_is_in("kitchen") == sorted(["bilal"] + [f"peep_{i}" for i in range(1, 10)])
        assert hp.where_is("peep_10") is None
        with pytest.raises(DestinationFull):
            hp.walk_into("kitchen", "kid")
        for room in ("den", "bathroom", "den"):
            hp.walk_into(room, "kid")
        log = hp.get_person_room_log("kid")
        assert [room for _dt, room in log] == ["den", "bathroom", "den", "living_room", "kitchen"]
        times = [dt for dt, _room in log]
        assert times == sorted(times, reverse=True)
        now = datetime.now(UTC)
        assert all(now - timedelta(minutes=5) < dt <= now for dt in times)
        with pytest.raises(UnknownRoom, match="garage"):
            hp.walk_into("garage", "kid")
