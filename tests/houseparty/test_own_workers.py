"""Workers of your own on a real 3-pod cluster: registered, called, cast to and grouped from
Python and from erl, an unknown kind, a class that raises in setup, and the count per
kind that ``houseparty status`` shows."""

from __future__ import annotations

import time
from typing import Any

import pytest

from houseparty import (
    AlreadyRegistered,
    BadArgument,
    UnknownKind,
    UnknownName,
    Workers,
    WorkerStartError,
)
from py_nodes._terms import Atom, Pid
from tests.houseparty.conftest import Cluster, Iex
from tests.houseparty.own_cluster import own_cluster
from tests.py_nodes.conftest import ErlNode

__all__ = ["own_cluster"]  # the module's cluster fixture


def workers(cluster: Cluster, pod: int = 1) -> Workers:
    return Workers(cluster.pods[pod - 1].sidecar_node, cookie=cluster.cookie)


def test_register_call_cast_and_unregister_from_python(own_cluster: Cluster) -> None:
    python_nodes = {p.python_node for p in own_cluster.pods}
    with workers(own_cluster, 1) as w:
        pid = w.register("visits", "counter", 5)
        assert isinstance(pid, Pid) and pid.node.name in python_nodes
        with pytest.raises(AlreadyRegistered) as exc:
            w.register("visits", "counter", 0)
        assert exc.value.pid == pid
    with workers(own_cluster, 3) as w:
        assert w.whereis("visits") == pid
        assert w.call("visits", "incr") == 6
        assert w.call("visits", ("add", 4)) == 10
        w.cast("visits", "incr")
        assert w.call("visits", "get") == 11
        w.unregister("visits")
        assert w.whereis("visits") is None
        with pytest.raises(UnknownName):
            w.call("visits", "get")
        with pytest.raises(UnknownName):
            w.cast("visits", "incr")
        # The worker stopped with its name: registered again, it starts afresh.
        w.register("visits", "counter")
        assert w.call("visits", "get") == 0
        w.unregister("visits")


def test_groups_multi_call_and_publish_from_python(own_cluster: Cluster) -> None:
    names = [f"shard_{i}" for i in range(12)]
    with workers(own_cluster, 2) as w:
        for i, name in enumerate(names):
            w.register(name, "counter", i)
            w.join("shards", name)
        assert set(w.members("shards")) == {w.whereis(n) for n in names}
        # Spread over the pods by the ring.
        assert len({pid.node for pid in w.members("shards")}) > 1
        assert sorted(w.multi_call("shards", "get")) == list(range(12))
        w.publish("shards", ("add", 100))
        assert sorted(w.multi_call("shards", "get")) == list(range(100, 112))
        w.leave("shards", "shard_0")
        assert sorted(w.multi_call("shards", "get")) == list(range(101, 112))
        with pytest.raises(UnknownName):
            w.join("shards", "no_such_shard")
        for name in names:
            w.unregister(name)
        # The stopped workers leave their groups as their exits reach the registry.
        deadline = time.monotonic() + 10
        while w.members("shards") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.members("shards") == []


def test_an_unknown_kind_and_a_class_that_raises_get_clear_errors(own_cluster: Cluster) -> None:
    with workers(own_cluster) as w:
        with pytest.raises(UnknownKind, match="'rate_limiter'"):
            w.register("lim", "rate_limiter")
        with pytest.raises(WorkerStartError, match="ValueError: no setup today"):
            w.register("bad", "broken")
        assert w.whereis("lim") is None and w.whereis("bad") is None
        with pytest.raises(BadArgument):
            w.register("", "counter")
        with pytest.raises(BadArgument, match="HouseParty's own kind"):
            w.register("den", "room")
        with pytest.raises(BadArgument):
            w.call(42, "get")  # type: ignore[arg-type]
        # Every pod's Python node is still up and starts workers.
        for pod in own_cluster.pods:
            hp_workers = (Atom("hp_workers"), Atom(pod.python_node))
            counts = w.rpc("gen_server", "call", [hp_workers, Atom("workers")])
            assert counts[Atom("broken")] == 0
        for i in range(9):
            w.register(f"after_{i}", "counter", i)
        assert sorted(w.call(f"after_{i}", "get") for i in range(9)) == list(range(9))
        for i in range(9):
            w.unregister(f"after_{i}")


def test_register_call_cast_and_groups_from_erl(own_cluster: Cluster) -> None:
    erl = ErlNode(own_cluster.cookie)
    s = own_cluster.sidecars[1]
    try:

        def on_sidecar(m: str, f: str, args: str) -> Any:
            return erl.eval_sync(f"rpc:call('{s}', {m}, {f}, {args})")

        # As the iex guide says: the name and kind of your choice, the args of setup.
        ok, pid = on_sidecar(
            "hp_registry",
            "register_name",
            '[<<"erl_counter">>, hp_python, start_worker, [counter, <<"erl_counter">>, [3]]]',
        )
        assert ok == Atom("ok") and isinstance(pid, Pid)
        via = '{via, hp_registry, <<"erl_counter">>}'
        assert on_sidecar("gen_server", "call", f'[{via}, <<"incr">>]') == 4
        assert on_sidecar("gen_server", "cast", f'[{via}, {{<<"add">>, 6}}]') == Atom("ok")
        assert on_sidecar("gen_server", "call", f'[{via}, <<"get">>]') == 10
        assert on_sidecar("hp_registry", "join", f"[erl_group, {_pid_expr(s)}]") == Atom("ok")
        assert on_sidecar("hp_registry", "multi_call", '[erl_group, <<"get">>]') == [10]
        assert on_sidecar("hp_registry", "publish", '[erl_group, {<<"add">>, 1}]') == Atom("ok")
        assert on_sidecar("hp_python", "call_name", '[<<"erl_counter">>, <<"get">>]') == (
            Atom("reply"),
            11,
        )
        assert on_sidecar(
            "hp_registry",
            "register_name",
            '[<<"erl_bad">>, hp_python, start_worker, [nope, <<"erl_bad">>, []]]',
        ) == (Atom("error"), (Atom("unknown_kind"), Atom("nope")))
        # The same worker from Python, by the same name.
        with workers(own_cluster) as w:
            assert w.call("erl_counter", "get") == 11
            w.unregister("erl_counter")
        assert on_sidecar("hp_registry", "whereis_name", '[<<"erl_counter">>]') == Atom("undefined")
    finally:
        erl.stop()


