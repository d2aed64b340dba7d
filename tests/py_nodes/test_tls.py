"""TLS distribution between Python nodes and real ``erl -proto_dist inet_tls`` nodes: calls
and rpc both ways, and the peers that must be refused (no certificate, another CA, plain)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from houseparty._certs import dist_optfile, make_certificates, tls_files
from py_nodes import Atom, GenServer, Node, Reply, TlsConfig, TlsError
from tests.py_nodes.conftest import ErlNode, running_node, unique

# A refusal must be quick: well within the handshake timeout of either side.
REFUSED_WITHIN_S = 5.0


class Echo(GenServer):
    def handle_call(self, request: Any, from_: Any) -> Reply:
        return Reply(request)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two CAs: ``ca`` signs the cluster (erl, py, py2), ``other`` signs ``intruder``."""
    root = tmp_path_factory.mktemp("tls")
    issued = make_certificates(root / "ca", ["erl", "py", "py2"])
    issued |= make_certificates(root / "other", ["intruder"])
    # An erl node that speaks TLS and trusts the CA, but has no certificate of its own.
    nocert = root / "nocert"
    nocert.mkdir()
    ca = tls_files(issued["erl"])[2]
    (nocert / "dist.conf").write_text(
        f'[{{server, [{{cacertfile, "{ca}"}}, {{verify, verify_peer}}]}},'
        f' {{client, [{{cacertfile, "{ca}"}}, {{verify, verify_peer}},'
        " {customize_hostname_check, [{match_fun, fun(_, _) -> true end}]}]}].\n"
    )
    for name in ("erl", "intruder"):
        (issued[name] / "dist.conf").write_text(dist_optfile(issued[name]))
    issued["nocert"] = nocert
    return issued


def tls(folder: Path) -> TlsConfig:
    return TlsConfig.from_dir(folder)  # cert-manager's layout, as make_certificates writes


