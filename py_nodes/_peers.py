"""The node's connections to other nodes: making them, sending on them, losing them.

:class:`Peers` owns the peer table and what goes with it: the connection attempts in
progress, the handshakes being accepted, the messages waiting for a connection, and
the batching of writes. It knows nothing of processes: incoming events go to the
handlers it is given, and a lost connection is reported to ``node_down(name)``.

Messages to a node that is not connected yet wait in ``_outbox`` while a connection is
made (PORT_PLEASE2, connect, handshake); if that fails they are dropped, as Erlang
drops them.

Concurrent connection attempts follow ``dist_util``: an incoming handshake from a node
we are connecting to is answered ``nok`` when our name is greater (our attempt wins)
and ``ok_simultaneous`` otherwise; one from a node already connected gets ``alive``.

Writes made while a batch of incoming events is handled are flushed once at its end
(:meth:`Peers.end_batch`); others on the next turn of the event loop.

With TLS settings (:mod:`py_nodes._tls`) every connection is TLS from its first byte, as
with OTP's ``inet_tls_dist``; the distribution protocol above it does not change. An
accepted socket's handshake is awaited here rather than inside an asyncio server, so
that a refused peer (no certificate, another CA, a plain node) is logged with its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from py_nodes import _epmd
from py_nodes._control import ControlEvent, Monitor, Tick
from py_nodes._errors import NodeDown, PyNodesError
from py_nodes._peer import EventHandler, PeerProtocol
from py_nodes._tls import TlsConfig, describe_tls_error, plain_peer_hint

__all__ = ["Listener", "Peers", "Settings"]

log = logging.getLogger("py_nodes.node")


class Settings(Protocol):
    """Who the node is and how it connects; read at each use, so changes apply."""

    @property
    def name(self) -> str: ...
    @property
    def cookie(self) -> str: ...
    @property
    def creation(self) -> int: ...
    @property
    def epmd_port(self) -> int: ...
    @property
    def handshake_timeout(self) -> float: ...
    @property
    def max_frame_size(self) -> int: ...
    @property
    def net_ticktime(self) -> float: ...
    @property
    def tls(self) -> TlsConfig | None: ...


def _on_tick(peer: PeerProtocol, event: Tick) -> None:
    peer.saw_tick()


class Peers:
    """The connections of the node ``settings`` (a :class:`~py_nodes._peer.PeerHost`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        handlers: dict[type, EventHandler],
        other_events: EventHandler,
        pending_store: Callable[[str], dict[bytes, Monitor]],
        node_down: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self.handlers: dict[type, EventHandler] = {**handlers, Tick: _on_tick}
        self.other_events = other_events
        self._pending_store = pending_store
        self._node_down = node_down
        #: True between the node's start and stop: only then are connections accepted.
        self.started = False
        self._peers: dict[str, PeerProtocol] = {}
        self._connecting: dict[str, asyncio.Task[bool]] = {}
        self._accepting: dict[str, PeerProtocol] = {}
        self._outbox: dict[str, list[ControlEvent]] = {}
        self._up_waiters: dict[str, asyncio.Future[None]] = {}  # "nok" answers, by name
        self._dirty: list[PeerProtocol] = []
        self._dispatching = False
        self._flush_handle: asyncio.Handle | None = None
        self._tls_handshakes: set[asyncio.Task[None]] = set()  # accepted, not TLS yet

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def cookie(self) -> str:
        return self._settings.cookie

    @property
    def creation(self) -> int:
        return self._settings.creation

    @property
    def handshake_timeout(self) -> float:
        return self._settings.handshake_timeout

    @property
    def max_frame_size(self) -> int:
        return self._settings.max_frame_size

    @property
    def net_ticktime(self) -> float:
        return self._settings.net_ticktime

    # -- listening and closing ------------------------------------------------------------

    async def serve(self, host: str, port: int) -> Listener:
        """Accept connections from other nodes on ``host:port``."""
        loop = asyncio.get_running_loop()
        if self._settings.tls is None:
            return await loop.create_server(lambda: PeerProtocol(self), host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = _TlsListener(self, socket.create_server((host, port), family=family))
        listener.start()
        return listener

    def accept_tls(self, sock: socket.socket, address: object) -> None:
        """Take an accepted socket through the TLS handshake, then to a new peer; a
        failed handshake closes it, logged with its cause."""
        task = asyncio.get_running_loop().create_task(self._accept_tls(sock, address))
        self._tls_handshakes.add(task)
        task.add_done_callback(self._tls_handshakes.discard)

    async def _accept_tls(self, sock: socket.socket, address: object) -> None:
        tls = self._settings.tls
        assert tls is not None
        try:
            # The peer protocol sees connection_made only once the TLS handshake is done.
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: PeerProtocol(self, tls=True),
                sock,
                ssl=tls.server_context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except asyncio.CancelledError:
            sock.close()
            raise
        except (OSError, TimeoutError) as exc:
            log.warning(
                "refused a connection from %s: TLS handshake failed: %s%s",
                _address(address),
                describe_tls_error(exc),
                plain_peer_hint(exc),
            )
            sock.close()

    def close(self) -> None:
        """Flush what is waiting, give up connecting, close every connection."""
        self.flush()
        for task in [*self._connecting.values(), *self._tls_handshakes]:
            task.cancel()
        for peer in list(self._peers.values()):
            peer.close()

    # -- connections ----------------------------------------------------------------------

    def nodes(self) -> list[str]:
        """Names of the nodes connected now."""
        return list(self._peers)

    async def connect(self, node_name: str) -> bool:
        """Connect to ``node_name`` (no-op when connected); True when up."""
        if node_name in self._peers:
            return True
        task = self._connecting.get(node_name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(node_name))
            self._connecting[node_name] = task
        return await asyncio.shield(task)

    def disconnect(self, node_name: str) -> bool:
        """``erlang:disconnect_node``: drop the connection; True if there was one."""
        peer = self._peers.get(node_name)
        if peer is None:
            return False
        peer.abort("disconnected on request")
        return True

    async def _connect(self, node_name: str) -> bool:
        try:
            alive, _, host = node_name.partition("@")
            address = await _epmd.port_please(alive, host=host, epmd_port=self._settings.epmd_port)
            if address is None:
                raise NodeDown(f"epmd on {host} does not know {alive}")
            loop = asyncio.get_running_loop()
            tls = self._settings.tls
            connecting = (
                loop.create_connection(lambda: PeerProtocol(self, node_name), host, address.port)
                if tls is None
                else loop.create_connection(
                    lambda: PeerProtocol(self, node_name, tls=True),
                    host,
                    address.port,
                    ssl=tls.client_context,
                    ssl_handshake_timeout=self.handshake_timeout,
                )
            )
            _, proto = await asyncio.wait_for(connecting, self.handshake_timeout)
            ok = await proto.up
            refused = proto.handshake is not None and proto.handshake.status == "nok"
        except (OSError, PyNodesError, TimeoutError) as exc:
            if self._settings.tls is not None and isinstance(exc, _TLS_HANDSHAKE_FAILURES):
                log.warning(
                    "cannot connect to %s: TLS handshake failed: %s%s",
                    node_name,
                    describe_tls_error(exc),
                    plain_peer_hint(exc),
                )
            else:
                log.warning("cannot connect to %s: %s", node_name, exc)
            ok = refused = False
        try:
            on_its_way = node_name not in self._accepting and node_name not in self._peers
            if not ok and refused and on_its_way:
                # "nok": the peer is connecting to us and its attempt wins, but it may
                # not have reached us yet. Messages waiting for it go on that one.
                waiter = self._up_waiters.setdefault(
                    node_name, asyncio.get_running_loop().create_future()
                )
                await asyncio.wait_for(asyncio.shield(waiter), self.handshake_timeout)
                ok = True
            accepting = self._accepting.get(node_name)
            if not ok and accepting is not None and not accepting.closed:
                # We answered its own attempt ok_simultaneous: that one will carry us.
                ok = await asyncio.wait_for(asyncio.shield(accepting.up), self.handshake_timeout)
        except TimeoutError:
            ok = False
        finally:
            self._connecting.pop(node_name, None)
            self._up_waiters.pop(node_name, None)
        if not ok and node_name not in self._peers:
            self._lost(node_name)
        return node_name in self._peers

    def handshake_status(self, peer: PeerProtocol, peer_name: str) -> str:
        """The status an incoming handshake from ``peer_name`` gets."""
        if not self.started or peer_name == self.name:
            return "not_allowed"
        if peer_name in self._peers:
            return "alive"
        status = "ok"
        if peer_name in self._connecting:
            # Simultaneous connect: the node with the greater name keeps its own attempt.
            if self.name > peer_name:
                return "nok"
            status = "ok_simultaneous"
        self._accepting[peer_name] = peer
        return status

    def pending_store(self, peer_name: str) -> dict[bytes, Monitor]:
        """The store of pending monitors for a new connection to ``peer_name``."""
        return self._pending_store(peer_name)

    def peer_up(self, peer: PeerProtocol) -> None:
        """``peer``'s handshake is done: it carries what waited for its node."""
        name = peer.peer_name
        assert name is not None
        old = self._peers.get(name)
        self._peers[name] = peer
        if self._accepting.get(name) is peer:
            del self._accepting[name]
        if old is not None and old is not peer:
            # The peer restarted (handshake status "alive" answered "true"): what
            # was linked to or monitored on its old incarnation is gone with it.
            old.abort("replaced by a new connection from the same node")
            self._lost(name)
        log.info("connected to %s", name)
        waiter = self._up_waiters.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        for event in self._outbox.pop(name, ()):
            peer.send(event)
        self.flush()

    def peer_lost(self, peer: PeerProtocol) -> None:
        """``peer``'s socket closed."""
        name = peer.peer_name
        if name is None or self._peers.get(name) is not peer:
            return
        del self._peers[name]
        log.info("connection to %s lost", name)
        self._lost(name)

    def _lost(self, name: str) -> None:
        self._outbox.pop(name, None)
        self._node_down(name)

    # -- sending --------------------------------------------------------------------------

    def send(self, node_name: str, event: ControlEvent) -> None:
        """Send ``event`` to ``node_name``, connecting first if needed."""
        peer = self._peers.get(node_name)
        if peer is not None:
            peer.send(event)
            return
        if not self.started:
            return
        self._outbox.setdefault(node_name, []).append(event)
        if node_name not in self._connecting:
            task = asyncio.get_running_loop().create_task(self._connect(node_name))
            self._connecting[node_name] = task

    def begin_batch(self) -> None:
        """Events are being handled: hold writes until :meth:`end_batch`."""
        self._dispatching = True

    def end_batch(self) -> None:
        self._dispatching = False
        self.flush()

    def mark_dirty(self, peer: PeerProtocol) -> None:
        """``peer`` has bytes to write: at the end of the batch, or on the next turn."""
        self._dirty.append(peer)
        if not self._dispatching and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what every connection has waiting."""
        self._flush_handle = None
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for peer in dirty:
                peer.flush()


# What a TLS handshake fails with: OpenSSL's errors, or the peer closing the socket on
# us (a plain node, or one that does not trust our certificate).
_TLS_HANDSHAKE_FAILURES = (ssl.SSLError, ConnectionResetError, ConnectionAbortedError)


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class Listener(Protocol):
    """What :meth:`Peers.serve` returns: an :class:`asyncio.Server`, or its TLS twin."""

    @property
    def sockets(self) -> tuple[socket.socket, ...]: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class _TlsListener:
    """A listening socket whose connections go through :meth:`Peers.accept_tls`.

    asyncio's own TLS server would drop a failed handshake without telling anyone, so
    sockets are accepted here and each handshake is awaited where its failure can be
    logged."""

    def __init__(self, peers: Peers, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._peers = peers
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(self._sock)
            except OSError as exc:  # out of file descriptors: wait, do not spin
                log.warning("cannot accept a connection: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self._peers.accept_tls(sock, address)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._sock.close()

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
