"""The distribution handshake (version 6, the OTP 23+ "handshake 23"), sans-I/O.

Bytes go in with :meth:`Handshake.receive_data`, events come out of it, and bytes to
send accumulate in :meth:`Handshake.data_to_send`. Every handshake message travels
with a 2-byte big-endian length prefix::

    initiator (A)                                   acceptor (B)
    send_name       'N' Flags:8 Creation:4 NLen:2 Name   ->
                                           <-  's' Status
    (status "alive": A answers 's' "true")  ->
                    <-  'N' Flags:8 Challenge:4 Creation:4 NLen:2 Name   challenge
    challenge_reply 'r' ChallengeA:4 Digest:16           ->
                                           <-  'a' Digest:16             challenge_ack

Over TLS (OTP's ``inet_tls_dist``) the same messages carry a 4-byte length prefix instead:
``Handshake(..., length_size=4)``.

A digest is ``md5(cookie ++ integer_to_list(Challenge))``. The acceptor decides the
status itself (``ok``, ``ok_simultaneous``, ``nok``, ``alive``, ``not_allowed``): the
handshake yields :class:`StatusNeeded` and waits for :meth:`Handshake.send_status`.
A refusal raises :class:`~py_nodes._errors.HandshakeError` (or
:class:`~py_nodes._errors.CookieMismatch`) from ``receive_data``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from typing import NoReturn

from py_nodes import _flags
from py_nodes._errors import CookieMismatch, HandshakeError

__all__ = [
    "Handshake",
    "HandshakeDone",
    "HandshakeEvent",
    "HandshakeState",
    "Role",
    "StatusNeeded",
    "digest",
]

_STATUSES = frozenset({"ok", "ok_simultaneous", "nok", "alive", "not_allowed"})
_MAX_HANDSHAKE_MESSAGE = 4096


class Role(enum.Enum):
    INITIATOR = "initiator"
    ACCEPTOR = "acceptor"


class HandshakeState(enum.Enum):
    # initiator
    AWAIT_STATUS = "await_status"
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_ACK = "await_ack"
    # acceptor
    AWAIT_NAME = "await_name"
    DECIDE_STATUS = "decide_status"
    AWAIT_ALIVE_ANSWER = "await_alive_answer"
    AWAIT_REPLY = "await_reply"
    # both
    DONE = "done"
    FAILED = "failed"


# (state, message tag) -> next state. Anything else is a protocol violation.
_TRANSITIONS: dict[tuple[HandshakeState, int], HandshakeState] = {
    (HandshakeState.AWAIT_STATUS, ord("s")): HandshakeState.AWAIT_CHALLENGE,
    (HandshakeState.AWAIT_CHALLENGE, ord("N")): HandshakeState.AWAIT_ACK,
    (HandshakeState.AWAIT_ACK, ord("a")): HandshakeState.DONE,
    (HandshakeState.AWAIT_NAME, ord("N")): HandshakeState.DECIDE_STATUS,
    (HandshakeState.AWAIT_ALIVE_ANSWER, ord("s")): HandshakeState.AWAIT_REPLY,
    (HandshakeState.AWAIT_REPLY, ord("r")): HandshakeState.DONE,
}


@dataclass(frozen=True, slots=True)
class StatusNeeded:
    """Acceptor only: the peer named itself; call :meth:`Handshake.send_status`."""

    peer_name: str
    peer_flags: int
    peer_creation: int


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """The handshake succeeded; ``leftover`` holds bytes that already follow it."""

    peer_name: str
    peer_flags: int
    peer_creation: int
    leftover: bytes


HandshakeEvent = StatusNeeded | HandshakeDone


def digest(challenge: int, cookie: str) -> bytes:
    """The challenge digest, as ``dist_util:gen_digest/2`` computes it."""
    return hashlib.md5(cookie.encode() + str(challenge).encode()).digest()


def _check_name(name: str) -> str:
    alive, sep, host = name.partition("@")
    if not sep or not alive or not host or len(name) > 255:
        raise HandshakeError(f"invalid node name {name!r}")
    return name


class Handshake:
    """One side of one handshake; create a new one per connection attempt."""

    def __init__(
        self,
        role: Role,
        *,
        this_node: str,
        cookie: str,
        creation: int,
        flags: int = _flags.OUR_FLAGS,
        peer_node: str | None = None,
        challenge: int | None = None,
        length_size: int = 2,
    ) -> None:
        if length_size not in (2, 4):
            raise ValueError(f"a handshake length prefix is 2 or 4 bytes, not {length_size}")
        self.role = role
        self._length = struct.Struct(">H" if length_size == 2 else ">I")
        self.this_node = _check_name(this_node)
        self.peer_node = peer_node
        self.peer_flags = 0
        self.peer_creation = 0
        self.status: str | None = None
        self._cookie = cookie
        self._creation = creation & 0xFFFFFFFF
        self._flags = flags
        self._challenge = challenge if challenge is not None else secrets.randbits(32)
        self._in = bytearray()
        self._out = bytearray()
        if role is Role.INITIATOR:
            if peer_node is None:
                raise HandshakeError("an initiating handshake needs the peer's node name")
            self.state = HandshakeState.AWAIT_STATUS
            name = self.this_node.encode()
            self._send(struct.pack(">cQIH", b"N", flags, self._creation, len(name)) + name)
        else:
            self.state = HandshakeState.AWAIT_NAME

    # -- output -----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (and forget)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, message: bytes) -> None:
        self._out += self._length.pack(len(message)) + message

    # -- input ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[HandshakeEvent]:
        """Feed bytes from the peer; returns the events they complete.

        Raises :class:`HandshakeError` when the peer refuses us or breaks the protocol.
        """
        if self.state in (HandshakeState.DONE, HandshakeState.FAILED):
            raise HandshakeError(f"handshake already {self.state.value}")
        self._in += data
        events: list[HandshakeEvent] = []
        while self.state not in (HandshakeState.DONE, HandshakeState.FAILED):
            if self.state is HandshakeState.DECIDE_STATUS:
                break
            header = self._length.size
            if len(self._in) < header:
                break
            (size,) = self._length.unpack_from(self._in)
            if size == 0 or size > _MAX_HANDSHAKE_MESSAGE:
                self._fail(f"handshake message of {size} bytes")
            if len(self._in) < header + size:
                break
            message = bytes(self._in[header : header + size])
            del self._in[: header + size]
            try:
                event = self._handle(message)
            except HandshakeError:
                self.state = HandshakeState.FAILED
                raise
            if event is not None:
                events.append(event)
        return events

    def _fail(self, why: str) -> NoReturn:
        self.state = HandshakeState.FAILED
        raise HandshakeError(f"handshake with {self.peer_node or 'peer'}: {why}")

    def _handle(self, message: bytes) -> HandshakeEvent | None:
        tag = message[0]
        next_state = _TRANSITIONS.get((self.state, tag))
        if next_state is None:
            self._fail(f"unexpected message {chr(tag)!r} in state {self.state.value}")
        handler = getattr(self, f"_on_{self.state.value}")
        event: HandshakeEvent | None = handler(message)
        self.state = next_state
        if isinstance(event, HandshakeDone):
            event = HandshakeDone(
                event.peer_name, event.peer_flags, event.peer_creation, bytes(self._in)
            )
            self._in.clear()
        return event

    # initiator ------------------------------------------------------------------

    def _on_await_status(self, message: bytes) -> None:
        status = message[1:].decode("latin-1")
        self.status = status
        if status in ("ok", "ok_simultaneous"):
            return
        if status == "alive":
            # We are the one connecting, so our attempt is the live one.
            self._send(b"strue")
            return
        self._fail(f"peer answered status {status!r}")

    def _on_await_challenge(self, message: bytes) -> None:
        if len(message) < 19:
            self._fail("short challenge")
        _, flags, challenge, creation, nlen = struct.unpack_from(">cQIIH", message)
        name = message[19 : 19 + nlen].decode("utf-8", "replace")
        if name != self.peer_node:
            self._fail(f"peer calls itself {name!r}, expected {self.peer_node!r}")
        self._accept_flags(flags)
        self.peer_creation = creation
        self._send(struct.pack(">cI", b"r", self._challenge) + digest(challenge, self._cookie))

    def _on_await_ack(self, message: bytes) -> HandshakeDone:
        if len(message) != 17:
            self._fail("malformed challenge_ack")
        if not hmac.compare_digest(message[1:], digest(self._challenge, self._cookie)):
            self.state = HandshakeState.FAILED
            raise CookieMismatch(
                f"handshake with {self.peer_node}: peer's digest does not match our cookie"
            )
        assert self.peer_node is not None
        return HandshakeDone(self.peer_node, self.peer_flags, self.peer_creation, b"")

    # acceptor -------------------------------------------------------------------

    def _on_await_name(self, message: bytes) -> StatusNeeded:
        if len(message) < 15:
            self._fail("short send_name (old 'n' handshakes are not supported)")
        _, flags, creation, nlen = struct.unpack_from(">cQIH", message)
        try:
            name = _check_name(message[15 : 15 + nlen].decode("utf-8"))
        except (UnicodeDecodeError, HandshakeError):
            self._fail("invalid node name in send_name")
        self.peer_node = name
        self._accept_flags(flags)
        self.peer_creation = creation
        return StatusNeeded(name, flags, creation)

    def send_status(self, status: str) -> None:
        """Acceptor: answer :class:`StatusNeeded`. ``ok``/``ok_simultaneous`` go on to the
        challenge; ``alive`` waits for the peer's answer; ``nok``/``not_allowed`` end it."""
        if self.state is not HandshakeState.DECIDE_STATUS:
            raise HandshakeError(f"send_status in state {self.state.value}")
        if status not in _STATUSES:
            raise ValueError(f"unknown handshake status {status!r}")
        self.status = status
        self._send(b"s" + status.encode())
        if status in ("ok", "ok_simultaneous"):
            self._send_challenge()
            self.state = HandshakeState.AWAIT_REPLY
        elif status == "alive":
            self.state = HandshakeState.AWAIT_ALIVE_ANSWER
        else:
            self.state = HandshakeState.FAILED

    def _send_challenge(self) -> None:
        name = self.this_node.encode()
        self._send(
            struct.pack(">cQIIH", b"N", self._flags, self._challenge, self._creation, len(name))
            + name
        )

    def _on_await_alive_answer(self, message: bytes) -> None:
        if message[1:] == b"true":
            self._send_challenge()
            return
        self._fail("peer gave up its connection attempt (alive: false)")

    def _on_await_reply(self, message: bytes) -> HandshakeDone:
        if len(message) != 21:
            self._fail("malformed challenge_reply")
        (their_challenge,) = struct.unpack_from(">I", message, 1)
        if not hmac.compare_digest(message[5:], digest(self._challenge, self._cookie)):
            self.state = HandshakeState.FAILED
            raise CookieMismatch(
                f"handshake from {self.peer_node}: digest does not match our cookie (wrong cookie?)"
            )
        self._send(b"a" + digest(their_challenge, self._cookie))
        assert self.peer_node is not None
        return HandshakeDone(self.peer_node, self.peer_flags, self.peer_creation, b"")

    # shared ---------------------------------------------------------------------

    def _accept_flags(self, flags: int) -> None:
        missing = _flags.REQUIRED_FLAGS & ~flags
        if missing:
            self._fail(f"peer lacks mandatory flags {_flags.describe(missing)}")
        self.peer_flags = flags
