"""Local clusters of real pods (sidecar ``erl`` + Python node) for the HouseParty tests.

Every cluster gets its own run folder, ports and node-name tag, so it never meets a
cluster someone started with ``houseparty up`` on the same machine.
"""

from __future__ import annotations

import fcntl
import os
import pty
import random
import re
import secrets
import select
import shutil
import struct
import subprocess
import termios
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from houseparty import HouseParty
from houseparty.cli._localcluster import LocalCluster, PodSpec, port_free

if shutil.which("erl") is None:
    pytest.skip(
        "Erlang/OTP is not installed (scripts/setup.sh installs it)", allow_module_level=True
    )


@dataclass
class Cluster:
    runner: LocalCluster
    cookie: str
    pods: list[PodSpec]

    @property
    def sidecars(self) -> list[str]:
        return [p.sidecar_node for p in self.pods]

    def client(self, pod: int = 1) -> HouseParty:
        return HouseParty(self.pods[pod - 1].sidecar_node, cookie=self.cookie)


def free_base_port(pods: int = 3) -> int:
    """A base port whose pod ports are free, below the kernel's ephemeral range (32768+),
    where outgoing connections could take them at any time."""
    while True:
        base = random.randrange(20000, 32000, 50)
        if all(port_free(base + offset) for offset in range(3 * pods)):
            return base


def start_cluster(tmp_path: Path, pods: int = 3, replica_copies: int | None = None) -> Cluster:
    runner = LocalCluster(tmp_path / "run")
    cookie = "hp_" + secrets.token_hex(8)
    tag = "_" + secrets.token_hex(3)
    runner.up(
        pods=pods,
        cookie=cookie,
        base_port=free_base_port(pods),
        tag=tag,
        timeout=90,
        replica_copies=replica_copies,
    )
    return Cluster(runner, cookie, [spec for spec, _ in runner.pods()])


@contextmanager
def cluster_with_env(run_dir: Path, env: Mapping[str, str], pods: int = 3) -> Iterator[Cluster]:
    """A cluster whose nodes start with ``env`` over this process's environment, stopped
    when the block ends."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        cluster = start_cluster(run_dir, pods=pods)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield cluster
    finally:
        if cluster.runner.is_running():
            cluster.runner.down(timeout=60)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_cluster(tmp_path)
    try:
        yield c
    finally:
        if c.runner.is_running():
            c.runner.down(timeout=60)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")


class Iex:
    """``iex --remsh`` into a sidecar on a pseudo-terminal, as a person would type."""

    PROMPT = re.compile(rb"iex\([^)]*\)(\d+)> ")

    def __init__(self, cookie: str, sidecar: str) -> None:
        self.master, slave = pty.openpty()
        # A wide terminal, so that typed lines are echoed back unwrapped.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 1000, 0, 0))
        name = f"iex_{secrets.token_hex(3)}@127.0.0.1"
        self.proc = subprocess.Popen(
            ["iex", "--name", name, "--cookie", cookie, "--remsh", sidecar],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**os.environ, "TERM": "vt100"},
        )
        os.close(slave)
        self.transcript = b""
        self._read_until_prompt(30.0)
        assert sidecar.encode() in self.transcript, self.transcript.decode(errors="replace")

    def _read_until_prompt(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        buf = b""
        while not self.PROMPT.search(buf):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no iex prompt; got {buf.decode(errors='replace')!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                buf += chunk
        self.transcript += buf
        return buf

    def run(self, line: str, timeout: float = 60.0) -> str:
        """Type ``line``; return what iex printed before its next prompt."""
        os.write(self.master, line.encode() + b"\n")
        out = self._read_until_prompt(timeout)
        text = ANSI.sub("", self.PROMPT.split(out)[0].decode(errors="replace")).replace("\r", "")
        # The terminal echoes the typed line first.
        _echo, _, result = text.partition("\n")
        return result.strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)
