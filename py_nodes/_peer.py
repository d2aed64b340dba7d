"""The asyncio driver of one distribution socket: handshake, then frames and ticks.

One :class:`PeerProtocol` per socket. ``data_received`` feeds the sans-I/O
:class:`~py_nodes._handshake.Handshake`, then the :class:`~py_nodes._connection.Connection`,
and hands each event to the node in arrival order: there is no Task per message, the
transport's callback is the connection's single reader. Writes made while events are
dispatched are flushed once at the end of the batch; others on the next loop turn.

Ticks follow ``net_ticktime``: every ``tick_interval`` we send a tick if we sent
nothing since the last check, and the peer is declared dead after ``ticktime`` of
silence. The interval also shrinks to the gap seen between the peer's own idle ticks,
so a peer running a shorter ``net_ticktime`` still hears from us in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from py_nodes import _handshake
from py_nodes._connection import Connection, ConnectionState
from py_nodes._control import ControlEvent, Tick
from py_nodes._errors import CookieMismatch, HandshakeError, ProtocolError

if TYPE_CHECKING:
    from py_nodes._node import Node

__all__ = ["PeerProtocol"]

log = logging.getLogger("py_nodes.dist")


class PeerProtocol(asyncio.Protocol):
    """A socket to one peer node, as initiator (``peer_name`` known) or acceptor."""

    def __init__(self, node: Node, peer_name: str | None = None) -> None:
        self.node = node
        self.peer_name = peer_name
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
        node = self.node
        role = _handshake.Role.INITIATOR if self.peer_name else _handshake.Role.ACCEPTOR
        self.handshake = _handshake.Handshake(
            role,
            this_node=node.name,
            cookie=node.cookie,
            creation=node.creation,
            peer_node=self.peer_name,
        )
        self._write_handshake()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(node.handshake_timeout, self._handshake_timeout)

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
        node = self.node
        node._dispatching = True
        try:
            handlers = node._handlers
            other = node._dispatch_other
            for event in events:
                handlers.get(type(event), other)(self, event)
        except Exception:
            # User code never raises here (handlers are guarded), so this is a control
            # message with well-formed bytes but nonsense inside (a ref for a pid...).
            log.exception("connection to %s: cannot handle a control message", self.peer_name)
            self.abort("malformed control message; dropping the connection")
        finally:
            node._dispatching = False
            node._flush_dirty()

    def connection_lost(self, exc: Exception | None) -> None:
        was_up = self.conn is not None and not self.closed
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.up.done():
            self.up.set_result(False)
        if self.conn is not None:
            self.conn.close("socket closed")
        if was_up or self.conn is not None:
            self.node._peer_lost(self)

    # -- handshake ----------------------------------------------------------------------

    def _write_handshake(self) -> None:
        assert self.handshake is not None and self.transport is not None
        out = self.handshake.data_to_send()
        if out:
            self.transport.write(out)

    def _handshake_data(self, data: bytes) -> None:
        hs = self.handshake
        assert hs is not None
        try:
            events = hs.receive_data(data)
            for event in events:
                if isinstance(event, _handshake.StatusNeeded):
                    self.peer_name = event.peer_name
                    status = self.node._handshake_status(self, event.peer_name)
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
        if self.conn is None and not self.closed:
            log.warning(
                "handshake with %s timed out after %.1fs",
                self.peer_name or "peer", self.node.handshake_timeout,
            )
            self.abort(None)

    def _handshake_done(self, event: _handshake.HandshakeDone) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.peer_name = event.peer_name
        self.conn = Connection(
            event.peer_name, event.peer_flags, max_frame_size=self.node.max_frame_size
        )
        self._last_rx = time.monotonic()
        self.node._peer_up(self)
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
            node = self.node
            node._dirty.append(self)
            if not node._dispatching:
                node._schedule_flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        conn = self.conn
        if conn is not None and self.transport is not None and not self.closed:
            data = conn.data_to_send()
            if data:
                self.transport.write(data)

    def abort(self, why: str | None) -> None:
        """Drop this connection now (logs ``why`` when given)."""
        if self.closed:
            return
        if why:
            log.warning("connection to %s: %s", self.peer_name or "peer", why)
        if self.conn is not None and self.conn.state is ConnectionState.OPEN:
            self.conn.close(why or "aborted")
        if self.transport is not None:
            self.transport.abort()

    # -- ticks ----------------------------------------------------------------------------

    def _saw_tick(self) -> None:
        # An idle peer ticks every net_ticktime/4 of its own: learn that interval.
        if self._rx_gap > 0.05:
            self._peer_tick_gap = min(self._peer_tick_gap, self._rx_gap)

    def tick_interval(self) -> float:
        return min(self.node.net_ticktime / 4, self._peer_tick_gap)

    def _schedule_tick(self) -> None:
        interval = self.tick_interval()
        self._timer = asyncio.get_running_loop().call_later(interval, self._on_tick, interval)

    def _on_tick(self, interval: float) -> None:
        conn = self.conn
        if conn is None or self.closed:
            return
        if conn.peer_silent():
            self._silent_for += interval
            limit = self.node.net_ticktime
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
