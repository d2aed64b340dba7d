"""The asyncio driver of one distribution socket: handshake, then frames and ticks.

One :class:`PeerProtocol` per socket. ``data_received`` feeds the sans-I/O
:class:`~py_nodes._handshake.Handshake`, then the :class:`~py_nodes._connection.Connection`,
and hands each event to its handler in arrival order: there is no Task per message, the
transport's callback is the connection's single reader. Writes made while events are
dispatched are flushed once at the end of the batch; others on the next loop turn. What
the protocol needs from the rest of the node is its :class:`PeerHost`.

Ticks follow ``net_ticktime``: every ``tick_interval`` we send a tick if we sent
nothing since the last check, and the peer is declared dead after ``ticktime`` of
silence. The interval also shrinks to the gap seen between the peer's own idle ticks,
so a peer running a shorter ``net_ticktime`` still hears from us in time.

A plain connection whose first bytes are a TLS record met a TLS node (its ClientHello, or
its alert refusing our plain handshake): it is dropped at once with that cause, rather
than left waiting for a handshake message that never comes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from py_nodes import _handshake
from py_nodes._connection import Connection, ConnectionState
from py_nodes._control import ControlEvent, Monitor, Tick
from py_nodes._errors import CookieMismatch, HandshakeError, ProtocolError
from py_nodes._tls import TLS_RECORD_STARTS, describe_tls_error

__all__ = ["EventHandler", "PeerHost", "PeerProtocol"]

log = logging.getLogger("py_nodes.dist")

#: What handles one incoming control event: ``handler(peer, event)``.
EventHandler = Callable[["PeerProtocol", Any], None]


class PeerHost(Protocol):
    """The node's side of its connections, as a :class:`PeerProtocol` sees it."""

    @property
    def name(self) -> str: ...
    @property
    def cookie(self) -> str: ...
    @property
    def creation(self) -> int: ...
    @property
    def handshake_timeout(self) -> float: ...
    @property
    def max_frame_size(self) -> int: ...
    @property
    def net_ticktime(self) -> float: ...
    @property
    def handlers(self) -> dict[type, EventHandler]: ...
    @property
    def other_events(self) -> EventHandler: ...

    def handshake_status(self, peer: PeerProtocol, peer_name: str) -> str: ...
    def pending_store(self, peer_name: str) -> dict[bytes, Monitor]: ...
    def peer_up(self, peer: PeerProtocol) -> None: ...
    def peer_lost(self, peer: PeerProtocol) -> None: ...
    def begin_batch(self) -> None: ...
    def end_batch(self) -> None: ...
    def mark_dirty(self, peer: PeerProtocol) -> None: ...


