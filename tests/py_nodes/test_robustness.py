"""Refused and broken peers lose only their own connection; no monitor leaks."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import pytest

from py_nodes import Atom, GenServer, Reply, encode
from py_nodes._handshake import Handshake, HandshakeDone, Role
from tests.py_nodes.conftest import ERL, ErlNode, running_node, unique

pytestmark = pytest.mark.skipif(ERL is None, reason="erl is not on PATH")


class Echo(GenServer):
    def handle_call(self, request: Any, from_: Any) -> Reply:
        return Reply(request)


async def raw_peer(
    node_port: int, node_name: str, cookie: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare socket that completes a real handshake with the node."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node_port)
    hs = Handshake(
        Role.INITIATOR, this_node=unique("raw"), cookie=cookie, creation=7, peer_node=node_name
    )
    writer.write(hs.data_to_send())
    while True:
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert data, "node closed the socket during the handshake"
        events = hs.receive_data(data)
        writer.write(hs.data_to_send())
        if any(isinstance(e, HandshakeDone) for e in events):
            return reader, writer


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True


async def test_wrong_cookie_is_refused(
    erl: ErlNode, erl_factory: Any, cookie: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="py_nodes")
    async with running_node(cookie) as node:
        node.spawn(Echo, name="echo")
        intruder: ErlNode = erl_factory(node_cookie="not_the_cookie")
        assert await intruder.eval(f"net_adm:ping('{node.name}')") == Atom("pang")
        assert "does not match our cookie" in caplog.text
        assert await erl.eval(f"gen_server:call({{echo, '{node.name}'}}, still_here)") == Atom(
            "still_here"
        )
        assert not await node.ping(intruder.name)
        assert intruder.name not in node.nodes()


@pytest.mark.parametrize("junk", ["garbage", "oversize", "bad_control", "nonsense_link"])
async def test_broken_frames_drop_only_that_peer(
    erl: ErlNode, cookie: str, junk: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_node(cookie, max_frame_size=4096) as node:
        node.spawn(Echo, name="echo")
        dest = f"{{echo, '{node.name}'}}"
        assert await erl.eval(f"gen_server:call({dest}, before)") == Atom("before")
        reader, writer = await raw_peer(node.port, node.name, cookie)
        if junk == "garbage":
            writer.write(struct.pack(">I", 6) + b"p\x83\xff\x00\x01\x02")
            expected = "undecodable frame"
        elif junk == "oversize":
            writer.write(struct.pack(">I", 10_000) + b"p" * 100)
            expected = "exceeds max_frame_size 4096"
        elif junk == "bad_control":
            body = b"p" + b"\x83h\x02a\x63a\x01"  # {99, 1}: no such operation
            writer.write(struct.pack(">I", len(body)) + body)
            expected = "unknown control operation 99"
        else:
            body = b"p" + encode((1, Atom("not_a_pid"), [1, 2]))  # LINK with nonsense in it
            writer.write(struct.pack(">I", len(body)) + body)
            expected = "malformed control message"
        assert await closed_by_peer(reader)
        writer.close()
        assert expected in caplog.text
        assert await erl.eval(f"gen_server:call({dest}, later)") == Atom("later")
        assert erl.name in node.nodes()


async def test_garbage_instead_of_a_handshake(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        node.spawn(Echo, name="echo")
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
        assert await closed_by_peer(reader)
        writer.close()
        assert await erl.eval(f"gen_server:call({{echo, '{node.name}'}}, fine)") == Atom("fine")


async def test_no_monitor_leak_after_many_calls(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        node.spawn(Echo, name="echo")
        total = await erl.eval(
            f"lists:sum([gen_server:call({{echo, '{node.name}'}}, I) || I <- lists:seq(1, 10000)])"
        )
        assert total == 10000 * 10001 // 2
        # concurrent callers too, some timing out (their DEMONITOR_P comes late)
        await erl.eval(
            f"Me = self(), [spawn(fun() -> Me ! {{done, catch gen_server:call("
            f"{{echo, '{node.name}'}}, I, 5000)}} end) || I <- lists:seq(1, 200)],"
            " [receive {done, _} -> ok end || _ <- lists:seq(1, 200)]"
        )
        await asyncio.sleep(0.1)
        assert node.monitor_count() == 0
