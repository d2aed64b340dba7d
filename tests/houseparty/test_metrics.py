"""The sidecars' ``/metrics`` on their health ports, read by Prometheus' own parser, and
``houseparty status`` (with ``--watch``), against a real local cluster."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import secrets
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from houseparty import Workers
from houseparty.cli._localcluster import PodSpec
from tests.houseparty.conftest import ANSI, Cluster, start_cluster
from tests.houseparty.own_cluster import own_cluster

__all__ = ["own_cluster"]  # the cluster fixture of the workers test

CLI = [sys.executable, "-m", "houseparty.cli"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("metrics"))
    try:
        yield cluster
    finally:
        if cluster.runner.is_running():
            cluster.runner.down(timeout=60)


def scrape(pod: PodSpec) -> dict[str, float]:
    """Every sample of the pod's sidecar, keyed ``name{label="value",...}`` (labels sorted)
    as Prometheus' parser reads them; the content type checked on the way."""
    url = f"http://127.0.0.1:{pod.health_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def total(pods: list[PodSpec], key: str) -> float:
    """``key`` summed over the pods' sidecars (0 where a sidecar has no such sample)."""
    return sum(scrape(pod).get(key, 0.0) for pod in pods)


def test_metrics_count_what_users_did(shared: Cluster) -> None:
    pods = shared.pods
    registrations_before = total(pods, "houseparty_registrations_total")
    walks_before = total(pods, 'houseparty_api_call_duration_seconds_count{call="walk_into"}')
    puts_before = total(pods, "houseparty_replica_puts_total")
    unavailable_before = total(pods, "houseparty_replica_unavailable_total")
    rooms = [f"m{secrets.token_hex(3)}_{i}" for i in range(30)]
    people = [f"p{secrets.token_hex(3)}_{i}" for i in range(7)]
    with shared.client() as hp:
        hp.add_rooms(rooms)
        for i, person in enumerate(people):
            hp.walk_into(rooms[i], person)

    assert total(pods, 'houseparty_names{kind="room"}') == len(rooms)
    assert total(pods, 'houseparty_names{kind="person"}') == len(people)
    # The Python nodes run what the sidecars hold.
    assert total(pods, 'houseparty_python_workers{kind="room"}') == len(rooms)
    registrations = total(pods, "houseparty_registrations_total") - registrations_before
    assert registrations == len(rooms) + len(people)
    walks = total(pods, 'houseparty_api_call_duration_seconds_count{call="walk_into"}')
    assert walks - walks_before == len(people)
    # Each walk put the person's intent and the room's new people.
    assert total(pods, "houseparty_replica_puts_total") - puts_before >= 2 * len(people)
    assert total(pods, "houseparty_replica_unavailable_total") == unavailable_before
    for pod in pods:
        m = scrape(pod)
        assert m["houseparty_ring_nodes"] == 3
        assert m["houseparty_python_connected"] == 1
        assert m['houseparty_beam_memory_bytes{type="total"}'] > 0
        assert m["houseparty_python_memory_bytes"] > 0
        assert m['houseparty_build_info{version="0.1.0"}'] == 1
        # A histogram's buckets are cumulative and end with every observation.
        inf = m['houseparty_api_call_duration_seconds_bucket{call="walk_into",le="+Inf"}']
        assert inf == m['houseparty_api_call_duration_seconds_count{call="walk_into"}']
        assert m['houseparty_api_call_duration_seconds_bucket{call="walk_into",le="0.001"}'] <= inf


def test_names_of_own_workers_are_counted_by_their_kind(own_cluster: Cluster) -> None:
    pods = own_cluster.pods
    before = total(pods, 'houseparty_names{kind="counter"}')
    names = [f"mc{secrets.token_hex(3)}_{i}" for i in range(5)]
    with Workers(pods[0].sidecar_node, cookie=own_cluster.cookie) as workers:
        for name in names:
            workers.register(name, "counter", 0)
        assert total(pods, 'houseparty_names{kind="counter"}') - before == len(names)
        assert total(pods, 'houseparty_python_workers{kind="counter"}') >= len(names)
        for name in names:
            workers.unregister(name)
    assert total(pods, 'houseparty_names{kind="counter"}') == before


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
            if done:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    raise TimeoutError(f"process {pid} still runs")


