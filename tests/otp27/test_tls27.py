"""TLS distribution with OTP 27's ``inet_tls_dist``: the same certificates and
``ssl_dist_optfile`` as on OTP 25, a Python node calling and called, and refusals."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from houseparty import HouseParty
from houseparty._certs import dist_optfile, make_certificates
from houseparty.cli._localcluster import CLIENT_CERTIFICATE, LocalCluster
from py_nodes import Atom, GenServer, Reply, TlsConfig
from tests.houseparty.conftest import free_base_port
from tests.otp27.conftest import BIN, OTP27, needs_otp27
from tests.py_nodes.conftest import ERL, ErlNode, running_node

pytestmark = [needs_otp27, pytest.mark.skipif(ERL is None, reason="erl is not on PATH")]


class Echo(GenServer):
    def handle_call(self, request: Any, from_: Any) -> Reply:
        return Reply(request)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tls27")
    issued = make_certificates(root / "ca", ["erl", "py"])
    issued |= make_certificates(root / "other", ["intruder"])
    for name in ("erl", "intruder"):
        (issued[name] / "dist.conf").write_text(dist_optfile(issued[name]))
    return issued


def erl27(cookie: str, folder: Path) -> ErlNode:
    node = ErlNode(
        cookie,
        extra=("-proto_dist", "inet_tls", "-ssl_dist_optfile", str(folder / "dist.conf")),
        erl=str(BIN / "erl"),
    )
    node.eval_sync("ok")
    return node


@pytest.fixture
def tls27(cookie: str, certs: dict[str, Path]) -> Iterator[ErlNode]:
    node = erl27(cookie, certs["erl"])
    try:
        yield node
    finally:
        node.stop()


async def test_otp27_and_a_python_node_call_each_other_over_tls(
    cookie: str, certs: dict[str, Path], tls27: ErlNode
) -> None:
    assert await tls27.eval("erlang:system_info(otp_release)") == list(b"27")
    async with running_node(cookie, tls=TlsConfig.from_dir(certs["py"])) as py:
        py.spawn(Echo, name="echo")
        assert await tls27.eval(f"gen_server:call({{echo, '{py.name}'}}, hi)") == Atom("hi")
        await tls27.eval(f"erlang:disconnect_node('{py.name}')")
        while tls27.name in py.nodes():
            await asyncio.sleep(0.01)
        assert await py.ping(tls27.name)  # a connection the Python side makes


async def test_otp27_refuses_and_is_refused_by_another_ca(
    cookie: str, certs: dict[str, Path], tls27: ErlNode
) -> None:
    intruder = erl27(cookie, certs["intruder"])
    try:
        async with running_node(cookie, tls=TlsConfig.from_dir(certs["py"])) as py:
            assert await intruder.eval(f"net_adm:ping('{py.name}')") == Atom("pang")
        async with running_node(cookie, tls=TlsConfig.from_dir(certs["intruder"])) as stranger:
            assert not await stranger.connect(tls27.name)
    finally:
        intruder.stop()


def test_a_mixed_otp25_otp27_cluster_runs_over_tls(tmp_path: Path) -> None:
    runner = LocalCluster(tmp_path / "run")
    secret = "hp_" + secrets.token_hex(8)
    runner.up(
        pods=2,
        cookie=secret,
        base_port=free_base_port(2),
        tag="_" + secrets.token_hex(3),
        timeout=90,
        runtimes={2: OTP27},
        tls=True,
    )
    try:
        specs = [spec for spec, _ in runner.pods()]
        client = runner.tls_dir(CLIENT_CERTIFICATE)
        with HouseParty(specs[0].sidecar_node, cookie=secret, tls=client) as hp:
            hp.add_rooms([f"room{i}" for i in range(8)])
            hp.walk_into("room3", ["ann", "bob"])
            assert hp.who_is_in("room3") == ["ann", "bob"]
            releases = {
                spec.sidecar_node: hp.rpc(
                    "erpc",
                    "call",
                    [
                        Atom(spec.sidecar_node),
                        Atom("erlang"),
                        Atom("system_info"),
                        [Atom("otp_release")],
                    ],
                )
                for spec in specs
            }
        assert sorted(releases.values()) == [list(b"25"), list(b"27")]
    finally:
        runner.down(timeout=60)
