"""What changed between OTP 25 and OTP 27 that a Python node meets, each checked against real
nodes of both versions: the distribution flags, the port encoding, the two zeros, erpc and
peer, Elixir 1.18's compiler and the sidecar's calls to deprecated functions."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from py_nodes import GenServer, Node, Reply, _flags
from py_nodes._codec import decode, encode
from py_nodes._errors import HandshakeError
from py_nodes._handshake import Handshake, HandshakeDone, Role
from py_nodes._terms import Atom, Port
from tests.otp27.conftest import BIN, EBIN27, REPO, needs_otp27, run27
from tests.py_nodes.conftest import ERL, ErlNode, running_node

ERROR, EXCEPTION, UNDEF = Atom("error"), Atom("exception"), Atom("undef")
pytestmark = [needs_otp27, pytest.mark.skipif(ERL is None, reason="erl is not on PATH")]


class Echo(GenServer):
    def handle_call(self, request: object, from_: object) -> Reply:
        return Reply(request)


@pytest.fixture(scope="module")
def erl25(cookie: str) -> Iterator[ErlNode]:
    node = ErlNode(cookie)
    try:
        assert node.eval_sync("list_to_integer(erlang:system_info(otp_release))") == 25
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def erl27(cookie: str) -> Iterator[ErlNode]:
    node = ErlNode(cookie, erl=str(BIN / "erl"))
    try:
        assert node.eval_sync("list_to_integer(erlang:system_info(otp_release))") == 27
        yield node
    finally:
        node.stop()


@asynccontextmanager
async def echo_node(cookie: str) -> AsyncIterator[Node]:
    async with running_node(cookie) as node:
        node.spawn(Echo, name="echo")
        node.expose("echo", "identity", lambda x: x)
        yield node


def handshake(erl: ErlNode, cookie: str, flags: int) -> int:
    """Our side of a real handshake with ``erl``, announcing ``flags``: the peer's flags."""
    alive = erl.name.split("@")[0]
    port = erl.eval_sync(f'element(2, erl_epmd:port_please("{alive}", "127.0.0.1"))')
    shake = Handshake(
        Role.INITIATOR,
        this_node=f"shake_{alive}@127.0.0.1",
        cookie=cookie,
        creation=1,
        peer_node=erl.name,
        flags=flags,
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(shake.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                raise HandshakeError(f"{erl.name} closed the connection")
            for event in shake.receive_data(data):
                if isinstance(event, HandshakeDone):
                    return event.peer_flags
            sock.sendall(shake.data_to_send())


def test_otp27_demands_v4_nc_and_unlink_id_which_py_nodes_announces(
    erl25: ErlNode, erl27: ErlNode, cookie: str
) -> None:
    """OTP 26 made the 64-bit pid/port/reference format (V4_NC) and UNLINK_ID mandatory:
    OTP 27 refuses a peer without them, where OTP 25 took it. Both versions announce the
    same flags, everything py_nodes requires of a peer."""
    theirs = {handshake(erl, cookie, _flags.OUR_FLAGS) for erl in (erl25, erl27)}
    assert len(theirs) == 1
    assert theirs.pop() & _flags.REQUIRED_FLAGS == _flags.REQUIRED_FLAGS
    for flag in (_flags.V4_NC, _flags.UNLINK_ID):
        assert _flags.OUR_FLAGS & flag
        handshake(erl25, cookie, _flags.OUR_FLAGS & ~flag)
        with pytest.raises(HandshakeError, match="not_allowed"):
            handshake(erl27, cookie, _flags.OUR_FLAGS & ~flag)


def test_the_root_runs_otp27_and_elixir_118() -> None:
    otp = run27(
        "erl", "-noshell", "-eval", "io:put_chars(erlang:system_info(otp_release)), halt()."
    )
    assert otp.stdout == "27"
    elixir = run27("elixir", "-e", "IO.write(System.version())")
    assert elixir.stdout.startswith("1.18."), elixir.stdout
    rebar3 = run27("rebar3", "version")
    assert "rebar 3." in rebar3.stdout and "Erlang/OTP 27" in rebar3.stdout, rebar3.stdout


async def test_otp27_sends_ports_as_v4_and_takes_the_older_encoding_back(
    erl25: ErlNode, erl27: ErlNode, cookie: str
) -> None:
    """OTP 26 and later always encode a port as V4_PORT_EXT (64-bit id); OTP 25 uses
    NEW_PORT_EXT while the id fits 32 bits. py_nodes reads both and writes NEW_PORT_EXT,
    which OTP 27 reads back as the same port."""
    expr = "P_ = hd(erlang:ports()), {P_, term_to_binary(P_)}"
    port25, bytes25 = await erl25.eval(expr)
    port27, bytes27 = await erl27.eval(expr)
    assert bytes25[:2] == b"\x83Y" and bytes27[:2] == b"\x83x"
    assert decode(bytes25) == port25 and decode(bytes27) == port27
    assert isinstance(port27, Port) and port27.node == erl27.atom
    ours = encode(port27)
    assert await erl27.eval(f"binary_to_term(<<{','.join(map(str, ours))}>>) =:= P_") is True
    async with echo_node(cookie) as node:
        assert await erl27.eval(f"gen_server:call({{echo, '{node.name}'}}, P_) =:= P_") is True
        assert await erl27.eval(f"erpc:call('{node.name}', echo, identity, [P_]) =:= P_") is True


async def test_the_two_zeros_stay_two_on_otp27(erl25: ErlNode, erl27: ErlNode, cookie: str) -> None:
    """OTP 27 tells 0.0 from -0.0 in matching and map keys, where OTP 25 took them as one.
    A map with both keys comes back from the Python node with both, and each zero keeps
    its sign."""
    assert await erl25.eval("0.0 =:= -0.0") is True
    assert await erl27.eval("0.0 =:= -0.0") is False
    async with echo_node(cookie) as node:
        echo = f"{{echo, '{node.name}'}}"
        assert await erl27.eval("Z_ = #{-0.0 => neg, 0.0 => pos}, map_size(Z_)") == 2
        assert await erl27.eval(f"gen_server:call({echo}, Z_) =:= Z_") is True
        assert await erl27.eval(f"gen_server:call({echo}, -0.0) =:= -0.0") is True
        assert await erl27.eval(f"gen_server:call({echo}, 0.0) =:= 0.0") is True
        assert await erl27.eval(f"erpc:call('{node.name}', echo, identity, [[-0.0, 0.0]])") == [
            -0.0,
            0.0,
        ]


async def test_erpc_and_rpc_across_otp25_otp27_and_python(
    erl25: ErlNode, erl27: ErlNode, cookie: str
) -> None:
    """``erpc:multicall``, ``rpc:call`` (erpc underneath) and ``erpc:send_request`` from
    each version reach the other version and the Python node."""
    async with echo_node(cookie) as node:
        python = f"'{node.name}'"
        beams = f"['{erl25.name}', '{erl27.name}']"
        for erl in (erl25, erl27):
            # phash2 is the same on both versions.
            got = await erl.eval(f"erpc:multicall({beams}, erlang, phash2, [{{a, <<1, 2>>}}])")
            assert got[0][0] == Atom("ok") and got == [got[0], got[0]], got
            got = await erl.eval(f"erpc:multicall([{python} | {beams}], echo, identity, [<<1>>])")
            assert got[0] == (Atom("ok"), b"\x01"), got
            # The BEAM nodes have no module echo: the error comes back, not a hang.
            assert [(r[0], r[1][:2]) for r in got[1:]] == [(ERROR, (EXCEPTION, UNDEF))] * 2, got
            assert await erl.eval(f"rpc:call({python}, echo, identity, [x])") == Atom("x")
            assert await erl.eval(
                f"erpc:receive_response(erpc:send_request({python}, echo, identity, [y]))"
            ) == Atom("y")


async def test_a_peer_started_by_otp27_reaches_the_python_node(erl27: ErlNode, cookie: str) -> None:
    """OTP 27's ``peer`` (which replaces ``slave``, deprecated) starts a node over the
    distribution; that node calls the Python node by name."""
    async with echo_node(cookie) as node:
        peer_node = await erl27.eval(
            "{ok, Peer_, PeerNode_} = peer:start_link(#{name => peer:random_name(p27), "
            'host => "127.0.0.1", longnames => true, '
            f'args => ["-setcookie", "{cookie}"]}}), PeerNode_'
        )
        assert str(peer_node).startswith("p27")
        assert await erl27.eval(
            f"erpc:call(PeerNode_, gen_server, call, [{{echo, '{node.name}'}}, hello])"
        ) == Atom("hello")
        assert await erl27.eval("peer:stop(Peer_)") == Atom("ok")


def test_the_swarm_seed_compiles_on_elixir_118_without_a_warning(tmp_path: Path) -> None:
    """Elixir code written against the sidecar builds on Elixir 1.18 with warnings as
    errors: no deprecated call, and every Swarm function it calls exists in the OTP 27
    build of the sidecar."""
    source = REPO / "tests" / "houseparty" / "swarm_seed" / "house_party.ex"
    done = subprocess.run(
        [
            str(BIN / "elixirc"),
            "--warnings-as-errors",
            "-pa",
            str(EBIN27),
            "-o",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr, done.stderr
    assert list(tmp_path.glob("*.beam"))


def test_the_sidecar_calls_nothing_otp27_deprecates() -> None:
    """xref with OTP 27's library: no undefined or deprecated call in the sidecar."""
    done = run27("rebar3", "as", "otp27", "xref", timeout=300)
    assert "Warning" not in done.stdout, done.stdout
