"""A local cluster shows nothing beyond its user: it listens on the loopback only, keeps
its run folder to its user, and keeps the cookie off every command line; a client node
listens nowhere."""

from __future__ import annotations

import os
import re
import stat
import subprocess

from houseparty import HouseParty
from tests.houseparty.conftest import Cluster
from tests.processes import command_lines

_USERS = re.compile(r"pid=(\d+)")


def listening(pids: set[int]) -> list[tuple[str, int]]:
    """The (local address, pid) of every listening TCP socket of ``pids``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        local = fields[3]
        for pid in map(int, _USERS.findall(line)):
            if pid in pids:
                found.append((local.rsplit(":", 1)[0], pid))
    return found


def test_a_local_cluster_listens_on_the_loopback_only(cluster: Cluster) -> None:
    pids = set()
    for _spec, pod in cluster.runner.pods():
        assert pod.sidecar_pid and pod.python_pid
        pids |= {pod.sidecar_pid, pod.python_pid}
    sockets = listening(pids)
    # Each pod: the sidecar's distribution and health ports, the Python node's port.
    assert len(sockets) == 3 * len(cluster.pods), sockets
    assert {address for address, _pid in sockets} == {"127.0.0.1"}, sockets


def test_the_run_folder_and_the_command_lines_keep_the_cookie(cluster: Cluster) -> None:
    run_dir = cluster.runner.run_dir
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "cluster.json" for p in files)
    assert any(p.suffix == ".log" for p in files)
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    # Every process of the pods (each started in a session of its own), their VMs' helpers
    # and epmd.
    sessions = set()
    for _spec, pod in cluster.runner.pods():
        assert pod.sidecar_pid and pod.python_pid
        sessions |= {pod.sidecar_pid, pod.python_pid}
    processes = command_lines(sessions)
    assert sessions <= set(processes)
    argvs = list(processes.values())
    assert any("epmd" in argv for argv in argvs), processes
    helpers = [argv for argv in argvs if "erl_child_setup" in argv]
    assert len(helpers) == len(cluster.pods), processes  # one for each sidecar's VM
    for pid, argv in processes.items():
        assert cluster.cookie not in argv, f"pid {pid} shows the cookie: {argv}"


def test_a_client_node_listens_nowhere(cluster: Cluster) -> None:
    me = {os.getpid()}
    before = listening(me)
    with HouseParty(cluster.sidecars, cookie=cluster.cookie) as hp:
        hp.add_rooms(["porch"])
        assert listening(me) == before
