"""OTP 27 for the tests: the Debian 13 root of ``scripts/setup-otp27.sh`` and its sidecar build.

Every command of the root runs through ``scripts/otp27/run`` (or its links in
``scripts/otp27/bin``), on this machine's network and epmd, so its nodes meet the
machine's OTP 25 nodes and Python nodes on 127.0.0.1. The tests of this folder skip, with
the reason, where the root is not set up.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import secrets
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from houseparty.cli._localcluster import ELIXIR_APPS, LocalCluster, SidecarRuntime, sidecar_ebin
from tests.houseparty.conftest import ANSI, Cluster, free_base_port

# The distribution tests' cookie and their runner of ``async def`` tests.
from tests.py_nodes.conftest import cookie, pytest_pyfunc_call

__all__ = [
    "BIN",
    "EBIN27",
    "OTP25_ELIXIR118",
    "OTP27",
    "REPO",
    "Iex27",
    "cookie",
    "needs_otp27",
    "otp27_on_path",
    "pytest_pyfunc_call",
    "run27",
    "start_cluster",
]

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "scripts" / "otp27" / "bin"
CACHE = Path(os.environ.get("HOUSEPARTY_OTP27_ROOT", "/var/cache/houseparty/otp27-trixie"))
ROOT = CACHE / "root"
EBIN27 = REPO / "_build" / "otp27" / "lib" / "houseparty_sidecar" / "ebin"
# Debian 13's Elixir, by its path inside the root, where an OTP 27 sidecar loads it.
ELIXIR_LIB = Path("/usr/lib/elixir/lib")


def _elixir_on_otp25() -> Path | None:
    """The root's Elixir built on this machine's OTP 25 by scripts/setup-otp27.sh."""
    built = sorted(CACHE.glob("elixir-*-otp25/.houseparty-ready"))
    return built[-1].parent if built else None


ELIXIR_ON_OTP25 = _elixir_on_otp25()


def _why_not_ready() -> str | None:
    if not (ROOT / ".houseparty-ready").exists():
        return (
            f"the OTP 27 root {ROOT} is not set up: scripts/setup-otp27.sh makes it "
            "(it needs root and debootstrap, and says why it skips)"
        )
    if not (EBIN27 / "houseparty_sidecar.app").exists():
        return f"the sidecar is not built for OTP 27 ({EBIN27}): run scripts/setup-otp27.sh"
    if ELIXIR_ON_OTP25 is None:
        return f"Elixir is not built for OTP 25 in {CACHE}: run scripts/setup-otp27.sh"
    return None


#: Why the OTP 27 tests cannot run here, or None: their modules skip with it.
NOT_READY = _why_not_ready()
needs_otp27 = pytest.mark.skipif(NOT_READY is not None, reason=NOT_READY or "")


def _elixir_code(lib: Path) -> tuple[str, ...]:
    """The ebin folders of an Elixir's ``lib`` that a sidecar loads for ``iex --remsh``."""
    return tuple(str(lib / app / "ebin") for app in ELIXIR_APPS)


#: A sidecar on OTP 27: its erl, its build of the sidecar and its Elixir (for ``iex --remsh``).
OTP27 = SidecarRuntime(
    erl=str(BIN / "erl"),
    code_path=(
        str(EBIN27),
        *_elixir_code(ELIXIR_LIB),
    ),
)


#: A sidecar on this machine's OTP 25 carrying the root's Elixir built for it, which iex
#: 1.18 can attach to with ``--remsh``.
OTP25_ELIXIR118 = SidecarRuntime(
    code_path=(
        str(sidecar_ebin()),
        *_elixir_code((ELIXIR_ON_OTP25 or CACHE) / "lib"),
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


class Iex27:
    """Elixir 1.18's ``iex`` on OTP 27 (from the root, through PATH) attached to a sidecar on
    a pseudo-terminal, as a person would type.

    ``--remsh`` needs Elixir 1.15 or later on the sidecar (iex asks it for its ``iex``
    module); a sidecar with an older Elixir is reached through the user switch command
    (Ctrl-G, ``r 'node' 'Elixir.IEx'``, ``c``), which starts the sidecar's own IEx.
    """

    PROMPT = re.compile(rb"iex\([^)]*\)(\d+)> ")

    def __init__(self, cookie: str, sidecar: str, *, remsh: bool = True) -> None:
        self.master, slave = pty.openpty()
        # A wide terminal, so that typed lines are echoed back unwrapped.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 1000, 0, 0))
        name = f"iex_{secrets.token_hex(3)}@127.0.0.1"
        attach = ["--remsh", sidecar] if remsh else []
        self.proc = subprocess.Popen(
            ["iex", "--name", name, "--cookie", cookie, *attach],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**os.environ, "TERM": "vt100"},
        )
        os.close(slave)
        self.transcript = b""
        if not remsh:
            self._expect(self.PROMPT, 30.0)
            for typed in ("\x07", f"r '{sidecar}' 'Elixir.IEx'\n"):
                os.write(self.master, typed.encode())
                self._expect(re.compile(rb"--> $"), 30.0)
            os.write(self.master, b"c\n")
        self._expect(re.compile(rb"iex\(%s\)\d+> " % re.escape(sidecar.encode())), 30.0)

    def _expect(self, pattern: re.Pattern[bytes], timeout: float) -> bytes:
        """What the terminal prints up to and with the first match of ``pattern``."""
        deadline = time.monotonic() + timeout
        buf = b""
        while not pattern.search(buf):
            left = deadline - time.monotonic()
            ready = left > 0 and select.select([self.master], [], [], left)[0]
            try:
                chunk = os.read(self.master, 65536) if ready else b""
            except OSError:  # iex ended: the terminal is closed
                chunk = b""
            if not chunk:
                said = (self.transcript + buf).decode(errors="replace")
                raise TimeoutError(f"iex did not print {pattern.pattern!r}; it printed {said!r}")
            buf += chunk
        self.transcript += buf
        return buf

    def run(self, line: str, timeout: float = 60.0) -> str:
        """Type ``line``; return what iex printed as its answer.

        OTP 26's terminal redraws the typed line, prompt included, when Enter is pressed,
        so a prompt comes back before the answer: it ends at the prompt of the next number.
        """
        number = int(self.PROMPT.findall(self.transcript)[-1]) + 1
        os.write(self.master, line.encode() + b"\n")
        done = re.compile(rb"iex\([^)]*\)%d> " % number)
        out = self._expect(done, timeout)
        text = ANSI.sub("", done.split(out)[0].decode(errors="replace")).replace("\r", "")
        # The typed line, echoed and redrawn after a prompt, is not part of the answer.
        lines = [t for t in text.split("\n") if not t.endswith(line) and t.strip()]
        return "\n".join(lines).strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
def otp27_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``erl``, ``iex``... of OTP 27 first on PATH, for the programs a test starts."""
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")


def start_cluster(
    run_dir: Path, runtimes: Mapping[int, SidecarRuntime], workers: str = ""
) -> Cluster:
    """Three pods, the sidecars of ``runtimes`` on their Erlang, the others on ``erl``."""
    runner = LocalCluster(run_dir)
    secret = "hp_" + secrets.token_hex(8)
    runner.up(
        pods=3,
        cookie=secret,
        base_port=free_base_port(3),
        tag="_" + secrets.token_hex(3),
        timeout=90,
        workers=workers.split(),
        runtimes=runtimes,
    )
    return Cluster(runner, secret, [spec for spec, _ in runner.pods()])


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