def test_a_leave_and_a_loss_count_the_names_moved_and_restarted(cluster: Cluster) -> None:
    """SIGTERM to a pod's Python node, the first step of a graceful pod stop, drains the pod
    through its sidecar, which stays up to tell what moved. Then a pod is killed: its names
    restart on the one left."""
    rooms = [f"h{i}" for i in range(60)]
    with cluster.client() as hp:
        hp.add_rooms(rooms)
    leaving, staying = cluster.pods[2], cluster.pods[:2]
    held = total([leaving], 'houseparty_names{kind="room"}')
    assert held > 0
    received_before = total(staying, "houseparty_handoff_received_total")
    python_pid = next(p.python_pid for s, p in cluster.runner.pods() if s.index == 3)
    assert python_pid is not None
    os.kill(python_pid, signal.SIGTERM)
    _wait_gone(python_pid, 60)

    m = scrape(leaving)
    assert m["houseparty_handoff_moved_total"] == held
    assert m['houseparty_handoff_duration_seconds_count{reason="drain"}'] >= 1
    deadline = time.monotonic() + 10  # the sidecar sees the connection close
    while scrape(leaving)["houseparty_python_connected"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert sum(v for k, v in m.items() if k.startswith("houseparty_names{")) == 0
    assert total(staying, "houseparty_handoff_received_total") - received_before == held
    assert total(staying, 'houseparty_names{kind="room"}') == len(rooms)

    cluster.runner.stop_pod(3)
    lost = total([cluster.pods[1]], 'houseparty_names{kind="room"}')
    assert lost > 0
    survivor = cluster.pods[0]
    restarts_before = total([survivor], "houseparty_restarts_total")
    cluster.runner.kill_pod(2)
    deadline = time.monotonic() + 60
    while total([survivor], 'houseparty_names{kind="room"}') < len(rooms):
        assert time.monotonic() < deadline, scrape(survivor)
        time.sleep(0.2)
    assert total([survivor], "houseparty_restarts_total") - restarts_before == lost
    assert total([survivor], "houseparty_ring_nodes") == 1


def _status(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "status", *args, "--run-dir", str(cluster.runner.run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_status_shows_ports_uptime_version_rooms_and_people(shared: Cluster) -> None:
    as_json = _status(shared, "--json")
    assert as_json.returncode == 0, as_json.stderr
    pods = {p["node"]: p for p in json.loads(as_json.stdout)["pods"]}
    table = _status(shared)
    assert table.returncode == 0, table.stderr
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│" in line}
    for spec in shared.pods:
        m = scrape(spec)
        pod = pods[spec.sidecar_node]
        assert pod["health_port"] == spec.health_port
        assert pod["version"] == "0.1.0"
        assert pod["uptime_s"] >= m["houseparty_uptime_seconds"] - 1
        assert pod["kinds"].get("room", 0) == m.get('houseparty_names{kind="room"}', 0)
        cells = [c.strip() for c in rows[spec.sidecar_node].split("│")[1:-1]]
        assert cells[1] == spec.python_node
        assert cells[2] == str(spec.health_port)
        assert re.fullmatch(r"\d+s|\d+m\d\ds|\d+h\d\dm", cells[3]), cells[3]
        assert cells[4] == "0.1.0"
        assert cells[5] == str(pod["kinds"].get("room", 0))
        assert cells[6] == str(pod["kinds"].get("person", 0))


def _refreshes(fd: int, want: int, timeout: float = 60) -> bytes:
    """What the watch wrote on ``fd`` until it showed ``want`` refreshes (told apart by
    their times, one a second)."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 1.0)[0]:
            out += os.read(fd, 65536)
            stamps = set(re.findall(r"updated (\d\d:\d\d:\d\d)", ANSI.sub("", out.decode())))
            if len(stamps) >= want:
                return out
    raise AssertionError(f"fewer than {want} refreshes: {out.decode(errors='replace')}")


def _rest(fd: int) -> bytes:
    out = b""
    with contextlib.suppress(OSError):
        while select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out


def _ctrl_c_as_in_a_terminal() -> None:
    # Ctrl-C reaches a terminal's foreground process with SIGINT's default action. The
    # tests may themselves run with SIGINT ignored (an asynchronous command of a shell
    # without job control), which a child inherits, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_status_watch_refreshes_until_ctrl_c(shared: Cluster) -> None:
    """In a terminal, as a person runs it: refreshes, then Ctrl-C leaves with exit 0."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    proc = subprocess.Popen(
        [*CLI, "status", "--watch", "--interval", "0.5", "--run-dir", str(shared.runner.run_dir)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm"},
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    os.close(slave)
    try:
        out = _refreshes(master, 2)
        proc.send_signal(signal.SIGINT)
        # Read on while it leaves: its last refresh may not fit in the terminal's buffer.
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            out += _rest(master)
        assert proc.wait(1) == 0
        out += _rest(master)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    text = ANSI.sub("", out.decode(errors="replace"))
    assert "Traceback" not in text
    assert shared.pods[0].sidecar_node in text and "HouseParty cluster" in text


def test_status_watch_into_a_pipe_prints_each_refresh(shared: Cluster) -> None:
    proc = subprocess.Popen(
        [*CLI, "status", "--watch", "--interval", "0.5", "--run-dir", str(shared.runner.run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "250"},
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    assert proc.stdout is not None
    try:
        out = _refreshes(proc.stdout.fileno(), 2)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = (out + rest).decode()
    assert proc.returncode == 0, err
    assert text.count("HouseParty cluster") >= 2
    assert "Traceback" not in text + err.decode()


def test_the_readme_documents_every_metric(shared: Cluster) -> None:
    url = f"http://127.0.0.1:{shared.pods[0].health_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        served = {f.name for f in text_string_to_metric_families(response.read().decode())}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `(houseparty_\w+)", readme, flags=re.M))
    # The parser names a counter family without its _total.
    assert {n.removesuffix("_total") for n in documented} == served
