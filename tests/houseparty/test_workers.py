"""``hp_workers``, the batch requests of the sidecars, on a real cluster: many rooms at
once, a pod's rooms handed over in batches with their state, the exits it reports to
the registry in place of a monitor per worker, and bad requests."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from houseparty import DestinationFull
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster

ERROR = Atom("error")
ROOM = Atom("room")
UNDEFINED = Atom("undefined")


def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def _ask_workers(cluster: Cluster, pod: int, request: Any) -> Any:
    """``gen_server:call({hp_workers, PyNode}, Request)`` from the pod's own sidecar."""
    with cluster.client(pod) as hp:
        py = Atom(cluster.pods[pod - 1].python_node)
        return hp.rpc("gen_server", "call", [(Atom("hp_workers"), py), request])


def test_many_rooms_at_once_land_on_their_owners(cluster: Cluster) -> None:
    rooms = [f"hall_{i}" for i in range(3000)]
    with cluster.client() as hp:
        hp.add_rooms(rooms[:10])
        hp.walk_into("hall_3", ["ann"])
        hp.add_rooms(rooms, max=5)  # the first ten exist already: left as they are
        dump = hp.dump()
        assert set(dump) == set(rooms)
        assert dump["hall_3"] == ["ann"]
        registered = hp.rpc("hp_registry", "registered", [])
        room_nodes = [pid.node.name for (kind, _), pid in registered if kind == Atom("room")]
        rooms_by_pod = {pod.python_node: room_nodes.count(pod.python_node) for pod in cluster.pods}
        # Placement follows the ring: every pod holds a share.
        assert all(count > 300 for count in rooms_by_pod.values()), rooms_by_pod
        hp.set_room_max("hall_2999", 6)
        hp.walk_into("hall_2999", ["bo", "cy", "di", "ed", "fi", "gu"])
        assert hp.who_is_in("hall_2999") == ["bo", "cy", "di", "ed", "fi", "gu"]


def test_a_drained_pod_hands_its_rooms_over_in_batches(cluster: Cluster) -> None:
    rooms = [f"room_{i}" for i in range(2000)]
    with cluster.client() as hp:
        hp.add_rooms(rooms, max=3)
        for i in range(0, 2000, 97):
            hp.walk_into(f"room_{i}", [f"p{i}"])
        before = hp.dump()
    cluster.runner.stop_pod(3)
    with cluster.client() as hp:
        assert hp.dump() == before
        registered = hp.rpc("hp_registry", "registered", [])
        assert {pid.node.name for _, pid in registered} <= {
            cluster.pods[0].python_node,
            cluster.pods[1].python_node,
        }
        assert len(registered) == len(rooms) + len(range(0, 2000, 97))
        # The rooms kept their max through the handoff.
        hp.walk_into("room_97", ["q1", "q2"])
        assert hp.who_is_in("room_97") == ["p97", "q1", "q2"]
        with pytest.raises(DestinationFull):
            hp.walk_into("room_97", "q3")


def test_bad_batch_requests_get_errors_and_change_nothing(cluster: Cluster) -> None:
    bad_request = Atom("bad_request")
    reply = _ask_workers(cluster, 1, (Atom("start_many"), Atom("nope")))
    assert reply[0] == ERROR and reply[1][0] == bad_request
    reply = _ask_workers(cluster, 1, (Atom("start_many"), [(Atom("room"),)]))
    assert reply[0] == ERROR and reply[1][0] == bad_request
    assert _ask_workers(cluster, 1, (Atom("start_many"), [(Atom("kitchen"), Atom("x"), [])])) == [
        (ERROR, (Atom("unknown_kind"), Atom("kitchen")))
    ]
    reply = _ask_workers(cluster, 1, (Atom("begin_handoffs"), 42))
    assert reply[0] == ERROR and reply[1][0] == bad_request
    reply = _ask_workers(cluster, 1, (Atom("call_many"), 42, Atom("x")))
    assert reply[0] == ERROR and reply[1][0] == bad_request
    assert _ask_workers(cluster, 1, (Atom("call_many"), [1, Atom("x")], (Atom("dump"),))) == []
    with cluster.client() as hp:
        assert hp.dump() == {}
        assert hp.rpc("hp_registry", "registered", []) == []


def test_the_registry_forgets_workers_that_exit_and_moves_those_of_a_lost_python_node(
    cluster: Cluster,
) -> None:
    rooms = [f"den_{i}" for i in range(600)]
    py2 = cluster.pods[1].python_node
    with cluster.client() as hp:
        hp.add_rooms(rooms)
        held = {name[1].name: pid for name, pid in hp.rpc("hp_registry", "registered", [])}
        # A worker that stops: its name goes, as a DOWN would take it. A killed one is a
        # crash: it starts again, as a new process, under the same name.
        doomed = ["den_8"]
        hp.rpc("erlang", "exit", [held["den_7"], Atom("kill")])
        hp.rpc("erlang", "send", [held["den_8"], (Atom("swarm"), Atom("die"))])

        def whereis(name: str) -> Any:
            return hp.rpc("hp_registry", "whereis_name", [(ROOM, Atom(name))])

        _eventually(lambda: all(whereis(n) == UNDEFINED for n in doomed), f"{doomed} unregistered")
        _eventually(lambda: whereis("den_7") not in (UNDEFINED, held["den_7"]), "den_7 restarted")
        assert whereis("den_9") == held["den_9"]
        # The registry no longer monitors the workers one by one.
        monitors = hp.rpc(
            "erlang",
            "process_info",
            [hp.rpc("erlang", "whereis", [Atom("hp_registry_server")]), Atom("monitors")],
        )
        assert not [m for m in monitors[1] if m[1].node.name.startswith("py")], monitors

    on_py2 = {name for name, pid in held.items() if pid.node.name == py2} - set(doomed)
    assert on_py2
    pod = next(pod for spec, pod in cluster.runner.pods() if spec.index == 2)
    assert pod.python_pid is not None
    os.kill(pod.python_pid, signal.SIGKILL)
    with cluster.client() as hp:

        def where() -> dict[str, str]:
            registered = hp.rpc("hp_registry", "registered", [])
            return {name[1].name: pid.node.name for name, pid in registered}

        # Its names come back on the other pods, with their state; the exited ones stay
        # gone.
        _eventually(
            lambda: py2 not in where().values() and set(where()) == set(rooms) - set(doomed),
            "the names of the lost node back elsewhere",
        )
