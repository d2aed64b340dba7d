"""The pod simulator against real erl nodes: each pod a network namespace with its own
IP and epmd, a client node on the bridge address in the root namespace."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sim import (
    ErlShell,
    Pod,
    PodCluster,
    erl_argv,
    namespaces,
    reap_orphans,
    unavailable_reason,
)
from tests.sim._netns import _alive, _links

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("erl") is None, reason="erl is not installed")
TICK = 4  # net_ticktime of every node here: a cut pod is noticed in 4..5 s
MakeCluster = Callable[[int], PodCluster]


def sidecar(pod: Pod) -> str:
    return f"sidecar@{pod.ip}"


def start_sidecars(cluster: PodCluster, cookie: str) -> None:
    for pod in cluster.pods:
        cluster.run(pod, erl_argv(sidecar(pod), cookie, net_ticktime=TICK))


def start_client(cluster: PodCluster, cookie: str) -> ErlShell:
    argv = erl_argv(
        f"client{cluster.run_id}@{cluster.bridge_ip}",
        cookie,
        listen_ip=cluster.bridge_ip,
        net_ticktime=TICK,
        shell=True,
    )
    # Should this node have to start the root namespace's epmd, keep it on loopback.
    client = ErlShell(cluster.run_host(argv, env={"ERL_EPMD_ADDRESS": "127.0.0.1"}, pipe=True))
    client.wait_started()
    return client


def leftovers(cluster: PodCluster, pids: set[int]) -> list[str]:
    left = [f"namespace {ns}" for ns in namespaces() if ns.startswith(f"hp{cluster.run_id}")]
    left += [f"link {link}" for link in _links() if link.startswith(f"hp{cluster.run_id}")]
    left += [f"pid {pid}" for pid in pids if _alive(pid)]  # zombies are gone enough
    return left


def test_pods_are_namespaces_with_their_own_address(pod_cluster: MakeCluster) -> None:
    cluster = pod_cluster(3)
    assert {p.namespace for p in cluster.pods} <= namespaces()
    third = cluster.bridge_ip.split(".")[2]
    assert cluster.bridge_ip == f"10.213.{third}.1"
    for i, pod in enumerate(cluster.pods):
        assert pod.namespace == f"hp{cluster.run_id}-pod{i}"
        assert pod.ip == f"10.213.{third}.{10 + i}"
        addrs = cluster.exec(pod, ["ip", "-4", "-o", "addr", "show"]).stdout
        assert f"inet {pod.ip}/24" in addrs
        assert "inet 127.0.0.1/8" in addrs  # loopback is up
        routes = cluster.exec(pod, ["ip", "-4", "route", "show"]).stdout
        assert "default" not in routes  # nothing leaves the cluster's /24


def test_two_clusters_do_not_clash(pod_cluster: MakeCluster) -> None:
    first, second = pod_cluster(1), pod_cluster(1)
    assert first.run_id != second.run_id
    assert first.bridge_ip != second.bridge_ip
    assert first.pods[0].namespace != second.pods[0].namespace


def test_each_pod_has_its_own_epmd(pod_cluster: MakeCluster) -> None:
    cluster = pod_cluster(2)
    cookie = secrets.token_hex(8)
    start_sidecars(cluster, cookie)
    client = start_client(cluster, cookie)
    for pod in cluster.pods:  # the nodes are up once they answer
        client.ping_until(sidecar(pod), "pong", within=30)
    for pod in cluster.pods:
        names = cluster.exec(pod, ["epmd", "-names"]).stdout
        assert "name sidecar at port" in names
        assert names.count("name ") == 1  # only this pod's node


def test_a_client_on_the_bridge_sees_cuts_heals_and_kills(pod_cluster: MakeCluster) -> None:
    cluster = pod_cluster(3)
    cookie = secrets.token_hex(8)
    start_sidecars(cluster, cookie)
    client = start_client(cluster, cookie)
    for pod in cluster.pods:
        client.ping_until(sidecar(pod), "pong", within=30)

    cut, *others = cluster.pods
    cluster.cut(cut)
    took = client.ping_until(sidecar(cut), "pang", within=3 * TICK)
    assert took < 3 * TICK
    for pod in others:
        assert client.ping(sidecar(pod)) == "pong"

    cluster.heal(cut)
    client.ping_until(sidecar(cut), "pong", within=30)

    victim = others[0]
    [proc] = cluster.processes(victim)[1:]  # [epmd, erl]
    cluster.kill(victim)
    assert not proc.alive()
    assert proc.popen.returncode == -signal.SIGKILL
    assert cluster.namespace_pids(victim) == set()
    assert client.ping(sidecar(victim)) == "pang"
    assert client.ping(sidecar(cut)) == "pong"


def test_pods_reach_each_other_over_the_bridge(pod_cluster: MakeCluster) -> None:
    cluster = pod_cluster(2)
    cookie = secrets.token_hex(8)
    start_sidecars(cluster, cookie)
    a, b = cluster.pods
    probe = cluster.run(
        a,
        erl_argv(
            f"probe@{a.ip}",
            cookie,
            net_ticktime=TICK,
            extra=("-eval", f"io:format(\"~p~n\", [net_adm:ping('{sidecar(b)}')]), halt()."),
        ),
    )
    deadline = time.monotonic() + 30
    while "pong" not in probe.output() and time.monotonic() < deadline:
        if not probe.alive():  # the sidecar may not be registered yet: ask again
            probe = cluster.run(a, list(probe.argv))
        time.sleep(0.3)
    assert "pong" in probe.output()


def test_stop_terms_the_pods_processes_and_waits(pod_cluster: MakeCluster) -> None:
    cluster = pod_cluster(1)
    cookie = secrets.token_hex(8)
    start_sidecars(cluster, cookie)
    client = start_client(cluster, cookie)
    client.ping_until(sidecar(cluster.pods[0]), "pong", within=30)
    [epmd, erl] = cluster.processes(0)
    status = cluster.stop(0, timeout=30)
    # The BEAM turns SIGTERM into init:stop() and exits cleanly.
    assert status == {erl.pid: 0}
    assert not erl.alive()
    assert epmd.alive()  # the pod's epmd is the pod's, not the process's
    assert cluster.namespace_pids(0) == {epmd.pid}


def test_teardown_leaves_no_namespace_link_or_process(pod_cluster: MakeCluster) -> None:
    cluster = pod_cluster(3)
    cookie = secrets.token_hex(8)
    start_sidecars(cluster, cookie)
    client = start_client(cluster, cookie)
    client.ping_until(sidecar(cluster.pods[0]), "pong", within=30)
    cluster.cut(1)  # a cut link must not keep anything alive
    tracked = {p.pid for pod in [None, *cluster.pods] for p in cluster.processes(pod)}
    assert len(tracked) == 7  # the client, and epmd and erl in each pod
    pids = tracked | {pid for pod in cluster.pods for pid in cluster.namespace_pids(pod)}
    assert len(pids) > 7  # and what erl starts (erl_child_setup)
    assert leftovers(cluster, set())
    cluster.teardown()
    assert leftovers(cluster, pids) == []
    assert cluster.bridge not in _links()
    cluster.teardown()  # idempotent


def test_teardown_runs_when_the_test_body_raises() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"pod simulator: {reason}")
    with pytest.raises(ZeroDivisionError), PodCluster(1) as cluster:
        proc = cluster.run(0, ["sleep", "600"])
        pids = cluster.namespace_pids(0)
        assert proc.pid in pids
        _ = 1 / 0
    assert leftovers(cluster, pids) == []


def test_a_dead_runs_leftovers_are_reaped() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"pod simulator: {reason}")
    # A run killed by SIGKILL gets no teardown, no atexit: only its state file remains.
    script = textwrap.dedent("""
        import os, signal, sys
        from tests.sim import PodCluster
        cluster = PodCluster(2)
        for pod in cluster.pods:
            cluster.run(pod, ["sleep", "600"])
        print(cluster.run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_id = done.stdout.strip()
    assert {f"hp{run_id}-pod0", f"hp{run_id}-pod1"} <= namespaces()
    assert run_id in reap_orphans()
    assert not [ns for ns in namespaces() if ns.startswith(f"hp{run_id}")]
    assert not [link for link in _links() if link.startswith(f"hp{run_id}")]
