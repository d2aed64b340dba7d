"""A local pod half dead: its sidecar stopped as ``q().`` in a remote shell stops it, its
Python node running on alone, or its Python node crashed. Without the supervisor
(``--no-restart``), ``status`` says so and ``pod start`` restarts the pod; with it, the
dead node comes back by itself."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

from houseparty import HouseParty
from houseparty.cli._localcluster import LocalCluster
from houseparty.cli._supervisor import MAX_WAIT_S, STABLE_S, Backoff
from py_nodes._terms import Atom
from tests.houseparty.cli.test_cli import hp
from tests.houseparty.conftest import free_base_port


def pids(run_dir: Path, index: int) -> tuple[int | None, int | None]:
    pod = json.loads((run_dir / "cluster.json").read_text())["pod_states"][str(index)]
    return pod["sidecar_pid"], pod["python_pid"]


def running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def stop_from_a_remote_shell(through: str, sidecar: str, cookie: str) -> None:
    """What q(). runs in a remote shell into ``sidecar``."""
    with HouseParty(through, cookie=cookie) as client:
        client.rpc("erpc", "call", [Atom(sidecar), Atom("init"), Atom("stop"), [], 5000])


def pod_holds_names(run_dir: Path, sidecar: str) -> bool:
    pods = json.loads(hp("status", "--json", run_dir=run_dir).stdout)["pods"]
    return any(p["node"] == sidecar and p.get("names", 0) > 0 for p in pods)


def test_a_pod_whose_sidecar_stopped_shows_broken_and_pod_start_restarts_it(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    cookie = "c" + secrets.token_hex(6)
    suffix = "_brk" + secrets.token_hex(2)
    up = hp(
        *("up", "--pods", "2", "--detach", "--cookie", cookie, "--name-suffix", suffix),
        *("--base-port", str(free_base_port(2)), "--no-restart"),
        run_dir=run_dir,
    )
    cluster = LocalCluster(run_dir)
    try:
        assert up.returncode == 0, up.stderr
        assert not (run_dir / "logs" / "supervisor.log").exists()
        rooms = [f"room{i}" for i in range(40)]
        assert hp("add-rooms", *rooms, run_dir=run_dir).returncode == 0
        sidecar2 = f"sidecar2{suffix}@127.0.0.1"
        sidecar_pid, python_pid = pids(run_dir, 2)

        stop_from_a_remote_shell(f"sidecar1{suffix}@127.0.0.1", sidecar2, cookie)
        wait_until(lambda: not running(sidecar_pid))
        assert running(python_pid)

        # Wide enough for the table's cells to stay on one line.
        status = hp("status", run_dir=run_dir, env={**os.environ, "COLUMNS": "300"})
        assert status.returncode == 0, status.stderr
        assert "broken: sidecar down, python node up" in status.stdout
        as_json = json.loads(hp("status", "--json", run_dir=run_dir).stdout)
        assert as_json["local_pod_conditions"] == {
            f"sidecar1{suffix}@127.0.0.1": "up",
            sidecar2: "broken: sidecar down, python node up",
        }

        start = hp("pod", "start", "2", run_dir=run_dir)
        assert start.returncode == 0, start.stderr
        assert "pod 2 restarted (it was broken: sidecar down, python node up)" in start.stdout
        assert not running(python_pid), "the Python node left alone was not stopped"
        new_sidecar, new_python = pids(run_dir, 2)
        assert running(new_sidecar) and running(new_python)

        # The pod is back in the ring and takes its share of names again.
        wait_until(lambda: pod_holds_names(run_dir, sidecar2))
        dump = json.loads(hp("dump", "--json", run_dir=run_dir).stdout)
        assert sorted(dump) == sorted(rooms)
        again = hp("pod", "start", "2", run_dir=run_dir)
        assert again.returncode == 3 and "pod 2 is running" in again.stderr

        # The other half: the Python node crashes, the sidecar runs on.
        assert new_python is not None
        os.kill(new_python, signal.SIGKILL)
        wait_until(lambda: not running(new_python))
        status = hp("status", run_dir=run_dir, env={**os.environ, "COLUMNS": "300"})
        assert "broken: python node down, sidecar up" in status.stdout
        start = hp("pod", "start", "2", run_dir=run_dir)
        assert "pod 2 restarted (it was broken: python node down, sidecar up)" in start.stdout
        assert not running(new_sidecar)
        assert sorted(json.loads(hp("dump", "--json", run_dir=run_dir).stdout)) == sorted(rooms)
    finally:
        if cluster.is_running():
            cluster.down(timeout=60)


def test_the_supervisor_restarts_a_node_that_died_on_its_own(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cookie = "c" + secrets.token_hex(6)
    suffix = "_sup" + secrets.token_hex(2)
    up = hp(
        *("up", "--pods", "2", "--detach", "--cookie", cookie, "--name-suffix", suffix),
        *("--base-port", str(free_base_port(2))),
        run_dir=run_dir,
    )
    cluster = LocalCluster(run_dir)
    supervisor = json.loads((run_dir / "cluster.json").read_text())["supervisor_pid"]
    try:
        assert up.returncode == 0, up.stderr
        assert running(supervisor)
        rooms = [f"room{i}" for i in range(40)]
        assert hp("add-rooms", *rooms, run_dir=run_dir).returncode == 0
        sidecar2 = f"sidecar2{suffix}@127.0.0.1"
        sidecar_pid, python_pid = pids(run_dir, 2)

        stop_from_a_remote_shell(f"sidecar1{suffix}@127.0.0.1", sidecar2, cookie)
        wait_until(lambda: pids(run_dir, 2)[0] != sidecar_pid)
        assert running(pids(run_dir, 2)[0])
        # As a container restart: the Python node ran on, and takes the new sidecar.
        assert pids(run_dir, 2)[1] == python_pid and running(python_pid)
        wait_until(lambda: pod_holds_names(run_dir, sidecar2))
        status = json.loads(hp("status", "--json", run_dir=run_dir).stdout)
        assert all(p["python_connected"] for p in status["pods"])
        assert set(status["local_pod_conditions"].values()) == {"up"}

        assert python_pid is not None
        os.kill(python_pid, signal.SIGKILL)
        wait_until(lambda: pids(run_dir, 2)[1] != python_pid)
        wait_until(lambda: pod_holds_names(run_dir, sidecar2))
        assert sorted(json.loads(hp("dump", "--json", run_dir=run_dir).stdout)) == sorted(rooms)
        log = (run_dir / "logs" / "supervisor.log").read_text()
        assert "the sidecar node of pod 2" in log and "the python node of pod 2" in log

        # A pod stopped on purpose stays stopped.
        assert hp("pod", "stop", "2", run_dir=run_dir).returncode == 0
        time.sleep(3)
        assert pids(run_dir, 2) == (None, None)
        assert hp("pod", "start", "2", run_dir=run_dir).returncode == 0
        assert hp("down", run_dir=run_dir).returncode == 0
        wait_until(lambda: not running(supervisor), timeout=15)
    finally:
        if cluster.is_running():
            cluster.down(timeout=60)


def test_a_crash_loop_backs_off() -> None:
    backoff = Backoff()
    assert backoff.due(0.0)  # the first restart waits for nothing
    backoff.restarted(0.0)
    assert not backoff.due(0.5) and backoff.due(1.0)
    backoff.restarted(1.0)
    assert not backoff.due(2.5) and backoff.due(3.0)
    for _ in range(10):
        backoff.restarted(3.0)
    assert not backoff.due(3.0 + MAX_WAIT_S - 1) and backoff.due(3.0 + MAX_WAIT_S)
    # Up long enough since: no longer a crash loop.
    assert backoff.due(3.0 + STABLE_S + 1) and backoff.restarts == 0
