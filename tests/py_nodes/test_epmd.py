"""epmd wire format, and the client against the real epmd."""

from __future__ import annotations

import asyncio
import secrets
import struct

import pytest

from py_nodes import EpmdError
from py_nodes import _epmd as epmd


def test_alive2_request_is_hidden_v6() -> None:
    req = epmd.encode_alive2("py1", 4370)
    size, tag, port, node_type, proto, high, low, nlen = struct.unpack_from(">HBHBBHHH", req)
    assert (tag, port, node_type, proto, high, low) == (120, 4370, 72, 0, 6, 6)
    assert req[13 : 13 + nlen] == b"py1" and size == len(req) - 2


def test_responses() -> None:
    assert epmd.parse_alive2_response(b"v\x00\x12\x34\x56\x78") == 0x12345678
    assert epmd.parse_alive2_response(b"v\x00\x12") is None
    assert epmd.parse_alive2_response(b"y\x00\x00\x03") == 3
    with pytest.raises(EpmdError, match="refused"):
        epmd.parse_alive2_response(b"v\x01\x00\x00\x00\x00")
    assert epmd.parse_port2_response(b"w\x01") is None
    addr = epmd.parse_port2_response(b"w\x00\x11\x12\x48\x00\x00\x06\x00\x05\x00\x02py\x00\x00")
    assert addr == epmd.NodeAddress(0x1112, 72, 6, 5)
    assert epmd.parse_names(b"\x00\x00\x11\x11name a at port 1\nname b at port 22\n") == {
        "a": 1,
        "b": 22,
    }


def test_register_lookup_and_unregister() -> None:
    async def scenario() -> None:
        alive = "pyepmd_" + secrets.token_hex(4)
        reg = await epmd.register(alive, 45678)
        try:
            assert reg.creation > 0
            addr = await epmd.port_please(alive)
            assert addr is not None and addr.port == 45678 and addr.node_type == 72
            assert (await epmd.names())[alive] == 45678
            with pytest.raises(EpmdError):
                await epmd.register(alive, 45679)
        finally:
            await reg.close()
        for _ in range(50):
            if alive not in await epmd.names():
                break
            await asyncio.sleep(0.02)
        assert await epmd.port_please(alive) is None

    asyncio.run(scenario())
