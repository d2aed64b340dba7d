"""The sidecar container's command, end to end: the release built from the committed
sources as the image's first stage builds it, started through entrypoint-sidecar.sh by a
non-root user that cannot write to the release, stopped with SIGTERM as the kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest

from houseparty._certs import make_certificates
from py_nodes import Atom, TlsConfig
from py_nodes import Node as PyNode
from tests.deploy._deploy import DEPLOY, REPO
from tests.processes import command_lines

UID = 10001  # the image's user
RELEASE = "houseparty_sidecar"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def release() -> Iterator[Path]:
    if shutil.which("rebar3") is None or shutil.which("git") is None:
        pytest.skip("rebar3 and git are needed to build the release")
    if os.geteuid() != 0:
        pytest.skip("running the release as the image's uid 10001 needs root")
    # Not under pytest's tmp dirs: those are private to root, and uid 10001 must read it.
    build = Path(tempfile.mkdtemp(prefix="hp-release-"))
    try:
        build.chmod(0o755)
        archive = subprocess.run(
            ["git", "archive", "HEAD", "rebar.config", "rebar.lock", "erlang_sidecar"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(build, filter="data")
        done = subprocess.run(
            ["rebar3", "release"], cwd=build, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        home = build / "_build/default/rel" / RELEASE
        assert (home / "bin" / RELEASE).is_file()
        yield home
    finally:
        shutil.rmtree(build, ignore_errors=True)


class Sidecar:
    def __init__(
        self, release: Path, erl_call_dir: str, log_dir: Path, tls_dir: Path | None = None
    ) -> None:
        self.name = f"sidecar{secrets.token_hex(4)}@127.0.0.1"
        self.cookie = secrets.token_hex(16)
        self.dist_port = free_port()
        self.health_port = free_port()
        self.erl_call_dir = erl_call_dir
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/nonexistent",
            "HOUSEPARTY_COOKIE": self.cookie,
            "HP_SIDECAR_NODE": self.name,
            "HP_PYTHON_NODE": f"py{secrets.token_hex(4)}@127.0.0.1",
            "HP_SIDECAR_DIST_PORT": str(self.dist_port),
            "HP_HEALTH_PORT": str(self.health_port),
            # Peers: none. The default, local_epmd, would knock on every node of this host.
            "HP_CLUSTER_STRATEGY": "epmd",
            "HP_CLUSTER_HOSTS": "",
            # Distribution on loopback only, here.
            "ERL_AFLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        if tls_dir is not None:
            env["HP_TLS_DIR"] = str(tls_dir)
        self.log = log_dir / "sidecar.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [
                    "setpriv",
                    f"--reuid={UID}",
                    f"--regid={UID}",
                    "--clear-groups",
                    "/bin/sh",
                    str(DEPLOY / "entrypoint-sidecar.sh"),
                    str(release / "bin" / RELEASE),
                    "foreground",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_healthy(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the sidecar exited:\n{self.output()}"
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"no /healthz within {within} s:\n{self.output()}")

    def run_dir(self) -> Path:
        environ = Path(f"/proc/{self.proc.pid}/environ").read_bytes().split(b"\0")
        [value] = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"RELX_OUT_FILE_PATH=")]
        return Path(value.decode())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@contextlib.contextmanager
def started(release: Path, tmp: Path, tls_dir: Path | None = None) -> Iterator[Sidecar]:
    from tests.deploy.test_entrypoints import erl_call_dir

    node = Sidecar(release, erl_call_dir(tmp), tmp, tls_dir)
    made: Path | None = None
    try:
        node.wait_healthy()
        # Only this node's own run folder goes afterwards: another sidecar started on the
        # machine meanwhile has one of the same pattern.
        made = node.run_dir()
        yield node
    finally:
        node.stop()
        if made is not None and made.stat().st_uid == UID:
            shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def sidecar(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One running sidecar for the tests that only look at it."""
    with started(release, tmp_path_factory.mktemp("sidecar")) as node:
        yield node


@pytest.fixture
def own_sidecar(release: Path, tmp_path: Path) -> Iterator[Sidecar]:
    """A sidecar of the test's own, for a test that stops it."""
    with started(release, tmp_path) as node:
        yield node


