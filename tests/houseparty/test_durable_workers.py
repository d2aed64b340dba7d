"""Durable state is the placement layer's, not rooms' and people's alone: workers of your
own that say they changed keep their state through a killed pod, and through a crash of
their own; a change whose copy was on its way to a killed pod is held elsewhere."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from houseparty import UnknownName, WorkerCrashed, Workers
from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster, cluster_with_env
from tests.houseparty.own_cluster import own_cluster, own_env
from tests.houseparty.test_durable import wait_until
from tests.houseparty.test_metrics import total
from tests.houseparty.test_state_changes import copies
from tests.py_nodes.conftest import ErlNode

__all__ = ["own_cluster"]  # the module's cluster fixture

# The counters of the relay test owned by pod 1 with their one copy on pod 3.
RELAYED = 12


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
    most 3 times in 10 s; a fourth crash ends the name, and its state copies go."""
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
            # Pod 3 is gone since the first test of the module.
            live = own_cluster.sidecars[:2]
            with own_cluster.client(1) as hp:
                wait_until(
                    lambda: not copies(own_cluster, hp, b"crashy", live),
                    10,
                    "crashy's copies went",
                )
        log = own_cluster.runner.log_path(owner.sidecar_node).read_text()
        assert log.count("crashy") >= 4, log[-2000:]
        assert "crashed 4 times in 10 s, not restarted" in log
    finally:
        erl.stop()


def test_a_change_let_go_unheld_follows_later_and_a_restart_from_a_copy_says_so(
    own_cluster: Cluster,
) -> None:
    """``changed(wait=False)`` answers before the copies hold the change: it reaches them
    with the worker's next put, or on its own a moment later. A worker restarted from a
    copy is told so; one that never was is not."""
    live = own_cluster.sidecars[:2]  # pod 3 is gone since the first test of the module
    with Workers(live[0], cookie=own_cluster.cookie) as w, own_cluster.client(1) as hp:
        w.register("tally", "tally")

        def copied() -> list[tuple[int, int, int]]:
            return sorted(set(copies(own_cluster, hp, b"tally", live).values()))

        assert w.call("tally", "incr") == (1, 0, 0)
        assert copied() == [(1, 0, 0)]
        assert w.call("tally", "note") == (1, 1, 0)
        wait_until(lambda: copied() == [(1, 1, 0)], 5, "the unheld change put on its own")
        w.call("tally", "note")
        # A held change carries the unheld one before it.
        assert w.call("tally", "incr") == (2, 2, 0)
        assert copied() == [(2, 2, 0)]
        with pytest.raises(WorkerCrashed):
            w.call("tally", "crash")
        assert w.call("tally", "get") == (2, 2, 1)


def test_a_worker_finds_the_workers_whose_copies_link_to_it(own_cluster: Cluster) -> None:
    """``state_links()`` go with every put; ``linked_from()`` finds, over every sidecar,
    the workers whose copies link to a name, and only while they do. The state a copy
    restores is the worker's own, without the links."""
    live = own_cluster.sidecars[:2]  # pod 3 is gone since the first test of the module
    with Workers(live[0], cookie=own_cluster.cookie) as w, own_cluster.client(1) as hp:
        w.register("club", "member")
        for name in ("ann", "bob", "cat"):
            w.register(name, "member", "club")
        assert w.call("ann", "join") is True
        assert w.call("bob", "join") is True
        assert w.call("club", "linked") == [b"ann", b"bob"]
        assert w.call("bob", "leave") is False
        assert w.call("club", "linked") == [b"ann"]
        held = copies(own_cluster, hp, b"ann", live)
        assert len(held) == 2
        assert all(c == {Atom("hp_links"): [b"club"], b"joined": True} for c in held.values())
        with pytest.raises(WorkerCrashed):
            w.call("ann", "crash")
        assert w.call("ann", "get") is True
        assert w.call("club", "linked") == [b"ann"]


