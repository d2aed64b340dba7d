"""epmd client: registration (ALIVE2_X), port lookup (PORT_PLEASE2) and NAMES.

The wire format is pure (``encode_*`` / ``parse_*``); the ``async`` functions are the
thin I/O layer. Every request travels with a 2-byte length prefix::

    ALIVE2_REQ    120 PortNo:2 NodeType:1 Protocol:1 Highest:2 Lowest:2 NLen:2 Name ELen:2 Extra
    ALIVE2_X_RESP 118 Result:1 Creation:4        (ALIVE2_RESP 121 ... Creation:2 from old epmd)
    PORT_PLEASE2  122 Name
    PORT2_RESP    119 Result:1 [PortNo:2 NodeType:1 Protocol:1 Highest:2 Lowest:2 NLen:2 Name ...]
    NAMES_REQ     110         -> EpmdPort:4 then "name N at port P\\n" lines until close

The registration stays valid as long as its socket stays open, so
:class:`EpmdRegistration` keeps it for the node's life. When no epmd answers,
``epmd -daemon`` is started, as ``erl`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import struct
from dataclasses import dataclass

from py_nodes._errors import EpmdError

__all__ = [
    "EPMD_PORT",
    "HIDDEN_NODE",
    "NORMAL_NODE",
    "EpmdRegistration",
    "NodeAddress",
    "encode_alive2",
    "encode_names",
    "encode_port_please2",
    "names",
    "parse_alive2_response",
    "parse_names",
    "parse_port2_response",
    "port_please",
    "register",
]

log = logging.getLogger("py_nodes.epmd")

EPMD_PORT = 4369
HIDDEN_NODE = 72
NORMAL_NODE = 77
_ALIVE2_REQ = 120
_ALIVE2_RESP = 121
_ALIVE2_X_RESP = 118
_PORT_PLEASE2_REQ = 122
_PORT2_RESP = 119
_NAMES_REQ = 110


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """What PORT_PLEASE2 tells about a registered node."""

    port: int
    node_type: int
    highest_version: int
    lowest_version: int


def _framed(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def encode_alive2(alive: str, port: int, node_type: int = HIDDEN_NODE) -> bytes:
    """ALIVE2_REQ for ``alive`` (the part of the node name before ``@``)."""
    name = alive.encode()
    body = struct.pack(">BHBBHHH", _ALIVE2_REQ, port, node_type, 0, 6, 6, len(name))
    return _framed(body + name + struct.pack(">H", 0))


def parse_alive2_response(data: bytes) -> int | None:
    """The creation from an ALIVE2 response, or None while ``data`` is incomplete."""
    if len(data) < 2:
        return None
    tag, result = data[0], data[1]
    if tag not in (_ALIVE2_X_RESP, _ALIVE2_RESP):
        raise EpmdError(f"unexpected epmd reply tag {tag}")
    if result != 0:
        raise EpmdError(f"epmd refused the registration (result {result}: name taken?)")
    if tag == _ALIVE2_X_RESP:
        return struct.unpack_from(">I", data, 2)[0] if len(data) >= 6 else None
    return struct.unpack_from(">H", data, 2)[0] if len(data) >= 4 else None


def encode_port_please2(alive: str) -> bytes:
    return _framed(bytes([_PORT_PLEASE2_REQ]) + alive.encode())


def parse_port2_response(data: bytes) -> NodeAddress | None:
    """The address from a complete PORT2_RESP, or None when the name is unknown."""
    if len(data) < 2 or data[0] != _PORT2_RESP:
        raise EpmdError("malformed PORT2_RESP")
    if data[1] != 0:
        return None
    if len(data) < 10:
        raise EpmdError("short PORT2_RESP")
    port, node_type, _proto, highest, lowest = struct.unpack_from(">HBBHH", data, 2)
    return NodeAddress(port, node_type, highest, lowest)


def encode_names() -> bytes:
    return _framed(bytes([_NAMES_REQ]))


def parse_names(data: bytes) -> dict[str, int]:
    """``{alive: port}`` from a complete NAMES response."""
    if len(data) < 4:
        raise EpmdError("short NAMES response")
    result: dict[str, int] = {}
    for line in data[4:].decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "name" and parts[2:4] == ["at", "port"]:
            result[parts[1]] = int(parts[4])
    return result


# -- I/O ------------------------------------------------------------------------------


async def _open(
    host: str, port: int, *, start: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection(host, port)
    except OSError as exc:
        if not start:
            raise EpmdError(f"epmd at {host}:{port} unreachable: {exc}") from exc
    await _start_daemon(port)
    for _ in range(50):
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
    raise EpmdError(f"started epmd, but {host}:{port} still refuses connections")


async def _start_daemon(port: int) -> None:
    exe = shutil.which("epmd")
    if exe is None:
        raise EpmdError("no epmd answers and no epmd executable on PATH")
    log.info("no epmd on port %d, starting `epmd -daemon`", port)
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-daemon",
        "-port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


class EpmdRegistration:
    """An open ALIVE2 registration; :meth:`close` (or losing the socket) ends it."""

    def __init__(self, writer: asyncio.StreamWriter, creation: int) -> None:
        self.creation = creation
        self._writer = writer

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def register(
    alive: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    epmd_port: int = EPMD_PORT,
    node_type: int = HIDDEN_NODE,
    start_epmd: bool = True,
) -> EpmdRegistration:
    """Register ``alive`` at ``port`` (hidden by default); keep the result open."""
    reader, writer = await _open(host, epmd_port, start=start_epmd)
    writer.write(encode_alive2(alive, port, node_type))
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(64), 5.0)
            if not chunk:
                raise EpmdError("epmd closed the registration socket")
            data += chunk
            creation = parse_alive2_response(data)
            if creation is not None:
                return EpmdRegistration(writer, creation)
    except BaseException:
        writer.close()
        raise


async def _request(host: str, epmd_port: int, request: bytes) -> bytes:
    reader, writer = await _open(host, epmd_port, start=False)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()


async def port_please(
    alive: str, *, host: str = "127.0.0.1", epmd_port: int = EPMD_PORT
) -> NodeAddress | None:
    """Where ``alive`` listens on ``host``, or None when epmd does not know it."""
    return parse_port2_response(await _request(host, epmd_port, encode_port_please2(alive)))


async def names(*, host: str = "127.0.0.1", epmd_port: int = EPMD_PORT) -> dict[str, int]:
    """All names registered with the epmd on ``host``."""
    return parse_names(await _request(host, epmd_port, encode_names()))