def _pid_expr(sidecar: str) -> str:
    return f"rpc:call('{sidecar}', hp_registry, whereis_name, [<<\"erl_counter\">>])"


def test_status_counts_workers_per_kind(own_cluster: Cluster) -> None:
    with workers(own_cluster) as w:
        for i in range(6):
            w.register(f"counted_{i}", "counter")
        counts: dict[str, int] = {}
        for sidecar in own_cluster.sidecars:
            status = w.rpc(
                "erpc", "call", [Atom(sidecar), Atom("houseparty"), Atom("pod_status"), []]
            )
            for kind, n in status[Atom("workers")].items():
                counts[kind.name] = counts.get(kind.name, 0) + n
        assert counts == {
            "room": 0,
            "person": 0,
            "counter": 6,
            "broken": 0,
            "fresh": 0,
            "older_person": 0,
            "stubborn": 0,
            "journal": 0,
            "tally": 0,
            "member": 0,
        }
        for i in range(6):
            w.unregister(f"counted_{i}")


def test_register_and_call_from_iex_as_the_guide_shows(own_cluster: Cluster) -> None:
    iex = Iex(own_cluster.cookie, own_cluster.sidecars[2])
    try:
        registered = iex.run(
            ':hp_registry.register_name("visits", :hp_python, :start_worker,'
            ' [:counter, "visits", [0]])'
        )
        assert registered.startswith("{:ok, #PID<"), registered
        assert iex.run('GenServer.call({:via, :hp_registry, "visits"}, "incr")') == "1"
        assert iex.run('GenServer.cast({:via, :hp_registry, "visits"}, "incr")') == ":ok"
        assert iex.run(':hp_registry.join(:counters, :hp_registry.whereis_name("visits"))') == ":ok"
        assert iex.run(':hp_registry.multi_call(:counters, "get")') == "[2]"
        assert iex.run(':hp_python.call_name("visits", "get", %{})') == "{:reply, 2}"
        unknown = iex.run(
            ':hp_registry.register_name("x", :hp_python, :start_worker, [:nope, "x", []])'
        )
        assert unknown == "{:error, {:unknown_kind, :nope}}"
    finally:
        iex.close()
    with workers(own_cluster) as w:
        assert w.call("visits", "get") == 2
        w.unregister("visits")


def test_a_drain_moves_counters_with_their_state_and_restarts_those_that_ask(
    own_cluster: Cluster,
) -> None:
    """A drain moves each worker with its state, starts afresh those that answer Restart,
    and starts one that crashes when asked for its state from its last acknowledged one."""
    # Last in this module: it stops pod 3.
    names = [f"kept_{i}" for i in range(60)]
    fresh = [f"fresh_{i}" for i in range(30)]
    stubborn = [f"stubborn_{i}" for i in range(30)]
    leaving = Atom(own_cluster.pods[2].python_node)
    with workers(own_cluster) as w:
        for i, name in enumerate(names):
            w.register(name, "counter", i)
            w.join("kept", name)
        for i, name in enumerate(fresh):
            w.register(name, "fresh", i)
            assert w.call(name, "incr") == i + 1
        for i, name in enumerate(stubborn):
            w.register(name, "stubborn", i)
            assert w.call(name, "incr") == i + 1
        everyone = names + fresh + stubborn
        on_leaving = {n for n in everyone if w.whereis(n).node == leaving}  # type: ignore[union-attr]
        assert on_leaving & set(names) and on_leaving & set(fresh) and on_leaving & set(stubborn)
    own_cluster.runner.stop_pod(3)
    with workers(own_cluster) as w:
        assert [w.call(n, "get") for n in names] == list(range(60))
        assert all(w.whereis(n).node != leaving for n in everyone)  # type: ignore[union-attr]
        assert [w.call(n, "get") for n in stubborn] == [i + 1 for i in range(30)]
        assert sorted(w.multi_call("kept", "get")) == list(range(60))
        # Those that answered Restart started again from their args; the others kept on.
        assert [w.call(n, "get") for n in fresh] == [
            i if n in on_leaving else i + 1 for i, n in enumerate(fresh)
        ]


def test_the_room_log_of_a_person_of_an_earlier_version(own_cluster: Cluster) -> None:
    """The API asks a person for its log in microseconds and makes the DateTimes on the
    sidecar; a person that does not know that request yet is asked for its room_log."""
    erl = ErlNode(own_cluster.cookie)
    s = own_cluster.sidecars[0]
    try:
        key = "{person, older}"
        started = erl.eval_sync(
            f"rpc:call('{s}', hp_registry, register_name, "
            f"[{key}, hp_python, start_worker, [older_person, older, []]])"
        )
        assert started[0] == Atom("ok")
        log = erl.eval_sync(f"rpc:call('{s}', houseparty, get_person_room_log, [older])")
        assert [room for _, room in log] == [Atom("kitchen")]
        assert log[0][0][Atom("year")] == 2026
        erl.eval_sync(f"rpc:call('{s}', hp_registry, unregister_name, [{key}])")
    finally:
        erl.stop()
