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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from py_nodes._codec import build_frozen, decode_prefix, encode
from py_nodes._errors import DecodeError, ProtocolError
from py_nodes._terms import Atom, Pid, Reference

__all__ = [
    "AliasSend",
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
    Tick | Link | Send | RegSend | Exit | Exit2 | Unlink | UnlinkId | UnlinkIdAck
    | GroupLeader | Monitor | Demonitor | MonitorExit | SpawnRequest | SpawnReply | AliasSend
)

_NO_MESSAGE: Any = object()


def _spawn_request(c: tuple[Any, ...], m: Any) -> SpawnRequest:
    module, function, arity = c[4]
    tt = c[6] if c[0] == 30 else None
    return SpawnRequest(c[1], c[2], c[3], module, function, arity, list(c[5]), list(m), tt)


_new = build_frozen  # the events of every call are built without their dataclass __init__

# op -> (control arity, whether a message follows, builder). Builders index the control
# tuple directly; ``m`` is the message.
_DECODERS: dict[int, tuple[int, bool, Callable[[tuple[Any, ...], Any], ControlEvent]]] = {
    1: (3, False, lambda c, m: Link(c[1], c[2])),
    2: (3, True, lambda c, m: _new(Send, c[2], m, None, None)),
    3: (4, False, lambda c, m: Exit(c[1], c[2], c[3])),
    4: (3, False, lambda c, m: Unlink(c[1], c[2])),
    6: (4, True, lambda c, m: _new(RegSend, c[1], c[3], m, None)),
    7: (3, False, lambda c, m: GroupLeader(c[1], c[2])),
    8: (4, False, lambda c, m: Exit2(c[1], c[2], c[3])),
    12: (4, True, lambda c, m: Send(c[2], m, None, c[3])),
    13: (5, False, lambda c, m: Exit(c[1], c[2], c[4], c[3])),
    16: (5, True, lambda c, m: RegSend(c[1], c[3], m, c[4])),
    18: (5, False, lambda c, m: Exit2(c[1], c[2], c[4], c[3])),
    19: (4, False, lambda c, m: _new(Monitor, c[1], c[2], c[3])),
    20: (4, False, lambda c, m: _new(Demonitor, c[1], c[2], c[3])),
    21: (5, False, lambda c, m: MonitorExit(c[1], c[2], c[3], c[4])),
    22: (3, True, lambda c, m: _new(Send, c[2], m, c[1], None)),
    23: (4, True, lambda c, m: Send(c[2], m, c[1], c[3])),
    24: (3, True, lambda c, m: Exit(c[1], c[2], m)),
    25: (4, True, lambda c, m: Exit(c[1], c[2], m, c[3])),
    26: (3, True, lambda c, m: Exit2(c[1], c[2], m)),
    27: (4, True, lambda c, m: Exit2(c[1], c[2], m, c[3])),
    28: (4, True, lambda c, m: MonitorExit(c[1], c[2], c[3], m)),
    29: (6, True, _spawn_request),
    30: (7, True, _spawn_request),
    31: (5, False, lambda c, m: SpawnReply(c[1], c[2], c[3], c[4])),
    32: (6, False, lambda c, m: SpawnReply(c[1], c[2], c[3], c[4], c[5])),
    33: (3, True, lambda c, m: _new(AliasSend, c[1], c[2], m, None)),
    34: (4, True, lambda c, m: AliasSend(c[1], c[2], m, c[3])),
    35: (4, False, lambda c, m: UnlinkId(c[1], c[2], c[3])),
    36: (4, False, lambda c, m: UnlinkIdAck(c[1], c[2], c[3])),
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
    arity, with_message, build = entry
    if len(ctrl) != arity:
        raise ProtocolError(f"control operation {ctrl[0]} with {len(ctrl)} elements")
    if with_message and message is _NO_MESSAGE:
        raise ProtocolError(f"control message {ctrl[0]} without its message part")
    try:
        return build(ctrl, message)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed control message {ctrl!r}: {exc}") from exc


# type -> (control tuple, message) builders. Trace tokens are never sent: we do not trace.
_ENCODERS: dict[type, Callable[[Any], tuple[tuple[Any, ...], Any]]] = {
    Send: lambda e: ((2, _UNDEFINED, e.to_pid), e.message)
    if e.sender is None
    else ((22, e.sender, e.to_pid), e.message),
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


def encode_event(event: ControlEvent) -> bytes:
    """The frame body for ``event`` (without the 4-byte length; empty for a tick)."""
    kind = type(event)
    build = _ENCODERS.get(kind)
    if build is None:
        if type(event) is Tick:
            return b""
        raise TypeError(f"cannot send {event!r}")
    ctrl, message = build(event)
    if message is _NO_MESSAGE:
        return b"p" + encode(ctrl)
    return b"p" + encode(ctrl) + encode(message)
