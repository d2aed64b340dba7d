"""``houseparty up --worker``: worker classes of your own for a local cluster's pods, named
by import path, and ``houseparty status`` counting the workers per kind."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from houseparty import Workers
from houseparty.cli._localcluster import LocalCluster
from tests.houseparty.conftest import free_base_port

CLI = [sys.executable, "-m", "houseparty.cli"]
REPO = Path(__file__).resolve().parents[2]


def hp(*args: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    """The CLI run from the checkout, where the tests' worker classes can be imported."""
    return subprocess.run(
        [*CLI, *args, "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_up_with_a_worker_class_and_status_per_kind(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cookie = "c" + secrets.token_hex(6)
    up = hp(
        "up",
        "--pods",
        "2",
        "--detach",
        "--cookie",
        cookie,
        "--base-port",
        str(free_base_port(2)),
        "--name-suffix",
        "_w" + secrets.token_hex(2),
        "--worker",
        "tests.houseparty.worker_classes:Counter",
        "--worker",
        "oops=tests.houseparty.worker_classes:Broken",
        run_dir=run_dir,
    )
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        sidecar = next(iter(LocalCluster(run_dir).pods()))[0].sidecar_node
        with Workers(sidecar, cookie=cookie) as w:
            for i in range(4):
                w.register(f"c{i}", "counter", i)
            assert w.call("c3", "incr") == 4
        assert hp("add-rooms", "den", "kitchen", run_dir=run_dir).returncode == 0
        status = json.loads(hp("status", "--json", run_dir=run_dir).stdout)
        totals: dict[str, int] = {}
        for pod in status["pods"]:
            for kind, n in pod["workers"].items():
                totals[kind] = totals.get(kind, 0) + n
        assert totals == {"counter": 4, "oops": 0, "room": 2, "person": 0}
        table = hp("status", run_dir=run_dir)
        assert table.returncode == 0 and "counter" in table.stdout, table.stdout
    finally:
        down = hp("down", run_dir=run_dir)
    assert down.returncode == 0, down.stderr


def test_up_with_a_class_that_cannot_be_imported_says_so(tmp_path: Path) -> None:
    for worker, message in [
        ("no_such_module:Counter", "cannot load worker no_such_module:Counter"),
        ("tests.houseparty.worker_classes:SETTING", "is not a houseparty Worker class"),
        ("not a spec", "a worker is [kind=]module:Class"),
    ]:
        up = hp(
            "up",
            "--detach",
            "--base-port",
            str(free_base_port()),
            "--worker",
            worker,
            run_dir=tmp_path / "run",
        )
        assert up.returncode == 2, up.stdout  # usage: a bad --worker
        assert message in up.stderr and "Traceback" not in up.stderr, up.stderr
        assert not (tmp_path / "run" / "cluster.json").exists()


def test_a_pod_with_a_bad_worker_setting_says_so_and_exits(tmp_path: Path) -> None:
    env = {
        "HOUSEPARTY_COOKIE": "c" + secrets.token_hex(4),
        "HP_PYTHON_NODE": f"pybad_{secrets.token_hex(3)}@127.0.0.1",
        "HP_PYTHON_DIST_PORT": str(free_base_port(1)),
        "HOUSEPARTY_WORKERS": "counter=no_such_module:Counter",
        "PATH": "/usr/bin:/bin",
    }
    pod = subprocess.run(
        [sys.executable, "-m", "houseparty.pod"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert pod.returncode == 1
    assert "HOUSEPARTY_WORKERS: cannot load worker no_such_module:Counter" in pod.stderr
    assert "Traceback" not in pod.stderr
