"""A connected distribution channel, sans-I/O.

After the handshake both directions carry frames of ``Length:4`` then ``Length``
bytes; an empty frame is a tick. :class:`Connection` turns received bytes into
:mod:`~py_nodes._control` events and events into bytes. It knows nothing of sockets
or time: the driver calls :meth:`Connection.tick_due` / :meth:`Connection.peer_silent`
with the clock.

The frame reader leaves each MONITOR_P read in ``monitors``, a store of pending monitors
that belongs to the process table, and a DEMONITOR_P of a monitor still there removes
it and makes no event (see :data:`~py_nodes._control.read_frames`).

A frame over ``max_frame_size`` or a frame that does not decode moves the connection
to ``CLOSED`` and raises :class:`~py_nodes._errors.ProtocolError`; the driver logs it
and drops this peer only.

:class:`ConnectionPair` wires two connections together in memory, for tests.
"""

from __future__ import annotations

import enum
from typing import NoReturn

from py_nodes._control import ControlEvent, Monitor, encode_frame, read_frames
from py_nodes._errors import ConnectionLost, ProtocolError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "Connection", "ConnectionPair", "ConnectionState"]

DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024


class ConnectionState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


_TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.OPEN: frozenset({ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset(),
}


class Connection:
    """One side of an established distribution connection to ``peer_name``."""

    def __init__(
        self,
        peer_name: str,
        peer_flags: int = 0,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        monitors: dict[bytes, Monitor] | None = None,
    ) -> None:
        self.peer_name = peer_name
        self.peer_flags = peer_flags
        self.max_frame_size = max_frame_size
        self.state = ConnectionState.OPEN
        self.close_reason: str | None = None
        self._in = bytearray()  # the start of a frame not complete yet
        self._need = 4  # how many bytes _in needs to hold a complete frame
        self._out: list[bytes] = []
        # The process table's store of pending monitors (see _control.read_frames).
        self._monitors: dict[bytes, Monitor] = {} if monitors is None else monitors
        # Activity marks, cleared by the driver at each tick check.
        self.sent_since_check = False
        self.received_since_check = False

    def _move(self, state: ConnectionState, reason: str | None = None) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise ConnectionLost(f"connection to {self.peer_name} is {self.state.value}")
        self.state = state
        self.close_reason = reason

    # -- input ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ControlEvent]:
        """Feed bytes; returns the events of every complete frame, in order.

        Raises ProtocolError (and closes) on an oversize or malformed frame. Events of
        frames before the bad one are lost with it: the peer is going away anyway.
        """
        if self.state is not ConnectionState.OPEN:
            raise ConnectionLost(f"connection to {self.peer_name} is closed")
        if data:
            self.received_since_check = True
        pending = self._in
        if pending:
            # A frame split over many reads is joined once, when it is complete.
            pending += data
            if len(pending) < self._need:
                return []
            buf = bytes(pending)
            pending.clear()
        else:
            buf = data if type(data) is bytes else bytes(data)
        try:
            events, pos, need = read_frames(buf, self.max_frame_size, self._monitors)
        except ProtocolError as exc:
            self._fail(str(exc))
        if pos < len(buf):
            pending += buf[pos:]
            self._need = need
        return events

    def _fail(self, why: str) -> NoReturn:
        self._move(ConnectionState.CLOSED, why)
        raise ProtocolError(f"peer {self.peer_name}: {why}")

    # -- output -----------------------------------------------------------------

    def send(self, event: ControlEvent) -> None:
        """Queue ``event``; fetch the bytes with :meth:`data_to_send`."""
        if self.state is not ConnectionState.OPEN:
            raise ConnectionLost(f"connection to {self.peer_name} is closed")
        self._out.append(encode_frame(event))
        self.sent_since_check = True

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def has_data_to_send(self) -> bool:
        return bool(self._out)

    def close(self, reason: str = "closed locally") -> None:
        if self.state is ConnectionState.OPEN:
            self._move(ConnectionState.CLOSED, reason)

    # -- liveness (the driver calls these every ticktime/4) -------------------------

    def tick_due(self) -> bool:
        """True when nothing was sent since the last check: send a Tick now."""
        due = not self.sent_since_check
        self.sent_since_check = False
        return due

    def peer_silent(self) -> bool:
        """True when nothing was received since the last check."""
        silent = not self.received_since_check
        self.received_since_check = False
        return silent


class ConnectionPair:
    """Two :class:`Connection` objects joined in memory (for tests).

    ``pair.send(side, event)`` queues on one side; ``pair.pump()`` moves all pending
    bytes across and returns ``(events_at_a, events_at_b)``.
    """

    def __init__(
        self,
        a_name: str = "a@127.0.0.1",
        b_name: str = "b@127.0.0.1",
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.a = Connection(b_name, max_frame_size=max_frame_size)
        self.b = Connection(a_name, max_frame_size=max_frame_size)

    def pump(self) -> tuple[list[ControlEvent], list[ControlEvent]]:
        at_a: list[ControlEvent] = []
        at_b: list[ControlEvent] = []
        while self.a.has_data_to_send() or self.b.has_data_to_send():
            to_b = self.a.data_to_send()
            to_a = self.b.data_to_send()
            if to_b:
                at_b += self.b.receive_data(to_b)
            if to_a:
                at_a += self.a.receive_data(to_a)
        return at_a, at_b
