"""Durable state is the placement layer's, not rooms' and people's alone: workers of your
own that say they changed keep their state through a killed pod."""

from __future__ import annotations

from houseparty import Workers
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster
from tests.houseparty.own_cluster import own_cluster

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