class PeerProtocol(asyncio.Protocol):
    """A socket to one peer node, as initiator (``peer_name`` known) or acceptor."""

    def __init__(self, host: PeerHost, peer_name: str | None = None, *, tls: bool = False) -> None:
        self.host = host
        self.peer_name = peer_name
        #: Whether the socket is TLS (set up before :meth:`connection_made`).
        self.tls = tls
        self._first_data = True
        self._closing = False  # we closed it ourselves
        self.handshake: _handshake.Handshake | None = None
        self.conn: Connection | None = None
        self.transport: asyncio.Transport | None = None
        self.up: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._silent_for = 0.0
        self._last_rx = time.monotonic()
        self._rx_gap = 0.0
        self._peer_tick_gap = float("inf")
        self.closed = False

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        host = self.host
        role = _handshake.Role.INITIATOR if self.peer_name else _handshake.Role.ACCEPTOR
        self.handshake = _handshake.Handshake(
            role,
            this_node=host.name,
            cookie=host.cookie,
            creation=host.creation,
            peer_node=self.peer_name,
            length_size=4 if self.tls else 2,  # as inet_tls_dist frames it
        )
        self._write_handshake()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(host.handshake_timeout, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        conn = self.conn
        if conn is None:
            self._handshake_data(data)
            return
        now = time.monotonic()
        self._rx_gap = now - self._last_rx
        self._last_rx = now
        try:
            events = conn.receive_data(data)
        except ProtocolError as exc:
            self.abort(f"{exc}; dropping the connection")
            return
        host = self.host
        host.begin_batch()
        try:
            handlers = host.handlers
            other = host.other_events
            for event in events:
                handlers.get(type(event), other)(self, event)
        except Exception:
            # User code never raises here (handlers are guarded), so this is a control
            # message with well-formed bytes but nonsense inside (a ref for a pid...).
            log.exception("connection to %s: cannot handle a control message", self.peer_name)
            self.abort("malformed control message; dropping the connection")
        finally:
            host.end_batch()

    def connection_lost(self, exc: Exception | None) -> None:
        was_up = self.conn is not None and not self.closed
        handshaking = self.handshake is not None and self.conn is None
        if handshaking and not self.closed and not self._closing:
            # Closed by the peer during the handshake: over TLS, this is how a peer that
            # rejects our certificate says so (TLS 1.3 checks it after the client is done).
            if exc is not None:
                cause = describe_tls_error(exc)
            elif self.tls or not self._first_data:
                cause = "closed by the peer"
            else:
                # A TLS node drops a plain handshake without a word (Python's) or with an
                # alert (OTP's, caught in _handshake_data).
                cause = (
                    "closed by the peer before it answered (a TLS node does that to a plain one)"
                )
            log.warning("handshake with %s failed: %s", self._who(), cause)
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.up.done():
            self.up.set_result(False)
        if self.conn is not None:
            self.conn.close("socket closed")
        if was_up or self.conn is not None:
            self.host.peer_lost(self)

    # -- handshake ----------------------------------------------------------------------

    def _write_handshake(self) -> None:
        assert self.handshake is not None and self.transport is not None
        out = self.handshake.data_to_send()
        if out:
            self.transport.write(out)

    def _who(self) -> str:
        if self.peer_name:
            return self.peer_name
        address = self.transport.get_extra_info("peername") if self.transport else None
        if isinstance(address, tuple) and len(address) >= 2:
            return f"the peer at {address[0]}:{address[1]}"
        return "peer"

    def _handshake_data(self, data: bytes) -> None:
        hs = self.handshake
        assert hs is not None
        if self._first_data:
            self._first_data = False
            if not self.tls and data[:2] in TLS_RECORD_STARTS:
                log.warning(
                    "refused %s: it speaks TLS distribution, this node plain distribution "
                    "(give both the same TLS settings, or neither)",
                    self._who(),
                )
                self.abort(None)
                return
        try:
            events = hs.receive_data(data)
            for event in events:
                if isinstance(event, _handshake.StatusNeeded):
                    self.peer_name = event.peer_name
                    status = self.host.handshake_status(self, event.peer_name)
                    hs.send_status(status)
                    self._write_handshake()
                    if status not in ("ok", "ok_simultaneous", "alive"):
                        log.info("refused connection from %s: status %s", event.peer_name, status)
                        self.closed = True
                        if self.transport is not None:
                            self.transport.close()  # close, not abort: the status must go out
                        return
                    # The challenge is pending; more data may already be buffered.
                    events += hs.receive_data(b"")
                elif isinstance(event, _handshake.HandshakeDone):
                    self._write_handshake()
                    self._handshake_done(event)
                    return
            self._write_handshake()
        except CookieMismatch as exc:
            log.warning("refused %s: %s", self.peer_name or "peer", exc)
            self.abort(None)
        except HandshakeError as exc:
            if hs.status == "nok":  # a simultaneous connect the peer's attempt wins
                log.info("handshake with %s: %s", self.peer_name, exc)
            else:
                log.warning("handshake with %s failed: %s", self.peer_name or "peer", exc)
            self.abort(None)

    def _handshake_timeout(self) -> None:
        self._timer = None
        handshaking = self.handshake is not None and self.conn is None
        if handshaking and not self.closed and not self._closing:
            log.warning(
                "handshake with %s timed out after %.1fs",
                self.peer_name or "peer",
                self.host.handshake_timeout,
            )
            self.abort(None)

    def _handshake_done(self, event: _handshake.HandshakeDone) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.peer_name = event.peer_name
        self.conn = Connection(
            event.peer_name,
            event.peer_flags,
            max_frame_size=self.host.max_frame_size,
            monitors=self.host.pending_store(event.peer_name),
        )
        self._last_rx = time.monotonic()
        self.host.peer_up(self)
        if not self.up.done():
            self.up.set_result(True)
        self._schedule_tick()
        if event.leftover:
            self.data_received(event.leftover)

    # -- sending --------------------------------------------------------------------------

    def send(self, event: ControlEvent) -> None:
        conn = self.conn
        if conn is None or self.closed:
            return
        conn.send(event)
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.host.mark_dirty(self)

    def flush(self) -> None:
        self._flush_scheduled = False
        conn = self.conn
        if conn is not None and self.transport is not None and not self.closed:
            data = conn.data_to_send()
            if data:
                self.transport.write(data)

    def close(self) -> None:
        """Close the socket once what is written has gone out."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self, why: str | None) -> None:
        """Drop this connection now (logs ``why`` when given)."""
        if self.closed:
            return
        self._closing = True
        if why:
            log.warning("connection to %s: %s", self.peer_name or "peer", why)
        if self.conn is not None and self.conn.state is ConnectionState.OPEN:
            self.conn.close(why or "aborted")
        if self.transport is not None:
            self.transport.abort()

    # -- ticks ----------------------------------------------------------------------------

    def saw_tick(self) -> None:
        """A tick came: remember the peer's idle interval."""
        # An idle peer ticks every net_ticktime/4 of its own: learn that interval.
        if self._rx_gap > 0.05:
            self._peer_tick_gap = min(self._peer_tick_gap, self._rx_gap)

    def tick_interval(self) -> float:
        return min(self.host.net_ticktime / 4, self._peer_tick_gap)

    def _schedule_tick(self) -> None:
        interval = self.tick_interval()
        self._timer = asyncio.get_running_loop().call_later(interval, self._on_tick, interval)

    def _on_tick(self, interval: float) -> None:
        conn = self.conn
        if conn is None or self.closed:
            return
        if conn.peer_silent():
            self._silent_for += interval
            limit = self.host.net_ticktime
            if self._peer_tick_gap != float("inf"):
                limit = max(limit, 4 * self._peer_tick_gap)
            if self._silent_for >= limit:
                self.abort(f"no data for {self._silent_for:.1f}s (net_ticktime); peer is dead")
                return
        else:
            self._silent_for = 0.0
        if conn.tick_due():
            conn.send(Tick())
            self.flush()
        self._schedule_tick()
