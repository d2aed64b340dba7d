"""Durable state is the placement layer's, not rooms' and people's alone: workers of your
own that say they changed keep their state through a killed pod, and through a crash of
their own."""

from __future__ import annotations

import time

import pytest

from houseparty import UnknownName, WorkerCrashed, Workers
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster
from tests.houseparty.own_cluster import own_cluster
from tests.houseparty.test_metrics import total
from tests.py_nodes.conftest import ErlNode

__all__ = ["own_cluster"]  # the module's cluster fixture


def test_counters_keep_every_acknowledged_increment_through_a_kill(own_cluster: Cluster) -> None:
    names = [f"durable_{i}" for i in range(60)]
    killed = Atom(own_cluster.pods[2].python_node)
    with Workers(own_cluster.pods[0].sidecar_node, cookie=own_cluster.cookie) as w:
        for i, name in enumerate(names):
            w.register(name, "counter", i)
            assert w.call(name, ("add", 100)) == i + 100
            assert w.call(name, "incr") == i + 101
        on_killed = {n for n in names if w.whereis(n).node == killed}  # type: ignore[union-attr]
    assert on_killed, "pod 3 held no counter"
    own_cluster.runner.kill_pod(3)
    with Workers(own_cluster.pods[1].sidecar_node, cookie=own_cluster.cookie) as w:
        assert [w.call(n, "get") for n in names] == [i + 101 for i in range(len(names))]
        assert all(w.whereis(n).node != killed for n in names)  # type: ignore[union-attr]


def test_a_crashed_worker_restarts_with_its_acknowledged_state(own_cluster: Cluster) -> None:
    """A handler that raises, or a kill, ends the worker's process: it starts again on the
    same pod with the state of its last acknowledged change, its name and its groups, at
    most 3 times in 10 s; a fourth crash ends the name."""
    erl = ErlNode(own_cluster.cookie)
    sidecar = own_cluster.sidecars[0]
    try:
        with Workers(sidecar, cookie=own_cluster.cookie) as w:
            first = w.register("crashy", "counter", 0)
            owner = next(p for p in own_cluster.pods if p.python_node == first.node.name)
            restarts_before = total([owner], "houseparty_crash_restarts_total")
            w.join("crashers", "crashy")
            for _ in range(5):
                w.call("crashy", "incr")
            pids = [first]
            for crash in range(3):
                if crash == 1:
                    # Killed from erl rather than raising: a crash all the same.
                    erl.eval_sync(
                        f"rpc:call('{sidecar}', erlang, exit, "
                        f"[rpc:call('{sidecar}', hp_registry, whereis_name, "
                        f'[<<"crashy">>]), kill])'
                    )
                else:
                    with pytest.raises(WorkerCrashed, match="asked to crash at 5"):
                        w.call("crashy", "crash")
                # A call by name waits for the restart.
                assert w.call("crashy", "get") == 5
                pid = w.whereis("crashy")
                assert pid is not None and pid not in pids
                assert pid.node == first.node
                assert w.members("crashers") == [pid]
                pids.append(pid)
            assert total([owner], "houseparty_crash_restarts_total") == restarts_before + 3
            with pytest.raises(WorkerCrashed, match="asked to crash at 5"):
                w.call("crashy", "crash")
            # The fourth crash within 10 s: the name ends, and so does its group.
            deadline = time.monotonic() + 10
            while w.whereis("crashy") is not None:
                assert time.monotonic() < deadline, "the name outlived its fourth crash"
                time.sleep(0.1)
            with pytest.raises(UnknownName):
                w.call("crashy", "get")
            assert w.members("crashers") == []
        log = own_cluster.runner.log_path(owner.sidecar_node).read_text()
        assert log.count("crashy") >= 4, log[-2000:]
        assert "crashed 4 times in 10 s, not restarted" in log
    finally:
        erl.stop()
