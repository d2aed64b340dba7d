"""The ``houseparty`` CLI, as a user runs it: real subprocesses against a real local cluster,
and click's CliRunner for the error paths."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from houseparty.cli import main
from houseparty.cli._localcluster import LocalCluster
from tests.houseparty.conftest import free_base_port

CLI = [sys.executable, "-m", "houseparty.cli"]


def hp(
    *args: str, run_dir: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def node_processes(suffix: str) -> list[str]:
    """Command lines of live processes that belong to the cluster with this name suffix."""
    ps = subprocess.run(["ps", "-eww", "-o", "pid,stat,args"], capture_output=True, text=True)
    return [
        line
        for line in ps.stdout.splitlines()[1:]
        if suffix in line and " Z" not in line and "houseparty.cli" not in line
    ]


def test_up_drive_pods_and_down(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    suffix = "_cli" + secrets.token_hex(2)
    base = str(free_base_port())
    cookie = "c" + secrets.token_hex(6)
    try:
        up = hp(
            "up",
            "--pods",
            "2",
            "--detach",
            "--cookie",
            cookie,
            "--base-port",
            base,
            "--name-suffix",
            suffix,
            run_dir=run_dir,
        )
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"--remsh sidecar1{suffix}@127.0.0.1" in up.stdout
        again = hp("up", "--pods", "2", "--detach", "--base-port", base, run_dir=run_dir)
        assert again.returncode == 3  # refused
        assert "already running" in again.stderr
        assert "Traceback" not in again.stderr

        status = json.loads(hp("status", "--json", run_dir=run_dir).stdout)
        pods = status["pods"]
        assert [p["node"] for p in pods] == [f"sidecar{i}{suffix}@127.0.0.1" for i in (1, 2)]
        assert all(p["python_connected"] for p in pods)
        assert abs(sum(p["ring_share"] for p in pods) - 1.0) < 1e-9

        assert hp("add-rooms", "den", "kitchen", "--max", "2", run_dir=run_dir).returncode == 0
        assert hp("walk", "kitchen", "kid", "bilal", run_dir=run_dir).returncode == 0
        full = hp("walk", "kitchen", "play", run_dir=run_dir)
        assert full.returncode == 3 and "kitchen is full: play was refused" in full.stderr
        assert hp("add-rooms", "bathroom", "--max", "2", run_dir=run_dir).returncode == 0
        full = hp("walk", "bathroom", "play", "sidney", "bilal", "dee", run_dir=run_dir)
        assert full.returncode == 3
        refusal = "bathroom is full: bilal was refused; play and sidney walked in before"
        assert refusal in " ".join(full.stderr.split())
        assert hp("where-is", "bilal", run_dir=run_dir).stdout.strip() == "kitchen"
        assert hp("where-is", "dee", run_dir=run_dir).returncode == 4  # never walked
        assert json.loads(hp("dump", "--json", run_dir=run_dir).stdout) == {
            "bathroom": ["play", "sidney"],
            "den": [],
            "kitchen": ["bilal", "kid"],
        }
        plain = hp("dump", "--plain", "--match", "*room", "--limit", "1", run_dir=run_dir)
        assert plain.stdout == "bathroom\tplay\tsidney\n"
        assert "0 more rooms" not in plain.stderr
        assert hp("who-is-in", "kitchen", run_dir=run_dir).stdout == "bilal\nkid\n"
        empty = hp("who-is-in", "den", run_dir=run_dir)
        assert (empty.returncode, empty.stdout) == (0, "")
        assert "nobody is in den" in empty.stderr
        assert json.loads(hp("who-is-in", "kitchen", "--json", run_dir=run_dir).stdout) == [
            "bilal",
            "kid",
        ]
        assert json.loads(hp("where-is", "kid", "--json", run_dir=run_dir).stdout) == "kitchen"
        log = json.loads(hp("log", "kid", "--json", run_dir=run_dir).stdout)
        assert [e["room"] for e in log] == ["kitchen"]
        unknown = hp("who-is-in", "garage", run_dir=run_dir)
        assert unknown.returncode == 4 and "unknown room: garage" in unknown.stderr
        nobody = hp("log", "nobody", run_dir=run_dir)
        assert nobody.returncode == 4 and "nobody has walked into no room" in nobody.stderr
        long_name = hp("where-is", "x" * 300, run_dir=run_dir)
        assert long_name.returncode == 2 and "at most 255 characters" in long_name.stderr
        assert "Traceback" not in long_name.stderr

        assert hp("pod", "stop", "2", run_dir=run_dir).returncode == 0
        assert not [p for p in node_processes(suffix) if f"2{suffix}@" in p]
        again = hp("pod", "stop", "2", run_dir=run_dir)
        assert again.returncode == 4 and "pod 2 is not running" in again.stderr
        again = hp("pod", "kill", "2", run_dir=run_dir)
        assert again.returncode == 4 and "pod 2 is not running" in again.stderr
        assert len(node_processes(suffix)) == 2
        status = json.loads(hp("status", "--json", run_dir=run_dir).stdout)
        assert status["local_pods_down"] == [f"sidecar2{suffix}@127.0.0.1"]
        assert json.loads(hp("dump", "--json", run_dir=run_dir).stdout) == {
            "bathroom": ["play", "sidney"],
            "den": [],
            "kitchen": ["bilal", "kid"],
        }

        assert hp("pod", "start", "2", run_dir=run_dir).returncode == 0
        assert hp("pod", "kill", "1", run_dir=run_dir).returncode == 0
        assert not [p for p in node_processes(suffix) if f"1{suffix}@" in p]
        # Any pod of the run folder will do: pod 1 is down, pod 2 answers.
        status = json.loads(hp("status", "--json", run_dir=run_dir).stdout)
        assert [p["node"] for p in status["pods"]] == [f"sidecar2{suffix}@127.0.0.1"]
        assert status["local_pods_down"] == [f"sidecar1{suffix}@127.0.0.1"]
        absent, pod2 = "sidecar9_nobody@127.0.0.1", f"sidecar2{suffix}@127.0.0.1"
        # (The killed pod's rooms are back, restarted from their registration.)
        rooms = ["bathroom", "den", "kitchen"]
        seeds = hp("dump", "--json", "--node", absent, "--node", pod2, run_dir=run_dir)
        assert sorted(json.loads(seeds.stdout)) == rooms, seeds.stderr
        env = {**os.environ, "HOUSEPARTY_NODES": f"{absent},{pod2}"}
        by_env = hp("dump", "--json", run_dir=run_dir, env=env)
        assert sorted(json.loads(by_env.stdout)) == rooms, by_env.stderr
        assert hp("pod", "start", "1", run_dir=run_dir).returncode == 0
        after = hp("status", "--json", run_dir=run_dir)
        assert after.returncode == 0, after.stderr
        status = json.loads(after.stdout)
        assert len(status["pods"]) == 2 and status["local_pods_down"] == []
    finally:
        down = hp("down", run_dir=run_dir)
    assert down.returncode == 0, down.stderr
    assert node_processes(suffix) == []
    assert not (run_dir / "cluster.json").exists()
    assert (run_dir / "logs" / f"sidecar1{suffix}.log").stat().st_size > 0


def test_up_in_the_foreground_stops_on_ctrl_c(tmp_path: Path) -> None:
    suffix = "_fg" + secrets.token_hex(2)
    cookie = "secret" + secrets.token_hex(6)
    proc = subprocess.Popen(
        [
            *CLI,
            "up",
            "--pods",
            "2",
            "--cookie",
            cookie,
            "--name-suffix",
            suffix,
            "--base-port",
            str(free_base_port()),
            "--run-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        seen = ""
        deadline = time.monotonic() + 90
        while "Ctrl-C" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "Ctrl-C" in seen, seen
        nodes = node_processes(suffix)
        assert len(nodes) == 4, nodes  # two sidecars, two Python nodes
        assert not any(cookie in line for line in nodes), "the cookie shows in ps"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            LocalCluster(tmp_path).down(timeout=10)
    assert proc.returncode == 0, seen + rest
    assert "cluster stopped" in rest
    assert node_processes(suffix) == []


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    runner = CliRunner()
    run_dir = str(tmp_path / "nothing")

    result = runner.invoke(main, ["down", "--run-dir", run_dir])
    assert result.exit_code == 4
    assert "no local cluster is running" in result.output

    result = runner.invoke(main, ["pod", "stop", "1", "--run-dir", run_dir])
    assert result.exit_code == 4 and "no local cluster is running" in result.output

    # A run folder without a cluster is no license to guess a node of another cluster.
    result = runner.invoke(main, ["status", "--run-dir", run_dir])
    assert result.exit_code == 4
    assert "no local cluster is running" in result.output and "--node" in result.output

    # Nothing listens there: the cluster is not running, or the cookie is wrong.
    result = runner.invoke(
        main, ["dump", "--node", "sidecar9_nobody@127.0.0.1", "--cookie", "x", "--run-dir", run_dir]
    )
    assert result.exit_code == 5
    assert "cannot reach sidecar9_nobody@127.0.0.1" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)

    result = runner.invoke(main, ["walk", "kitchen", "--run-dir", run_dir])
    assert result.exit_code == 2  # click: PEOPLE is required

    result = runner.invoke(main, ["up", "--name-suffix", "bad suffix!", "--run-dir", run_dir])
    assert result.exit_code == 1 and "suffix" in result.output


def test_port_in_use(tmp_path: Path) -> None:
    base = free_base_port()
    with socket.socket() as taken:
        # As the nodes bind theirs: a connection of an earlier test's cluster may still
        # linger on that port (TIME_WAIT), which free_base_port, probing the same way,
        # counts as free.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", base + 4))  # pod 2's Python node port
        taken.listen()
        result = CliRunner().invoke(
            main, ["up", "--pods", "2", "--base-port", str(base), "--run-dir", str(tmp_path)]
        )
    assert result.exit_code == 1
    assert f"port {base + 4}" in result.output and "in use" in result.output
    assert not (tmp_path / "cluster.json").exists()


def test_stale_run_folder_is_set_aside(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = {
        "pods": 1,
        "cookie": "old",
        "base_port": 1,
        "started_at": 0.0,
        "tag": "",
        "pod_states": {"1": {"index": 1, "sidecar_pid": dead.pid, "python_pid": dead.pid}},
    }
    (run_dir / "cluster.json").write_text(json.dumps(stale))
    suffix = "_st" + secrets.token_hex(2)
    up = hp(
        "up",
        "--pods",
        "1",
        "--detach",
        "--cookie",
        "st",
        "--name-suffix",
        suffix,
        "--base-port",
        str(free_base_port()),
        run_dir=run_dir,
    )
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "stale" in up.stdout + up.stderr
        assert list(tmp_path.glob("run.stale-*/cluster.json"))
    finally:
        assert hp("down", run_dir=run_dir).returncode == 0
    assert node_processes(suffix) == []


def test_missing_erlang(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = hp("up", "--detach", run_dir=tmp_path, env=env)
    assert result.returncode == 1
    assert "erl and epmd not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_on_a_fresh_cluster(tmp_path: Path) -> None:
    suffix = "_demo" + secrets.token_hex(2)
    cookie = "demo_" + secrets.token_hex(8)
    # An elixir first on PATH that writes down its arguments, then runs the real one; its
    # lib beside it, as the sidecars find Elixir's code there.
    elixir = shutil.which("elixir")
    assert elixir is not None
    shims, seen = tmp_path / "elixir" / "bin", tmp_path / "elixir.argv"
    shims.mkdir(parents=True)
    (tmp_path / "elixir" / "lib").symlink_to(Path(os.path.realpath(elixir)).parent.parent / "lib")
    (shims / "elixir").write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{seen}'\nexec '{elixir}' \"$@\"\n"
    )
    (shims / "elixir").chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "HOUSEPARTY_COOKIE": cookie}
    demo = hp(
        "demo",
        "--name-suffix",
        suffix,
        "--base-port",
        str(free_base_port()),
        run_dir=tmp_path / "run",
        env=env,
        timeout=300,
    )
    try:
        assert demo.returncode == 0, demo.stdout + demo.stderr
        # The demo's iex steps ran through elixir, the cookie on none of its command lines.
        assert "--name" in seen.read_text()
        assert cookie not in seen.read_text()
        out = demo.stdout
        titles = (
            "1. The basic HouseParty API",
            "2. Rooms have a max",
            "3. A person keeps a log",
            "4. A graceful stop of pod 2",
        )
        for title in titles:
            assert title in out, out
        assert "%{den: [], kitchen: [:bilal], living_room: [:kid, :play, :sidney]}" in out
        assert "{:error, :destination_full}" in out
        assert "every room unchanged: yes" in out
        assert "every person's log unchanged: yes" in out
        assert "demo cluster stopped" in out
    finally:
        if node_processes(suffix):
            LocalCluster(tmp_path / "run").down(timeout=10)
    assert node_processes(suffix) == []
