"""The sans-I/O connection and control messages, two sides wired in memory."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from py_nodes import Atom, BitString, EncodeError, ImproperList, Pid, ProtocolError, Reference
from py_nodes._codec import ACCELERATED, encode
from py_nodes._connection import Connection, ConnectionPair, ConnectionState
from py_nodes._control import (
    _DECODERS,
    _NO_MESSAGE,
    AliasSend,
    ControlEvent,
    Demonitor,
    Exit,
    Exit2,
    Link,
    Monitor,
    MonitorExit,
    RegSend,
    Send,
    SpawnReply,
    SpawnRequest,
    Tick,
    UnlinkId,
    UnlinkIdAck,
    _encode_frame_py,
    _read_frames_py,
    decode_frame,
    encode_event,
)

NA, NB = Atom("a@127.0.0.1"), Atom("b@127.0.0.1")
PA, PB = Pid(NA, 1, 0, 7), Pid(NB, 2, 0, 9)
REF = Reference(NB, 9, (1, 2, 3))

EVENTS: list[ControlEvent] = [
    Send(PB, (Atom("hello"), b"bin", [1, 2])),
    Send(PB, b"from a sender", sender=PA),
    RegSend(PA, Atom("echo"), {b"k": 1.5}),
    AliasSend(PA, REF, (ImproperList((Atom("alias"),), REF), Atom("ok"))),
    Link(PA, PB),
    Exit(PA, PB, Atom("normal")),
    Exit2(PA, PB, Atom("kill")),
    UnlinkId(5, PA, PB),
    UnlinkIdAck(5, PB, PA),
    Monitor(PA, Atom("echo"), REF),
    Demonitor(PA, PB, REF),
    MonitorExit(Atom("echo"), PA, REF, Atom("noproc")),
    SpawnRequest(
        REF,
        PA,
        PA,
        Atom("erpc"),
        Atom("execute_call"),
        4,
        [Atom("monitor")],
        [REF, Atom("m"), Atom("f"), []],
    ),
    SpawnReply(REF, PA, 2, PB),
    Tick(),
]


def test_every_event_round_trips() -> None:
    pair = ConnectionPair()
    for event in EVENTS:
        pair.a.send(event)
    at_a, at_b = pair.pump()
    assert at_a == []
    assert at_b == EVENTS


def test_frames_split_anywhere() -> None:
    sender = Connection("b@127.0.0.1")
    for event in EVENTS:
        sender.send(event)
    data = sender.data_to_send()
    receiver = Connection("a@127.0.0.1")
    got = []
    for i in range(0, len(data), 3):
        got += receiver.receive_data(data[i : i + 3])
    assert got == EVENTS


def test_trace_token_variants_decode() -> None:
    frame = b"p" + encode((12, Atom(""), PB, Atom("token"))) + encode(b"msg")
    assert decode_frame(frame) == Send(PB, b"msg", None, Atom("token"))
    frame = b"p" + encode((28, PA, PB, REF)) + encode(Atom("gone"))  # PAYLOAD_MONITOR_P_EXIT
    assert decode_frame(frame) == MonitorExit(PA, PB, REF, Atom("gone"))


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (frame(b"x"), "pass-through byte"),
        (frame(b"p\x83\xff"), "undecodable"),
        (frame(b"p" + encode((99, 1))), "unknown control operation 99"),
        (frame(b"p" + encode((2, Atom(""), PB))), "without its message"),
        (frame(b"p" + encode((1, PA))), "with 2 elements"),
        (frame(b"p" + encode(Atom("x"))), "not a tuple"),
        (frame(b"p" + encode((2, Atom(""), PB)) + encode(1) + b"zz"), "trailing"),
        (struct.pack(">I", 1 << 20), "exceeds max_frame_size"),
    ],
)
def test_bad_frames_close_the_connection(data: bytes, message: str) -> None:
    conn = Connection("b@127.0.0.1", max_frame_size=1024)
    with pytest.raises(ProtocolError, match=message):
        conn.receive_data(data)
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_reason is not None


def test_tick_bookkeeping() -> None:
    pair = ConnectionPair()
    assert pair.a.tick_due()  # nothing sent yet
    pair.a.send(Send(PB, 1))
    assert not pair.a.tick_due()
    assert pair.a.tick_due()
    pair.pump()
    assert not pair.b.peer_silent()
    assert pair.b.peer_silent()


@pytest.mark.parametrize("value", [Atom("x"), (1, [2, b"z"]), {b"k": 1.5}, [], PA])
def test_reply_fast_path_matches_the_generic_encoding(value: object) -> None:
    from py_nodes._control import _ENCODERS, encode_event

    tag = ImproperList((Atom("alias"),), REF)
    for event in (AliasSend(PA, REF, (tag, value)), AliasSend(PA, REF, value), Send(PB, value)):
        ctrl, message = _ENCODERS[type(event)](event)
        assert encode_event(event) == b"p" + encode(ctrl) + encode(message)
        assert decode_frame(encode_event(event)) == event


# -- the C frame reader against the pure one ------------------------------------------------


def _frames_of_every_operation() -> list[bytes]:
    fields = (PA, PB, REF, Atom("token"), Atom("reason"), 3)
    bodies = []
    for op, (arity, with_message, _, picks) in _DECODERS.items():
        if type(picks) is not tuple:
            continue
        ctrl = (op, *fields[: arity - 1])
        bodies.append(b"p" + encode(ctrl) + (encode([b"message", 1.5]) if with_message else b""))
    return [frame(body) for body in bodies]


_MONITOR_FRAME = frame(encode_event(Monitor(PA, Atom("echo"), REF)))
_GOOD_FRAMES = [
    *(frame(encode_event(e)) if type(e) is not Tick else b"\0\0\0\0" for e in EVENTS),
    *_frames_of_every_operation(),
    _MONITOR_FRAME,
    # The DEMONITOR_P of that monitor, read from its cache when the monitor came first.
    _MONITOR_FRAME[:9] + b"\x14" + _MONITOR_FRAME[10:],
    frame(b"p" + encode((2, Atom(""), PB)) + b"\x83P\0\0\0\x06" + zlib.compress(encode(b"z")[1:])),
]
_BAD_FRAMES = [
    frame(b"x"),
    frame(b"p\x83\xff"),
    frame(b"p" + encode((99, 1))),
    frame(b"p" + encode((2, Atom(""), PB))),
    frame(b"p" + encode((1, PA))),
    frame(b"p" + encode((2, Atom(""), PB)) + encode(1) + b"zz"),
    frame(b"p" + encode((29, REF, PA, PA, Atom("m"), [])) + encode([])),
    struct.pack(">I", 1 << 20),
]


def _read(reader: Any, buf: bytes, monitors: dict[bytes, Any]) -> Any:
    try:
        events, end, need = reader(buf, 4096, monitors)
    except ProtocolError as exc:
        return ("error", str(exc), sorted(monitors))
    return ([(type(e), e) for e in events], end, need, sorted(monitors))


@pytest.mark.skipif(not ACCELERATED, reason="the C codec is not built")
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_GOOD_FRAMES + _BAD_FRAMES[:1]), max_size=12),
    st.sampled_from([b"", *_BAD_FRAMES]),
    st.integers(min_value=0, max_value=40),
    st.none() | st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
)
def test_c_frame_reader_reads_as_the_pure_one(
    frames: list[bytes], bad: bytes, cut: int, flip: tuple[int, int] | None
) -> None:
    # Same events, same ends, same errors (ProtocolError only), same pending monitors,
    # for frames of every kind, cut short, followed by a bad one or with a byte changed.
    from py_nodes import _ccodec

    buf = b"".join(frames) + bad
    buf = buf[: max(0, len(buf) - cut)] if cut < 20 else buf
    if flip is not None and buf:
        at = flip[0] % len(buf)
        buf = buf[:at] + bytes((flip[1],)) + buf[at + 1 :]
    c_monitors: dict[bytes, Any] = {}
    py_monitors: dict[bytes, Any] = {}
    for piece in (buf, buf):  # twice: the second time the monitors are known
        assert _read(_ccodec.read_frames, piece, c_monitors) == _read(
            _read_frames_py, piece, py_monitors
        )


@pytest.mark.skipif(not ACCELERATED, reason="the C codec is not built")
@pytest.mark.parametrize(
    "message",
    [_NO_MESSAGE, b"", (Atom("hello"), [1, 2]), 2**100, BitString(b"\xf0", 4), "text", []],
)
def test_c_frame_encoder_writes_as_the_pure_one(message: Any) -> None:
    from py_nodes import _ccodec

    ctrls: list[tuple[Any, ...]] = [
        (2, Atom(""), PB),
        (29, REF, PA, PA, (Atom("m"), Atom("f"), 0), []),
    ]
    for ctrl in ctrls:
        assert _ccodec.encode_frame(ctrl, message) == _encode_frame_py(ctrl, message)
    with pytest.raises(EncodeError):
        _ccodec.encode_frame((2, Atom(""), PB), object())
    with pytest.raises(EncodeError):
        _encode_frame_py((2, Atom(""), PB), object())