@pytest.fixture
def tls_erl(
    certs: dict[str, Path], erl_factory: Callable[..., ErlNode]
) -> Callable[[str], ErlNode]:
    """``make(folder)``: an erl node with TLS distribution and ``certs[folder]``'s optfile."""

    def make(which: str) -> ErlNode:
        optfile = certs[which] / "dist.conf"
        return erl_factory("-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile))

    return make


def warnings(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


async def test_erl_calls_a_tls_python_node(
    cookie: str, certs: dict[str, Path], tls_erl: Callable[[str], ErlNode]
) -> None:
    erl = tls_erl("erl")
    async with running_node(cookie, tls=tls(certs["py"])) as py:
        py.spawn(Echo, name="echo")
        py.expose("m", "add", lambda a, b: a + b)
        got = await erl.eval(f"gen_server:call({{echo, '{py.name}'}}, {{hello, 1}})")
        assert got == (Atom("hello"), 1)
        assert await erl.eval(f"erpc:call('{py.name}', m, add, [20, 22])") == 42
        assert await erl.eval(f"rpc:call('{py.name}', m, add, [1, 2])") == 3
        # inet_tls_dist carries the connection: its controller is a process (plain TCP
        # distribution's is a port).
        ctrl = await erl.eval(
            f"is_pid(proplists:get_value('{py.name}', erlang:system_info(dist_ctrl)))"
        )
        assert ctrl is True


async def test_a_tls_python_node_calls_erl(
    cookie: str, certs: dict[str, Path], tls_erl: Callable[[str], ErlNode]
) -> None:
    erl = tls_erl("erl")
    await erl.eval(
        "register(echo, spawn(fun L() ->"
        " receive {'$gen_call', F, R} -> gen:reply(F, R), L() end end))"
    )
    async with running_node(cookie, tls=tls(certs["py"])) as py:
        assert await py.call(("echo", erl.name), [1, 2, 3]) == [1, 2, 3]
        # rpc: rex answers {call, M, F, A, GroupLeader}.
        assert (
            await py.call(
                ("rex", erl.name), (Atom("call"), Atom("erlang"), Atom("node"), [], Atom("user"))
            )
            == erl.atom
        )
        assert erl.name in py.nodes()


async def test_python_nodes_talk_over_tls(cookie: str, certs: dict[str, Path]) -> None:
    async with (
        running_node(cookie, tls=tls(certs["py"])) as a,
        running_node(cookie, tls=tls(certs["py2"])) as b,
    ):
        b.spawn(Echo, name="echo")
        assert await a.call(("echo", b.name), b"over tls") == b"over tls"


async def test_an_erl_node_without_a_certificate_is_refused(
    cookie: str,
    certs: dict[str, Path],
    tls_erl: Callable[[str], ErlNode],
    caplog: pytest.LogCaptureFixture,
) -> None:
    erl = tls_erl("nocert")
    async with running_node(cookie, tls=tls(certs["py"])) as py:
        started = time.monotonic()
        assert await erl.eval(f"net_adm:ping('{py.name}')") == Atom("pang")
        assert time.monotonic() - started < REFUSED_WITHIN_S
        await asyncio.sleep(0.2)
        assert py.nodes() == []
    assert "refused a connection" in warnings(caplog)
    assert "certificate" in warnings(caplog)


async def test_a_client_without_a_certificate_is_refused(
    cookie: str, certs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A raw TLS client that trusts the CA but shows no certificate gets nothing."""
    async with running_node(cookie, tls=tls(certs["py"])) as py:
        context = ssl.create_default_context(cafile=str(tls_files(certs["py"])[2]))
        context.check_hostname = False
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # refused in the handshake itself
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", py.port, ssl=context)
    assert "peer did not return a certificate" in warnings(caplog)


async def test_certificates_of_another_ca_are_refused_both_ways(
    cookie: str,
    certs: dict[str, Path],
    tls_erl: Callable[[str], ErlNode],
    caplog: pytest.LogCaptureFixture,
) -> None:
    erl = tls_erl("erl")
    intruder_erl = tls_erl("intruder")
    async with (
        running_node(cookie, tls=tls(certs["py"])) as py,
        running_node(cookie, tls=tls(certs["intruder"])) as intruder,
    ):
        intruder.spawn(Echo, name="echo")
        py.spawn(Echo, name="echo")
        pings: list[Callable[[], Awaitable[Any]]] = [
            lambda: intruder_erl.eval(f"net_adm:ping('{py.name}')"),  # erl intruder -> py
            lambda: erl.eval(f"net_adm:ping('{intruder.name}')"),  # erl -> py intruder
        ]
        for connect in pings:
            started = time.monotonic()
            assert await connect() == Atom("pang")
            assert time.monotonic() - started < REFUSED_WITHIN_S
        for a, b in ((intruder, py), (py, intruder)):  # python <-> python, both ways
            started = time.monotonic()
            assert not await a.connect(b.name)
            assert time.monotonic() - started < REFUSED_WITHIN_S
        started = time.monotonic()
        assert not await intruder.connect(erl.name)  # python intruder -> erl
        assert not await py.connect(intruder_erl.name)  # python -> erl intruder
        assert time.monotonic() - started < 2 * REFUSED_WITHIN_S
        assert py.nodes() == [] and intruder.nodes() == []
    text = warnings(caplog)
    assert "unable to get local issuer certificate" in text or "unknown ca" in text


async def test_plain_and_tls_nodes_refuse_each_other_at_once(
    cookie: str,
    certs: dict[str, Path],
    tls_erl: Callable[[str], ErlNode],
    erl_factory: Callable[..., ErlNode],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls_node = tls_erl("erl")
    plain_erl = erl_factory()
    async with running_node(cookie, tls=tls(certs["py"])) as py_tls, running_node(cookie) as plain:
        pings: list[Callable[[], Awaitable[Any]]] = [
            lambda: plain_erl.eval(f"net_adm:ping('{py_tls.name}')"),
            lambda: tls_node.eval(f"net_adm:ping('{plain.name}')"),
        ]
        for connect in pings:
            started = time.monotonic()
            assert await connect() == Atom("pang")
            assert time.monotonic() - started < REFUSED_WITHIN_S
        for a, b in ((plain, py_tls), (py_tls, plain), (plain, tls_node)):
            started = time.monotonic()
            assert not await a.connect(b.name)
            assert time.monotonic() - started < REFUSED_WITHIN_S, (a.name, b.name)
        # A plain erl node reads our ClientHello as the length of a handshake message and
        # waits for the rest until its own net_setuptime (7 s) ends the connection.
        started = time.monotonic()
        assert not await py_tls.connect(plain_erl.name)
        assert time.monotonic() - started < py_tls.handshake_timeout + 1.0
    text = warnings(caplog)
    # The plain node says the peer speaks TLS; the TLS node says the peer is plain.
    assert "it speaks TLS distribution, this node plain distribution" in text
    assert "speaks plain distribution" in text
    assert "a TLS node does that to a plain one" in text
    assert f"cannot connect to {plain_erl.name}: TLS handshake failed: the peer closed" in text


def test_unusable_tls_settings_are_named(certs: dict[str, Path], tmp_path: Path) -> None:
    cert, key, ca = tls_files(certs["py"])
    with pytest.raises(TlsError, match=r"missing\.crt"):
        TlsConfig(tmp_path / "missing.crt", key, ca)
    with pytest.raises(TlsError, match="CA file"):
        TlsConfig(cert, key, tmp_path / "missing-ca.crt")
    other_key = tls_files(certs["py2"])[1]
    with pytest.raises(TlsError, match="key values mismatch"):
        TlsConfig(cert, other_key, ca)


async def test_a_plain_node_warns_that_it_is_unencrypted(
    cookie: str, certs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    async with running_node(cookie):
        pass
    assert "distribution is plain TCP, unencrypted" in warnings(caplog)
    caplog.clear()
    node = Node(unique("py"), cookie, tls=tls(certs["py"]))
    await node.start()
    await node.stop()
    assert "unencrypted" not in warnings(caplog)


def test_tls_on_uvloop(
    cookie: str, certs: dict[str, Path], tls_erl: Callable[[str], ErlNode]
) -> None:
    """The pods' event loop: uvloop accepts, connects and refuses the same."""
    erl = tls_erl("erl")
    intruder = tls_erl("intruder")

    async def exchange() -> None:
        async with running_node(cookie, tls=tls(certs["py"])) as py:
            py.spawn(Echo, name="echo")
            for _ in range(5):  # fresh connections: each TLS handshake on an accepted socket
                got = await erl.eval(f"gen_server:call({{echo, '{py.name}'}}, ping)")
                assert got == Atom("ping")
                await erl.eval(f"erlang:disconnect_node('{py.name}')")
                while erl.name in py.nodes():  # until this side has seen it go
                    await asyncio.sleep(0.01)
            assert await py.ping(erl.name)  # and a connection this side makes
            assert await intruder.eval(f"net_adm:ping('{py.name}')") == Atom("pang")

    uvloop.run(exchange())