def test_the_release_starts_as_the_image_user_with_the_contracts_names_and_ports(
    sidecar: Sidecar, release: Path
) -> None:
    names = subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=10).stdout
    short = sidecar.name.split("@")[0]
    assert f"name {short} at port {sidecar.dist_port}" in names
    # vm.args was written under /tmp by uid 10001, the release left as built.
    run_dir = sidecar.run_dir()
    assert run_dir.parent == Path("/tmp")
    vm_args = (run_dir / "vm.args").read_text()
    assert f"-name {sidecar.name}" in vm_args
    assert run_dir.stat().st_uid == UID
    assert not list(release.rglob("vm.args.orig"))


def test_no_process_of_the_sidecar_shows_the_cookie(sidecar: Sidecar) -> None:
    processes = command_lines({sidecar.proc.pid})  # started in a session of its own
    argvs = " ".join(processes.values())
    # The VM (named after the release), and the epmd it started.
    assert f"{RELEASE} -Bd" in argvs and sidecar.name in argvs, processes
    assert "epmd" in argvs, processes
    for pid, argv in processes.items():
        assert sidecar.cookie not in argv, f"pid {pid} shows the cookie: {argv}"
    # The VM took its cookie from the file the entry point wrote in its run folder.
    cookie_file = sidecar.run_dir() / ".erlang.cookie"
    assert cookie_file.read_text() == sidecar.cookie
    assert cookie_file.stat().st_mode & 0o777 == 0o400
    assert sidecar.cookie not in (sidecar.run_dir() / "vm.args").read_text()


def test_not_ready_without_its_python_node(sidecar: Sidecar) -> None:
    status, _ = sidecar.get("/readyz")
    assert status == 503


def test_the_pre_stop_hook_drains_the_running_sidecar(sidecar: Sidecar) -> None:
    done = subprocess.run(
        ["/bin/sh", str(DEPLOY / "drain.sh")],
        env={
            "PATH": f"{sidecar.erl_call_dir}:/usr/bin:/bin",
            "HOUSEPARTY_COOKIE": sidecar.cookie,
            "HP_SIDECAR_NODE": sidecar.name,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{sidecar.name} drained: #{{failed => 0" in done.stdout


def test_sigterm_stops_the_sidecar_cleanly(own_sidecar: Sidecar) -> None:
    os.kill(own_sidecar.proc.pid, signal.SIGTERM)
    assert own_sidecar.proc.wait(timeout=30) == 0, own_sidecar.output()


def test_the_images_healthcheck_passes_on_a_healthy_sidecar_and_fails_without_one(
    sidecar: Sidecar,
) -> None:
    from tests.deploy.test_dockerfile import healthcheck

    _options, command = healthcheck()
    env = {"PATH": os.environ["PATH"], "HP_HEALTH_PORT": str(sidecar.health_port)}
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0
    env["HP_HEALTH_PORT"] = str(free_port())  # nothing listens there
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode != 0


@pytest.fixture
def tls_secret() -> Iterator[Path]:
    """A certificate folder as the Secret mounts it: the image's user may read it."""
    root = Path(tempfile.mkdtemp(prefix="hp-tls-"))
    try:
        root.chmod(0o755)
        folder = make_certificates(root / "tls", ["pod"])["pod"]
        for path in [root / "tls", folder, *folder.iterdir()]:
            os.chown(path, UID, UID)
        yield folder
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_release_runs_tls_distribution_from_the_mounted_certificates(
    release: Path, tmp_path: Path, tls_secret: Path
) -> None:
    with started(release, tmp_path, tls_secret) as node:
        optfile = node.run_dir() / "ssl_dist.conf"
        assert str(tls_secret / "tls.key") in optfile.read_text()

        async def ask() -> object:
            client = PyNode(
                f"asker{secrets.token_hex(4)}@127.0.0.1",
                node.cookie,
                listen_host=None,
                tls=TlsConfig.from_dir(tls_secret),
            )
            await client.start()
            try:
                request = (Atom("call"), Atom("init"), Atom("get_argument"), [Atom("proto_dist")])
                return await client.call(
                    (Atom("rex"), Atom(node.name)), (*request, Atom("user")), 10.0
                )
            finally:
                await client.stop()

        assert asyncio.run(ask()) == (Atom("ok"), [[list(b"inet_tls")]])
        done = subprocess.run(
            ["/bin/sh", str(DEPLOY / "drain.sh")],
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "PYTHONPATH": str(REPO),
                "HOUSEPARTY_COOKIE": node.cookie,
                "HP_SIDECAR_NODE": node.name,
                "HP_TLS_DIR": str(tls_secret),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert f"{node.name} drained: " in done.stdout and " 0 failed" in done.stdout
        assert "unencrypted" not in node.output()