def test_a_change_whose_sidecar_replica_store_goes_is_answered_unavailable(
    own_cluster: Cluster,
) -> None:
    """The Python node watches its sidecar's hp_replica: a change on its way when that
    process goes is answered unavailable at once, by the monitor rather than a timeout,
    and the next change is held again, carrying the one that was not acknowledged."""
    erl = ErlNode(own_cluster.cookie)
    try:
        with Workers(own_cluster.sidecars[0], cookie=own_cluster.cookie) as w:
            pid = w.register("held", "counter", 5)
            owner = next(p for p in own_cluster.pods if p.python_node == pid.node.name)
            replica = f"{{hp_replica, '{owner.sidecar_node}'}}"
            erl.eval_sync(f"sys:suspend({replica})")
            answers: list[Any] = []
            calling = threading.Thread(target=lambda: answers.append(w.call("held", "incr")))
            calling.start()
            time.sleep(0.5)
            assert not answers, "a change was acknowledged while no replica could hold it"
            erl.eval_sync(
                f"exit(rpc:call('{owner.sidecar_node}', erlang, whereis, [hp_replica]), kill)"
            )
            calling.join(timeout=30)
            [answer] = answers
            assert answer[0] == Atom("error") and answer[1][0] == Atom("unavailable"), answer
            assert b"hp_replica went" in answer[1][1], answer
            # The supervisor starts hp_replica again and the next change is held. A change
            # that is not acknowledged stays in the worker and goes with the next one.
            calls, deadline = 1, time.monotonic() + 10
            while isinstance(got := w.call("held", "incr"), tuple):
                calls += 1
                assert time.monotonic() < deadline, f"no change was held again: {got!r}"
                time.sleep(0.2)
            assert got == 5 + calls + 1
    finally:
        erl.stop()


def test_a_change_whose_successor_is_paused_or_dead_is_held_by_the_next_one(
    tmp_path: Path,
) -> None:
    """A change whose one copy is on its way to a sidecar that stays silent for a second
    (paused) goes to the sidecar that succeeds the name without it, and the changes after
    it go there straight away; once the paused sidecar is back it gets the copies it
    missed, and the changes after that again. With that turned off (``replica_silent_ms``
    of 3 s or more) such a change is answered unavailable after 3 s. When the silent
    sidecar's pod dies, the changes still on their way to it go to the next one too. The
    owner's metrics count each."""
    with cluster_with_env(tmp_path, own_env()) as cluster:
        owner, holder, lost = cluster.sidecars
        with Workers(owner, cookie=cluster.cookie) as w, cluster.client(1) as hp:
            # Counters owned by pod 1 with their one copy on pod 3: about one in six, and
            # fewer when the ring happens to give those pods smaller shares, so as many are
            # started as it takes to have RELAYED of them.
            relayed: list[str] = []
            for i in range(RELAYED * 50):
                name = f"relay_{i}"
                w.register(name, "counter", 0)
                assert w.call(name, "incr") == 1
                if w.whereis(name).node == Atom(  # type: ignore[union-attr]
                    cluster.pods[0].python_node
                ) and set(copies(cluster, hp, name.encode())) == {owner, lost}:
                    relayed.append(name)
                    if len(relayed) == RELAYED:
                        break
            assert len(relayed) == RELAYED, "pod 1 has too few counters with their copy on pod 3"
            # Until its registry has settled the new ring, pod 1 looks names up on every
            # pod, and the calls would wait for the paused one before they reached the
            # counters.
            wait_until(
                lambda: hp.rpc("hp_registry_server", "unsettled", []) not in (True, Atom("true")),
                45,
                "pod 1's registry settled",
            )
            pod_1 = [cluster.pods[0]]
            retargeted = total(pod_1, "houseparty_replica_retargeted_total")
            unavailable = total(pod_1, "houseparty_replica_unavailable_total")
            sidecar_pid = cluster.runner.state().pod_states[3].sidecar_pid
            assert sidecar_pid is not None

            first, *straight = relayed[:3]
            os.kill(sidecar_pid, signal.SIGSTOP)
            assert w.call(first, "incr") == 2
            assert copies(cluster, hp, first.encode(), [owner, holder]) == {owner: 2, holder: 2}
            assert total(pod_1, "houseparty_replica_retargeted_total") == retargeted + 1
            for name in straight:
                assert w.call(name, "incr") == 2
                assert copies(cluster, hp, name.encode(), [holder]) == {holder: 2}
            # Those went to pod 2 at once, not after waiting for pod 3.
            assert total(pod_1, "houseparty_replica_retargeted_total") == retargeted + 1
            os.kill(sidecar_pid, signal.SIGCONT)
            # Pod 3 gets the copies it missed without further changes, once pod 1 has
            # passed it over for 5 s: should pod 1 die before the next change, pod 3
            # still holds each name's newest state.
            wait_until(
                lambda: all(
                    copies(cluster, hp, n.encode(), [lost]) == {lost: 2} for n in relayed[:3]
                ),
                10,
                "pod 3 caught up on the changes it missed",
            )
            assert w.call(first, "incr") == 3
            assert copies(cluster, hp, first.encode(), [lost]) == {lost: 3}
            assert total(pod_1, "houseparty_replica_unavailable_total") == unavailable

            hp.rpc(
                "application",
                "set_env",
                [Atom("houseparty_sidecar"), Atom("replica_silent_ms"), 3000],
            )
            os.kill(sidecar_pid, signal.SIGSTOP)
            timed_out, *in_flight = relayed[3:]
            assert w.call(timed_out, "incr") == (
                Atom("error"),
                (Atom("unavailable"), (Atom("replica_timeout"), Atom(lost))),
            )
            assert total(pod_1, "houseparty_replica_unavailable_total") == unavailable + 1

            answers: dict[str, Any] = {}

            def incr(name: str) -> None:
                answers[name] = w.call(name, "incr")

            retargeted = total(pod_1, "houseparty_replica_retargeted_total")
            puts = total(pod_1, "houseparty_replica_puts_total")
            threads = [threading.Thread(target=incr, args=(name,)) for name in in_flight]
            for thread in threads:
                thread.start()
            # Every change on its way to the paused sidecar before its pod is killed.
            wait_until(
                lambda: total(pod_1, "houseparty_replica_puts_total") >= puts + len(in_flight),
                2.5,
                "the changes reached pod 1's sidecar",
            )
            assert not answers, "a change was acknowledged while its one copy could not be held"
            cluster.runner.kill_pod(3)
            for thread in threads:
                thread.join(timeout=30)
            assert answers == dict.fromkeys(in_flight, 2)
            for name in in_flight:
                held = copies(cluster, hp, name.encode(), [owner, holder])
                assert held == {owner: 2, holder: 2}, name
            assert total(pod_1, "houseparty_replica_retargeted_total") == retargeted + len(
                in_flight
            )
            assert total(pod_1, "houseparty_replica_unavailable_total") == unavailable + 1


