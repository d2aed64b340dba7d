"""The sans-I/O handshake, both roles wired together in memory."""

from __future__ import annotations

import pytest

from py_nodes import CookieMismatch, HandshakeError
from py_nodes import _flags as flags
from py_nodes._handshake import (
    Handshake,
    HandshakeDone,
    HandshakeEvent,
    HandshakeState,
    Role,
    StatusNeeded,
    digest,
)

A, B = "a@127.0.0.1", "b@127.0.0.1"


def pair(
    cookie_a: str = "c", cookie_b: str = "c", flags_a: int = flags.OUR_FLAGS
) -> tuple[Handshake, Handshake]:
    return (
        Handshake(
            Role.INITIATOR, this_node=A, cookie=cookie_a, creation=1, peer_node=B, flags=flags_a
        ),
        Handshake(Role.ACCEPTOR, this_node=B, cookie=cookie_b, creation=2),
    )


def run(
    a: Handshake, b: Handshake, status: str = "ok", alive_answer: bool = True
) -> tuple[list[HandshakeEvent], list[HandshakeEvent]]:
    at_a: list[HandshakeEvent] = []
    at_b: list[HandshakeEvent] = []
    for _ in range(10):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if not to_a and not to_b:
            break
        if to_b:
            for event in b.receive_data(to_b):
                at_b.append(event)
                if isinstance(event, StatusNeeded):
                    b.send_status(status)
        if to_a:
            at_a += a.receive_data(to_a)
    return at_a, at_b


def test_handshake_completes_both_ways() -> None:
    a, b = pair()
    at_a, at_b = run(a, b)
    assert at_b[0] == StatusNeeded(A, flags.OUR_FLAGS, 1)
    assert at_a == [HandshakeDone(B, flags.OUR_FLAGS, 2, b"")]
    assert at_b[1] == HandshakeDone(A, flags.OUR_FLAGS, 1, b"")
    assert a.state is b.state is HandshakeState.DONE


def test_our_flags() -> None:
    assert not flags.OUR_FLAGS & (flags.PUBLISHED | flags.DIST_HDR_ATOM_CACHE | flags.FRAGMENTS)
    for needed in (
        flags.HANDSHAKE_23,
        flags.BIG_CREATION,
        flags.UNLINK_ID,
        flags.V4_NC,
        flags.SPAWN,
        flags.ALIAS,
        flags.DIST_MONITOR_NAME,
    ):
        assert flags.OUR_FLAGS & needed


def test_wrong_cookie_is_refused_by_the_acceptor() -> None:
    a, b = pair(cookie_b="other")
    with pytest.raises(CookieMismatch, match="does not match our cookie"):
        run(a, b)
    assert b.state is HandshakeState.FAILED


def test_initiator_checks_the_ack_digest() -> None:
    a, b = pair()
    a.receive_data(b"")
    b.receive_data(a.data_to_send())
    b.send_status("ok")
    a.receive_data(b.data_to_send())
    b.receive_data(a.data_to_send())
    forged = b.data_to_send()[:-16] + bytes(16)
    with pytest.raises(CookieMismatch):
        a.receive_data(forged)


@pytest.mark.parametrize("status", ["nok", "not_allowed"])
def test_refusing_statuses(status: str) -> None:
    a, b = pair()
    with pytest.raises(HandshakeError, match=status):
        run(a, b, status=status)


def test_ok_simultaneous_and_alive_continue() -> None:
    for status in ("ok_simultaneous", "alive"):
        a, b = pair()
        at_a, _ = run(a, b, status=status)
        assert isinstance(at_a[-1], HandshakeDone), status


def test_peer_without_mandatory_flags_is_refused() -> None:
    a, b = pair(flags_a=flags.OUR_FLAGS & ~flags.BIG_CREATION)
    with pytest.raises(HandshakeError, match="BIG_CREATION"):
        run(a, b)


def test_byte_at_a_time_and_leftover() -> None:
    a, b = pair()
    b_events: list[HandshakeEvent] = []
    for byte in a.data_to_send():
        b_events += b.receive_data(bytes([byte]))
    assert isinstance(b_events[0], StatusNeeded)
    b.send_status("ok")
    out = b.data_to_send()
    for byte in out:
        a.receive_data(bytes([byte]))
    reply = a.data_to_send()
    done = b.receive_data(reply)
    assert isinstance(done[0], HandshakeDone)
    # bytes after the ack belong to the connection: they come back as leftover
    done_a = a.receive_data(b.data_to_send() + b"\x00\x00\x00\x00")
    assert done_a == [HandshakeDone(B, flags.OUR_FLAGS, 2, b"\x00\x00\x00\x00")]


def test_old_handshake_and_garbage_are_refused() -> None:
    b = Handshake(Role.ACCEPTOR, this_node=B, cookie="c", creation=2)
    with pytest.raises(HandshakeError):
        b.receive_data(b"\x00\x0an\x00\x05\x00\x00\x07\xdfa@b")
    b = Handshake(Role.ACCEPTOR, this_node=B, cookie="c", creation=2)
    with pytest.raises(HandshakeError):
        b.receive_data(b"\xff\xff" + b"x" * 100)


def test_digest_matches_dist_util() -> None:
    # binary:encode_hex(erlang:md5(["cookie" | integer_to_list(12345)])) in erl
    assert digest(12345, "cookie").hex().upper() == "5563360EE47F359FC1CB107E01052D08"
