"""Distribution control messages as frozen event dataclasses, and their wire form.

After the handshake every frame is ``112`` (pass-through), then a control tuple in
external term format, then for some operations a message term::

    LINK           {1, FromPid, ToPid}
    SEND           {2, Unused, ToPid}                   + Message
    EXIT           {3, FromPid, ToPid, Reason}
    UNLINK         {4, FromPid, ToPid}                  (pre UNLINK_ID peers)
    REG_SEND       {6, FromPid, Unused, ToName}         + Message
    GROUP_LEADER   {7, FromPid, ToPid}                  (ignored)
    EXIT2          {8, FromPid, ToPid, Reason}
    SEND_TT 12, EXIT_TT 13, REG_SEND_TT 16, EXIT2_TT 18: same, trace token last
    MONITOR_P      {19, FromPid, ToProc, Ref}           ToProc: pid or registered name
    DEMONITOR_P    {20, FromPid, ToProc, Ref}
    MONITOR_P_EXIT {21, FromProc, ToPid, Ref, Reason}
    SEND_SENDER    {22, FromPid, ToPid}                 + Message   (SEND_SENDER_TT 23)
    PAYLOAD_EXIT 24/25, PAYLOAD_EXIT2 26/27, PAYLOAD_MONITOR_P_EXIT 28: reason as Message
    SPAWN_REQUEST  {29, ReqId, From, GroupLeader, {M, F, Arity}, Opts} + Args (_TT 30)
    SPAWN_REPLY    {31, ReqId, To, Flags, Result}       (_TT 32)
    ALIAS_SEND     {33, FromPid, Alias}                 + Message   (_TT 34)
    UNLINK_ID      {35, Id, FromPid, ToPid}
    UNLINK_ID_ACK  {36, Id, FromPid, ToPid}

:func:`decode_frame` turns a frame body into an event; :func:`encode_event` does the
reverse. Trace tokens are accepted and dropped: events keep them for inspection only.
A :class:`Channel` is where the handlers of incoming events send their answers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

from py_nodes._codec import ACCELERATED, build_frozen, decode_prefix, encode
from py_nodes._errors import DecodeError, ProtocolError
from py_nodes._terms import Atom, Pid, Reference

__all__ = [
    "AliasSend",
    "Channel",
    "ControlEvent",
    "Demonitor",
    "Exit",
    "Exit2",
    "GroupLeader",
    "Link",
    "Monitor",
    "MonitorExit",
    "RegSend",
    "Send",
    "SpawnReply",
    "SpawnRequest",
    "Tick",
    "Unlink",
    "UnlinkId",
    "UnlinkIdAck",
    "decode_frame",
    "encode_event",
    "encode_frame",
    "read_frames",
]

_UNDEFINED = Atom("")


@dataclass(frozen=True, slots=True)
class Tick:
    """An empty frame: the peer is alive."""


@dataclass(frozen=True, slots=True)
class Link:
    from_pid: Pid
    to_pid: Pid


@dataclass(frozen=True, slots=True)
class Send:
    """SEND, SEND_TT, SEND_SENDER(_TT): ``sender`` is None for plain SEND."""

    to_pid: Pid
    message: Any
    sender: Pid | None = None
    trace_token: Any = None


@dataclass(frozen=True, slots=True)
class RegSend:
    from_pid: Pid
    to_name: Atom
    message: Any
    trace_token: Any = None


@dataclass(frozen=True, slots=True)
class Exit:
    """An exit signal along a link (EXIT, EXIT_TT, PAYLOAD_EXIT(_TT))."""

    from_pid: Pid
    to_pid: Pid
    reason: Any
    trace_token: Any = None


@dataclass(frozen=True, slots=True)
class Exit2:
    """An ``exit/2`` signal (EXIT2, EXIT2_TT, PAYLOAD_EXIT2(_TT))."""

    from_pid: Pid
    to_pid: Pid
    reason: Any
    trace_token: Any = None


@dataclass(frozen=True, slots=True)
class Unlink:
    from_pid: Pid
    to_pid: Pid


@dataclass(frozen=True, slots=True)
class UnlinkId:
    id: int
    from_pid: Pid
    to_pid: Pid


@dataclass(frozen=True, slots=True)
class UnlinkIdAck:
    id: int
    from_pid: Pid
    to_pid: Pid


@dataclass(frozen=True, slots=True)
class GroupLeader:
    from_pid: Pid
    to_pid: Pid


@dataclass(frozen=True, slots=True)
class Monitor:
    """MONITOR_P: ``target`` is a pid or a registered name (an Atom)."""

    from_pid: Pid
    target: Pid | Atom
    ref: Reference


@dataclass(frozen=True, slots=True)
class Demonitor:
    from_pid: Pid
    target: Pid | Atom
    ref: Reference


@dataclass(frozen=True, slots=True)
class MonitorExit:
    """MONITOR_P_EXIT: ``from_proc`` is the pid or name that was monitored."""

    from_proc: Pid | Atom
    to_pid: Pid
    ref: Reference
    reason: Any


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    req_id: Reference
    from_pid: Pid
    group_leader: Pid
    module: Atom
    function: Atom
    arity: int
    options: list[Any]
    args: list[Any]
    trace_token: Any = None


@dataclass(frozen=True, slots=True)
class SpawnReply:
    """SPAWN_REPLY: ``flags`` bit 0 = link made, bit 1 = monitor made; ``result`` is
    the new pid or an error atom."""

    req_id: Reference
    to_pid: Pid
    flags: int
    result: Pid | Atom
    trace_token: Any = None


@dataclass(frozen=True, slots=True)
class AliasSend:
    from_pid: Pid
    alias: Reference
    message: Any
    trace_token: Any = None


ControlEvent = (
    Tick
    | Link
    | Send
    | RegSend
    | Exit
    | Exit2
    | Unlink
    | UnlinkId
    | UnlinkIdAck
    | GroupLeader
    | Monitor
    | Demonitor
    | MonitorExit
    | SpawnRequest
    | SpawnReply
    | AliasSend
)


class Channel(Protocol):
    """The connection an incoming event came on: its peer, and a way to answer."""

    @property
    def peer_name(self) -> str | None: ...

    def send(self, event: ControlEvent) -> None: ...


_NO_MESSAGE: Any = object()


def _spawn_request(c: tuple[Any, ...], m: Any) -> SpawnRequest:
    module, function, arity = c[4]
    tt = c[6] if c[0] == 30 else None
    return SpawnRequest(c[1], c[2], c[3], module, function, arity, list(c[5]), list(m), tt)


# Where an event's fields come from, besides an index into the control tuple.
_M, _N = -2, -1  # the message; None (no trace token)

# op -> (control arity, whether a message follows, event class, fields). ``fields`` gives
# each field of the event in order, as a position in ``(*control, message, None)``, or is
# a function of (control, message) for an event that needs more than picking. The C frame
# reader builds its events from this same table.
_DECODERS: dict[int, tuple[int, bool, type, tuple[int, ...] | Callable[..., ControlEvent]]] = {
    1: (3, False, Link, (1, 2)),
    2: (3, True, Send, (2, _M, _N, _N)),
    3: (4, False, Exit, (1, 2, 3, _N)),
    4: (3, False, Unlink, (1, 2)),
    6: (4, True, RegSend, (1, 3, _M, _N)),
    7: (3, False, GroupLeader, (1, 2)),
    8: (4, False, Exit2, (1, 2, 3, _N)),
    12: (4, True, Send, (2, _M, _N, 3)),
    13: (5, False, Exit, (1, 2, 4, 3)),
    16: (5, True, RegSend, (1, 3, _M, 4)),
    18: (5, False, Exit2, (1, 2, 4, 3)),
    19: (4, False, Monitor, (1, 2, 3)),
    20: (4, False, Demonitor, (1, 2, 3)),
    21: (5, False, MonitorExit, (1, 2, 3, 4)),
    22: (3, True, Send, (2, _M, 1, _N)),
    23: (4, True, Send, (2, _M, 1, 3)),
    24: (3, True, Exit, (1, 2, _M, _N)),
    25: (4, True, Exit, (1, 2, _M, 3)),
    26: (3, True, Exit2, (1, 2, _M, _N)),
    27: (4, True, Exit2, (1, 2, _M, 3)),
    28: (4, True, MonitorExit, (1, 2, 3, _M)),
    29: (6, True, SpawnRequest, _spawn_request),
    30: (7, True, SpawnRequest, _spawn_request),
    31: (5, False, SpawnReply, (1, 2, 3, 4, _N)),
    32: (6, False, SpawnReply, (1, 2, 3, 4, 5)),
    33: (3, True, AliasSend, (1, 2, _M, _N)),
    34: (4, True, AliasSend, (1, 2, _M, 3)),
    35: (4, False, UnlinkId, (1, 2, 3)),
    36: (4, False, UnlinkIdAck, (1, 2, 3)),
}
_PICKERS = {
    op: itemgetter(*fields) for op, (_, _, _, fields) in _DECODERS.items() if type(fields) is tuple
}


def decode_frame(frame: bytes | bytearray | memoryview) -> ControlEvent:
    """Decode one non-empty frame body (``112``, control term, optional message).

    Raises :class:`ProtocolError` for anything malformed.
    """
    if not frame or frame[0] != 112:
        raise ProtocolError("frame does not start with the pass-through byte 112")
    if type(frame) is not bytes:
        frame = bytes(frame)  # decode_prefix would copy it for each of its two terms
    try:
        ctrl, offset = decode_prefix(frame, 1)
        message = _NO_MESSAGE
        if offset < len(frame):
            message, offset = decode_prefix(frame, offset)
            if offset != len(frame):
                raise ProtocolError(f"{len(frame) - offset} trailing bytes after the message")
    except DecodeError as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from exc
    if type(ctrl) is not tuple or not ctrl or type(ctrl[0]) is not int:
        raise ProtocolError(f"control message is not a tuple with an operation: {ctrl!r}")
    entry = _DECODERS.get(ctrl[0])
    if entry is None:
        raise ProtocolError(f"unknown control operation {ctrl[0]}")
    arity, with_message, cls, fields = entry
    if len(ctrl) != arity:
        raise ProtocolError(f"control operation {ctrl[0]} with {len(ctrl)} elements")
    if with_message and message is _NO_MESSAGE:
        raise ProtocolError(f"control message {ctrl[0]} without its message part")
    if type(fields) is tuple:
        event: ControlEvent = build_frozen(cls, *_PICKERS[ctrl[0]]((*ctrl, message, None)))
        return event
    try:
        return fields(ctrl, message)  # type: ignore[operator]
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed control message {ctrl!r}: {exc}") from exc


# MONITOR_P is {19, From, To, Ref} and its DEMONITOR_P is {20, From, To, Ref}: the same
# bytes after the operation. gen_server:call sends both for every call, and the second
# cancels the first: see read_frames.
_CTRL4_PREFIX = b"p\x83h\x04a"
_MONITOR_P, _DEMONITOR_P = 19, 20
_LENGTH = struct.Struct(">I")
_TICK = Tick()
_TICK_FRAME = b"\x00\x00\x00\x00"


def _read_frames_py(
    buf: bytes, max_size: int, monitors: dict[bytes, Monitor]
) -> tuple[list[ControlEvent], int, int]:
    events: list[ControlEvent] = []
    pos = 0
    end = len(buf)
    need = 4
    while end - pos >= 4:
        (size,) = _LENGTH.unpack_from(buf, pos)
        if size == 0:
            events.append(_TICK)
            pos += 4
            continue
        if size > max_size:
            raise ProtocolError(f"frame of {size} bytes exceeds max_frame_size {max_size}")
        if end - pos - 4 < size:
            need = 4 + size
            break
        body = buf[pos + 4 : pos + 4 + size]
        pos += 4 + size
        op = body[5] if size > 6 and body.startswith(_CTRL4_PREFIX) else 0
        if op == _DEMONITOR_P and type(monitors.get(body[6:])) is Monitor:
            del monitors[body[6:]]
            continue
        event = decode_frame(body)
        if type(event) is Monitor:
            monitors[body[6:] if op == _MONITOR_P else body] = event
        events.append(event)
    return events, pos, need


# type -> (control tuple, message) builders. Trace tokens are never sent: we do not trace.
_ENCODERS: dict[type, Callable[[Any], tuple[tuple[Any, ...], Any]]] = {
    Send: lambda e: (
        ((2, _UNDEFINED, e.to_pid), e.message)
        if e.sender is None
        else ((22, e.sender, e.to_pid), e.message)
    ),
    RegSend: lambda e: ((6, e.from_pid, _UNDEFINED, e.to_name), e.message),
    AliasSend: lambda e: ((33, e.from_pid, e.alias), e.message),
    Link: lambda e: ((1, e.from_pid, e.to_pid), _NO_MESSAGE),
    Exit: lambda e: ((3, e.from_pid, e.to_pid, e.reason), _NO_MESSAGE),
    Exit2: lambda e: ((8, e.from_pid, e.to_pid, e.reason), _NO_MESSAGE),
    Unlink: lambda e: ((4, e.from_pid, e.to_pid), _NO_MESSAGE),
    UnlinkId: lambda e: ((35, e.id, e.from_pid, e.to_pid), _NO_MESSAGE),
    UnlinkIdAck: lambda e: ((36, e.id, e.from_pid, e.to_pid), _NO_MESSAGE),
    GroupLeader: lambda e: ((7, e.from_pid, e.to_pid), _NO_MESSAGE),
    Monitor: lambda e: ((19, e.from_pid, e.target, e.ref), _NO_MESSAGE),
    Demonitor: lambda e: ((20, e.from_pid, e.target, e.ref), _NO_MESSAGE),
    MonitorExit: lambda e: ((21, e.from_proc, e.to_pid, e.ref, e.reason), _NO_MESSAGE),
    SpawnRequest: lambda e: (
        (29, e.req_id, e.from_pid, e.group_leader, (e.module, e.function, e.arity), e.options),
        e.args,
    ),
    SpawnReply: lambda e: ((31, e.req_id, e.to_pid, e.flags, e.result), _NO_MESSAGE),
}


def _encode_frame_py(ctrl: tuple[Any, ...], message: Any) -> bytes:
    body = b"p" + encode(ctrl) if message is _NO_MESSAGE else b"p" + encode(ctrl) + encode(message)
    return _LENGTH.pack(len(body)) + body


def encode_frame(event: ControlEvent) -> bytes:
    """The frame for ``event``: its 4-byte length, then its body (none for a tick)."""
    build = _ENCODERS.get(type(event))
    if build is None:
        if type(event) is Tick:
            return _TICK_FRAME
        raise TypeError(f"cannot send {event!r}")
    return _frame(*build(event))


def encode_event(event: ControlEvent) -> bytes:
    """The frame body for ``event`` (without the 4-byte length; empty for a tick)."""
    return encode_frame(event)[4:]


#: ``read_frames(buf, max_size, monitors) -> (events, end, need)``: the events of the
#: complete frames at the start of ``buf`` (a tick as :class:`Tick`), where they end, and
#: how many bytes from there make the next frame complete. Raises :class:`ProtocolError`
#: for an oversize or malformed frame. The C codec has the same loop, and the frame
#: encoder.
#:
#: ``monitors`` is the store of pending monitors the process table gave the connection:
#: each :class:`Monitor` read is also left there, and the DEMONITOR_P that names the same
#: monitor while it is still there removes it and makes no event. A gen_server call from a
#: BEAM node sends both, so most monitors never reach the table's indexes; when and how
#: the store is emptied is the table's (:class:`~py_nodes._table.ProcessTable`).
read_frames: Callable[[bytes, int, dict[bytes, Monitor]], tuple[list[ControlEvent], int, int]]
_frame: Callable[[tuple[Any, ...], Any], bytes]
if ACCELERATED:
    from py_nodes import _ccodec

    _ccodec.setup_frames(
        {
            "ProtocolError": ProtocolError,
            "decode_frame": decode_frame,
            "tick": _TICK,
            "no_message": _NO_MESSAGE,
            "Monitor": Monitor,
            "ops": _DECODERS,
        }
    )
    read_frames, _frame = _ccodec.read_frames, _ccodec.encode_frame
else:
    read_frames, _frame = _read_frames_py, _encode_frame_py