def test_a_name_that_ends_leaves_no_copy_and_one_registered_afresh_starts_from_its_args(
    tmp_path: Path,
) -> None:
    """A name's state copies last as long as its registration. Unregistered, or stopped as
    asked, a counter's copies go from every sidecar. A counter left running unnamed
    (``stop=False``) keeps putting under its name; registered afresh, the name drops those
    copies first, so that when its owner is killed before its first change it starts again
    from its args, not from the earlier registration's state."""
    ended = [f"ended_{i}" for i in range(20)]
    again = [f"again_{i}" for i in range(30)]
    with (
        cluster_with_env(tmp_path, own_env()) as cluster,
        Workers(cluster.sidecars[0], cookie=cluster.cookie) as w,
        cluster.client(1) as hp,
    ):
        forgotten = total(cluster.pods, "houseparty_replica_forgotten_total")
        for name in ended + again:
            w.register(name, "counter", 0)
            for _ in range(5):
                w.call(name, "incr")
        assert all(len(copies(cluster, hp, n.encode())) == 2 for n in ended + again)
        for name in ended[:10]:
            w.unregister(name)
        for name in ended[10:]:
            assert w.call(name, "stop") == Atom("ok")
        wait_until(
            lambda: not any(copies(cluster, hp, n.encode()) for n in ended),
            10,
            "the ended names' copies went from every sidecar",
        )
        assert total(cluster.pods, "houseparty_replica_forgotten_total") == forgotten + 20

        pids = {name: w.whereis(name) for name in again}
        for name in again:
            w.unregister(name, stop=False)
            # Unnamed, it runs on and puts its state under its name.
            assert hp.rpc("gen_server", "call", [pids[name], b"incr"]) == 6
        assert all(set(copies(cluster, hp, n.encode()).values()) == {6} for n in again)
        for name in again:
            w.register(name, "counter", 100)
        killed = Atom(cluster.pods[2].python_node)
        on_killed = [n for n in again if w.whereis(n).node == killed]  # type: ignore[union-attr]
        assert on_killed, "pod 3 owns none of the names registered afresh"
        wait_until(
            lambda: not any(copies(cluster, hp, n.encode()) for n in again),
            10,
            "the earlier registration's copies went from every sidecar",
        )
        cluster.runner.kill_pod(3)
        assert [w.call(n, "get") for n in again] == [100] * len(again)
        assert all(w.whereis(n).node != killed for n in on_killed)  # type: ignore[union-attr]
