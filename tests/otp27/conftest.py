"""OTP 27 for the tests: the Debian 13 root of ``scripts/setup-otp27.sh`` and its sidecar build.

Every command of the root runs through ``scripts/otp27/run`` (or its links in
``scripts/otp27/bin``), on this machine's network and epmd, so its nodes meet the
machine's OTP 25 nodes and Python nodes on 127.0.0.1. The tests of this folder skip, with
the reason, where the root is not set up.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from houseparty.cli._localcluster import LocalCluster, SidecarRuntime
from tests.houseparty.conftest import Cluster, free_base_port

# The distribution tests' cookie and their runner of ``async def`` tests.
from tests.py_nodes.conftest import cookie, pytest_pyfunc_call

__all__ = [
    "BIN",
    "OTP27",
    "REPO",
    "cookie",
    "otp27_on_path",
    "pytest_pyfunc_call",
    "run27",
    "start_cluster",
]

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "scripts" / "otp27" / "bin"
ROOT = Path(os.environ.get("HOUSEPARTY_OTP27_ROOT", "/var/cache/houseparty/otp27-trixie")) / "root"
EBIN27 = REPO / "_build" / "otp27" / "lib" / "houseparty_sidecar" / "ebin"
# Debian's Elixir, at the same path inside the root as on the machine.
ELIXIR_LIB = Path("/usr/lib/elixir/lib")

if not (ROOT / ".houseparty-ready").exists():
    pytest.skip(
        f"the OTP 27 root {ROOT} is not set up: scripts/setup-otp27.sh makes it "
        "(it needs root and debootstrap, and says why it skips)",
        allow_module_level=True,
    )
if not (EBIN27 / "houseparty_sidecar.app").exists():
    pytest.skip(
        f"the sidecar is not built for OTP 27 ({EBIN27}): run scripts/setup-otp27.sh",
        allow_module_level=True,
    )

#: A sidecar on OTP 27: its erl, its build of the sidecar and its Elixir (for ``iex --remsh``).
OTP27 = SidecarRuntime(
    erl=str(BIN / "erl"),
    code_path=(
        str(EBIN27),
        *(str(ELIXIR_LIB / app / "ebin") for app in ("elixir", "iex", "logger")),
    ),
)


def run27(*cmd: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``cmd`` run in the root; it must succeed."""
    done = subprocess.run(
        [str(REPO / "scripts" / "otp27" / "run"), *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def otp27_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``erl``, ``iex``... of OTP 27 first on PATH, for the programs a test starts."""
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")


def start_cluster(
    run_dir: Path, runtimes: Mapping[int, SidecarRuntime], workers: str = ""
) -> Cluster:
    """Three pods, the sidecars of ``runtimes`` on their Erlang, the others on ``erl``."""
    runner = LocalCluster(run_dir)
    cookie = "hp_" + secrets.token_hex(8)
    runner.up(
        pods=3,
        cookie=cookie,
        base_port=free_base_port(3),
        tag="_" + secrets.token_hex(3),
        timeout=90,
        workers=workers.split(),
        runtimes=runtimes,
    )
    return Cluster(runner, cookie, [spec for spec, _ in runner.pods()])


@pytest.fixture
def stop_at_end() -> Iterator[list[Cluster]]:
    """Clusters a test starts, stopped when it ends however it ends."""
    clusters: list[Cluster] = []
    try:
        yield clusters
    finally:
        for cluster in clusters:
            if cluster.runner.is_running():
                cluster.runner.down(timeout=60)
