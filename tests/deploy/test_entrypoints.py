"""The entry-point scripts and the preStop drain, run for real: the scripts under
/bin/sh, drain.sh through erl_call against a live erl node on loopback."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from houseparty._certs import make_certificates
from py_nodes import Atom, TlsConfig
from py_nodes import Node as PyNode
from tests.deploy._deploy import DEPLOY, contract_variables

SIDECAR = DEPLOY / "entrypoint-sidecar.sh"
PYTHON = DEPLOY / "entrypoint-python.sh"
DRAIN = DEPLOY / "drain.sh"
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def run(
    script: Path, *argv: str, env: dict[str, str] | None = None, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    full = dict(BASE_ENV)
    if path:
        full["PATH"] = f"{path}:{full['PATH']}"
    full.update(env or {})
    return subprocess.run(
        ["/bin/sh", str(script), *argv], env=full, capture_output=True, text=True, timeout=60
    )


def exported(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture
def cleanup_run_dirs() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


# -- entrypoint-sidecar.sh --------------------------------------------------------------


def test_sidecar_fills_in_every_default_from_the_pod_ip(cleanup_run_dirs: list[str]) -> None:
    env = exported(run(SIDECAR, "env", env={"HOUSEPARTY_COOKIE": "c00kie", "POD_IP": "10.1.2.3"}))
    cleanup_run_dirs.append(env["RELX_OUT_FILE_PATH"])
    assert env["HP_SIDECAR_NODE"] == "sidecar@10.1.2.3"
    assert env["HP_PYTHON_NODE"] == "py@10.1.2.3"
    assert env["HP_SIDECAR_DIST_PORT"] == "9100"
    assert env["HP_PYTHON_DIST_PORT"] == "9101"
    assert env["HP_HEALTH_PORT"] == "8080"
    assert env["HP_CLUSTER_STRATEGY"] == "local_epmd"
    assert env["HP_K8S_SELECTOR"] == "app=houseparty"
    assert env["HP_K8S_MODE"] == "endpointslices"
    assert env["HP_PLACEMENT_WHITELIST"] == "^sidecar"
    assert env["HP_NET_TICKTIME"] == "60"
    # the whole contract reaches the release, and relx is told to substitute vm.args
    assert set(contract_variables()) <= set(env)
    assert env["RELX_REPLACE_OS_VARS"] == "true"
    assert Path(env["RELX_OUT_FILE_PATH"]).is_dir()
    assert env["RELX_OUT_FILE_PATH"].startswith("/tmp/")


def test_sidecar_defaults_to_loopback_without_a_pod_ip(cleanup_run_dirs: list[str]) -> None:
    env = exported(run(SIDECAR, "env", env={"HOUSEPARTY_COOKIE": "c"}))
    cleanup_run_dirs.append(env["RELX_OUT_FILE_PATH"])
    assert env["POD_IP"] == "127.0.0.1"
    assert env["HP_SIDECAR_NODE"] == "sidecar@127.0.0.1"


def test_sidecar_keeps_what_the_environment_sets(cleanup_run_dirs: list[str]) -> None:
    given = {
        "HOUSEPARTY_COOKIE": "c",
        "POD_IP": "10.9.9.9",
        "HP_SIDECAR_NODE": "sidecar7@127.0.0.1",
        "HP_SIDECAR_DIST_PORT": "19100",
        "HP_CLUSTER_STRATEGY": "epmd",
        "HP_CLUSTER_HOSTS": "sidecar1@127.0.0.1,sidecar2@127.0.0.1",
        "HP_K8S_NAMESPACE": "party",
    }
    env = exported(run(SIDECAR, "env", env=given))
    cleanup_run_dirs.append(env["RELX_OUT_FILE_PATH"])
    assert {k: env[k] for k in given} == given


def test_sidecar_gives_the_vm_its_cookie_in_a_file_of_its_own(
    cleanup_run_dirs: list[str],
) -> None:
    env = exported(run(SIDECAR, "env", env={"HOUSEPARTY_COOKIE": "c00kie", "HOME": "/root"}))
    run_dir = Path(env["RELX_OUT_FILE_PATH"])
    cleanup_run_dirs.append(str(run_dir))
    # erl reads $HOME/.erlang.cookie: the run folder is HOME, the user's alone.
    assert env["HOME"] == str(run_dir)
    cookie = run_dir / ".erlang.cookie"
    assert cookie.read_text() == "c00kie"
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o400
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700


def test_the_vm_arguments_carry_no_cookie() -> None:
    vm_args = (DEPLOY.parent / "erlang_sidecar" / "config" / "vm.args.src").read_text()
    options = [line for line in vm_args.splitlines() if not line.startswith("#")]
    assert not [line for line in options if "cookie" in line.lower()], options


@pytest.mark.parametrize("script", [SIDECAR, PYTHON, DRAIN], ids=lambda p: p.name)
def test_no_cookie_no_start(script: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    done = run(script, "touch", str(marker), env={"HOUSEPARTY_COOKIE": ""})
    assert done.returncode == 64
    assert "HOUSEPARTY_COOKIE is not set" in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("HP_SIDECAR_DIST_PORT", "91OO", "HP_SIDECAR_DIST_PORT must be a TCP port number"),
        ("HP_HEALTH_PORT", "70000", "HP_HEALTH_PORT must be within 1..65535"),
        ("HP_NET_TICKTIME", "4s", "HP_NET_TICKTIME must be a number of seconds"),
        ("HP_NET_TICKTIME", "0", "HP_NET_TICKTIME must be at least 1"),
        ("HP_SIDECAR_NODE", "sidecar", "HP_SIDECAR_NODE must look like name@host"),
        ("HP_CLUSTER_STRATEGY", "gossip", "HP_CLUSTER_STRATEGY must be epmd"),
        ("HP_K8S_MODE", "endpoints", "HP_K8S_MODE must be endpointslices or pods"),
        ("HP_CLUSTER_STRATEGY", "k8s_dns", "k8s_dns needs HP_K8S_SERVICE"),
        ("HP_LOG_LEVEL", "loud", "HP_LOG_LEVEL must be debug, info, notice, warning or error"),
        ("HP_LOG_FORMAT", "xml", "HP_LOG_FORMAT must be text or json"),
    ],
)
def test_sidecar_refuses_bad_values_by_name(
    name: str, value: str, complaint: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    done = run(SIDECAR, "touch", str(marker), env={"HOUSEPARTY_COOKIE": "c", name: value})
    assert done.returncode == 64
    assert complaint in done.stderr
    assert not marker.exists()


def test_sidecar_needs_a_command() -> None:
    done = run(SIDECAR, env={"HOUSEPARTY_COOKIE": "c"})
    assert done.returncode == 64
    assert "usage" in done.stderr


# -- entrypoint-python.sh ---------------------------------------------------------------


def test_python_derives_its_node_names_and_port() -> None:
    env = exported(run(PYTHON, "env", env={"HOUSEPARTY_COOKIE": "c", "POD_IP": "10.1.2.3"}))
    assert env["HP_PYTHON_NODE"] == "py@10.1.2.3"
    assert env["HP_SIDECAR_NODE"] == "sidecar@10.1.2.3"
    assert env["HP_PYTHON_DIST_PORT"] == "9101"
    assert env["HP_NET_TICKTIME"] == "60"
    assert env["HOUSEPARTY_COOKIE"] == "c"


def test_python_runs_houseparty_pod_node_by_default(tmp_path: Path) -> None:
    # The first `houseparty` on PATH records how it was called.
    record = tmp_path / "argv"
    program = tmp_path / "houseparty"
    program.write_text(f'#!/bin/sh\necho "$*" > {record}\n')
    program.chmod(0o755)
    done = run(PYTHON, env={"HOUSEPARTY_COOKIE": "c"}, path=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert record.read_text().strip() == "pod-node"


def test_python_refuses_a_bad_port(tmp_path: Path) -> None:
    done = run(PYTHON, "true", env={"HOUSEPARTY_COOKIE": "c", "HP_PYTHON_DIST_PORT": "0"})
    assert done.returncode == 64
    assert "HP_PYTHON_DIST_PORT must be within 1..65535" in done.stderr


def test_python_refuses_a_bad_ticktime() -> None:
    done = run(PYTHON, "true", env={"HOUSEPARTY_COOKIE": "c", "HP_NET_TICKTIME": "00"})
    assert done.returncode == 64
    assert "HP_NET_TICKTIME must be at least 1" in done.stderr


def test_the_python_node_takes_the_ticktime_the_entry_point_exports() -> None:
    show = "from houseparty.pod import PodConfig; print(PodConfig.from_env().net_ticktime)"
    given = {"HOUSEPARTY_COOKIE": "c", "PYTHONPATH": str(DEPLOY.parent)}
    default = run(PYTHON, sys.executable, "-c", show, env=given)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == "60"
    short = run(PYTHON, sys.executable, "-c", show, env={**given, "HP_NET_TICKTIME": "4"})
    assert short.returncode == 0, short.stderr
    assert short.stdout.strip() == "4"


# -- drain.sh against a live node -------------------------------------------------------


def erl_call_dir(tmp: Path) -> str:
    """A directory holding erl_call, as the image's /usr/local/bin does."""
    erl = shutil.which("erl")
    if erl is None:
        pytest.skip("erl is not installed")
    out = subprocess.run(
        [
            erl,
            "-noshell",
            "-eval",
            'io:put_chars([code:root_dir(), "/erts-", erlang:system_info(version)]), halt().',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    target = Path(out) / "bin" / "erl_call"
    assert target.is_file(), target
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "erl_call").symlink_to(target)
    return str(bindir)


REGISTRY_MODULE = """\
-module(hp_registry).
-export([drain/0]).
%% Stands for the sidecar's registry: records that a drain was asked for, and answers as
%% a drain that moved everything.
drain() ->
    persistent_term:put(hp_drained, erlang:system_time(millisecond)),
    #{moved => 2, failed => 0, seconds => 0.5}.
"""


class Node:
    def __init__(self, tmp: Path, *, with_registry: bool) -> None:
        self.name = f"drain{secrets.token_hex(4)}@127.0.0.1"
        self.cookie = secrets.token_hex(8)
        code = tmp / "ebin"
        code.mkdir()
        if with_registry:
            src = tmp / "hp_registry.erl"
            src.write_text(REGISTRY_MODULE)
            subprocess.run(["erlc", "-o", str(code), str(src)], check=True, timeout=60)
        self.proc = subprocess.Popen(
            [
                "erl",
                "-name",
                self.name,
                "-setcookie",
                self.cookie,
                "-noshell",
                "-pa",
                str(code),
                "-kernel",
                "inet_dist_use_interface",
                "{127,0,0,1}",
            ],
            env={**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def call(self, bindir: str, mf: str) -> str:
        return subprocess.run(
            [
                f"{bindir}/erl_call",
                "-name",
                self.name,
                "-c",
                self.cookie,
                "-R",
                "-timeout",
                "5",
                "-a",
                mf,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def wait_up(self, bindir: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.call(bindir, "erlang node").strip("'") == self.name:
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def erl_call_path(tmp_path: Path) -> str:
    return erl_call_dir(tmp_path)


@pytest.fixture
def registry_node(tmp_path: Path, erl_call_path: str) -> Iterator[Node]:
    node = Node(tmp_path, with_registry=True)
    try:
        node.wait_up(erl_call_path)
        yield node
    finally:
        node.stop()


@pytest.fixture
def bare_node(tmp_path: Path, erl_call_path: str) -> Iterator[Node]:
    node = Node(tmp_path, with_registry=False)
    try:
        node.wait_up(erl_call_path)
        yield node
    finally:
        node.stop()


def recording_erl_call(tmp: Path, erl_call_path: str) -> tuple[str, Path]:
    """A directory whose erl_call writes down its arguments and its HOME, then runs the
    real one: what anyone listing the processes would see of it."""
    bindir = tmp / "recording"
    bindir.mkdir()
    seen = tmp / "erl_call.seen"
    shim = bindir / "erl_call"
    shim.write_text(
        "#!/bin/sh\n"
        f"printf 'HOME=%s\\n' \"$HOME\" > '{seen}'\n"
        f"printf '%s\\n' \"$@\" >> '{seen}'\n"
        f'exec {erl_call_path}/erl_call "$@"\n'
    )
    shim.chmod(0o755)
    return str(bindir), seen


def test_drain_asks_the_named_sidecar_to_drain(
    registry_node: Node, erl_call_path: str, tmp_path: Path
) -> None:
    assert "hp_drained" not in registry_node.call(erl_call_path, "persistent_term get")
    recording, seen = recording_erl_call(tmp_path, erl_call_path)
    done = run(
        DRAIN,
        env={"HOUSEPARTY_COOKIE": registry_node.cookie, "HP_SIDECAR_NODE": registry_node.name},
        path=recording,
    )
    assert done.returncode == 0, done.stderr
    assert f"{registry_node.name} drained: #{{failed => 0" in done.stdout
    assert "hp_drained" in registry_node.call(erl_call_path, "persistent_term get")
    # erl_call had the cookie from a file of its HOME, never on its command line; the
    # folder is gone once the hook is done.
    home, *argv = seen.read_text().splitlines()
    assert registry_node.cookie not in "\n".join(argv), argv
    assert "-c" not in argv and registry_node.name in argv
    assert home.startswith("HOME=/tmp/houseparty_drain.")
    assert not Path(home.removeprefix("HOME=")).exists()


def test_drain_fails_when_the_sidecar_cannot_drain(bare_node: Node, erl_call_path: str) -> None:
    done = run(
        DRAIN,
        env={"HOUSEPARTY_COOKIE": bare_node.cookie, "HP_SIDECAR_NODE": bare_node.name},
        path=erl_call_path,
    )
    assert done.returncode == 1
    assert "did not drain" in done.stderr and "undef" in done.stderr


def test_drain_fails_with_the_wrong_cookie(bare_node: Node, erl_call_path: str) -> None:
    done = run(
        DRAIN,
        env={"HOUSEPARTY_COOKIE": "not-" + bare_node.cookie, "HP_SIDECAR_NODE": bare_node.name},
        path=erl_call_path,
    )
    assert done.returncode == 1
    assert f"could not reach {bare_node.name}" in done.stderr


def test_drain_fails_when_no_sidecar_runs(erl_call_path: str) -> None:
    name = f"absent{secrets.token_hex(4)}@127.0.0.1"
    done = run(DRAIN, env={"HOUSEPARTY_COOKIE": "c", "HP_SIDECAR_NODE": name}, path=erl_call_path)
    assert done.returncode == 1
    assert f"could not reach {name}" in done.stderr


# -- TLS distribution: the entry point's optfile, and drain.sh over TLS -------------------


@pytest.mark.parametrize("script", [SIDECAR, PYTHON])
def test_a_tls_folder_without_its_files_is_refused(script: Path, tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("")
    done = run(
        script,
        "true",
        env={"HOUSEPARTY_COOKIE": "c", "HP_TLS_DIR": str(tmp_path)},
    )
    assert done.returncode == 64
    assert "no readable tls.key" in done.stderr


def test_without_a_tls_folder_the_entry_points_warn_of_plain_tcp(
    cleanup_run_dirs: list[str],
) -> None:
    for script in (SIDECAR, PYTHON):
        done = run(script, "env", env={"HOUSEPARTY_COOKIE": "c"})
        if script == SIDECAR:
            cleanup_run_dirs.append(exported(done)["RELX_OUT_FILE_PATH"])
            assert "ERL_FLAGS" not in exported(done)
        assert done.returncode == 0, done.stderr
        assert "distribution is plain TCP, unencrypted" in done.stderr


@pytest.fixture
def tls_sidecar(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """An erl node started through entrypoint-sidecar.sh with HP_TLS_DIR, as the pod's
    sidecar is, with a stand-in hp_registry; its name, cookie and certificate folder."""
    if shutil.which("erl") is None:
        pytest.skip("erl is not installed")
    issued = make_certificates(tmp_path / "tls", ["pod"])
    code = tmp_path / "ebin"
    code.mkdir()
    (tmp_path / "hp_registry.erl").write_text(REGISTRY_MODULE)
    subprocess.run(["erlc", "-o", str(code), str(tmp_path / "hp_registry.erl")], check=True)
    name = f"tlsside{secrets.token_hex(4)}@127.0.0.1"
    cookie = secrets.token_hex(8)
    env = {
        **BASE_ENV,
        "HOME": str(tmp_path),
        "HOUSEPARTY_COOKIE": cookie,
        "HP_TLS_DIR": str(issued["pod"]),
    }
    proc = subprocess.Popen(
        [
            "/bin/sh",
            str(SIDECAR),
            "erl",
            "-name",
            name,
            "-setcookie",
            cookie,
            "-noshell",
            "-pa",
            str(code),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield name, cookie, issued["pod"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for optfile in Path("/tmp").glob("houseparty_sidecar.*/ssl_dist.conf"):
            if str(issued["pod"]) in optfile.read_text():
                shutil.rmtree(optfile.parent, ignore_errors=True)


async def _ask(name: str, cookie: str, tls: Path, module: str, fn: str, args: list[Any]) -> Any:
    node = PyNode(
        f"asker{secrets.token_hex(4)}@127.0.0.1",
        cookie,
        listen_host=None,
        tls=TlsConfig.from_dir(tls),
    )
    await node.start()
    try:
        deadline = time.monotonic() + 30
        while not await node.connect(name):
            assert time.monotonic() < deadline, f"{name} did not come up over TLS"
            await asyncio.sleep(0.3)
        request = (Atom("call"), Atom(module), Atom(fn), args, Atom("user"))
        return await node.call((Atom("rex"), Atom(name)), request, 10.0)
    finally:
        await node.stop()


def test_the_sidecar_entry_point_runs_tls_distribution_and_drain_asks_over_it(
    tls_sidecar: tuple[str, str, Path],
) -> None:
    name, cookie, tls = tls_sidecar
    proto = asyncio.run(_ask(name, cookie, tls, "init", "get_argument", [Atom("proto_dist")]))
    assert proto == (Atom("ok"), [[list(b"inet_tls")]])  # one -proto_dist, a string
    env = {"HOUSEPARTY_COOKIE": cookie, "HP_SIDECAR_NODE": name, "HP_TLS_DIR": str(tls)}
    venv = str(Path(sys.executable).parent)
    done = run(DRAIN, env={**env, "PYTHONPATH": str(DEPLOY.parent)}, path=venv)
    assert done.returncode == 0, done.stderr
    assert f"{name} drained: 2 names moved, 0 failed, in 0.50 s" in done.stdout
    drained = asyncio.run(_ask(name, cookie, tls, "persistent_term", "get", [Atom("hp_drained")]))
    assert isinstance(drained, int)
    # Without the certificates, the drain cannot reach it.
    done = run(DRAIN, env={"HOUSEPARTY_COOKIE": cookie, "HP_SIDECAR_NODE": name}, path=venv)
    assert done.returncode == 1
