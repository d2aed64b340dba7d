"""Routing between the node and its peers: connections and incoming control messages.

:class:`Router` is the half of :class:`~py_nodes.Node` that talks to other nodes. It
owns the peer table and the per-node bookkeeping that makes a lost connection behave
as in Erlang:

* ``_remote_links[node]``: ``(local pid, remote pid)`` links across that connection;
* ``_remote_monitors[node]``: ``ref -> local watcher`` for monitors we hold there;
* ``_peer_monitors[node]``: ``ref -> local target`` for monitors that node holds on us
  (the target keeps the same ref, so both sides of a monitor share one Reference), once
  installed: until then they are pending in the connection (``pending_monitors``);
* ``_spawning``: ``ReqId ->`` :class:`~py_nodes._rpc.PendingSpawn` for our spawn requests.

When a connection goes, local processes linked to its pids get exit ``noconnection``,
local monitors of its processes get ``DOWN noconnection``, its monitors on our
processes are dropped, and our spawn requests to it fail with :class:`NodeDown`.

Aliases are node-wide: ``_aliases[alias] = (owner pid, works once)``, and
``_alias_owners[pid]`` lists those made with :meth:`Node.alias` so that they die with
their process. ALIAS_SEND and local sends to a reference go through
:meth:`Router._deliver_to_alias`, which drops a message to an inactive alias.

Messages to a node that is not connected yet wait in ``_outbox`` while a connection is
made (PORT_PLEASE2, connect, handshake); if that fails they are dropped, as Erlang
drops them.

Concurrent connection attempts follow ``dist_util``: an incoming handshake from a node
we are connecting to is answered ``nok`` when our name is greater (our attempt wins)
and ``ok_simultaneous`` otherwise; one from a node already connected gets ``alive``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from py_nodes import _epmd, _rpc
from py_nodes._control import (
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
    Unlink,
    UnlinkId,
    UnlinkIdAck,
)
from py_nodes._errors import NodeDown, PyNodesError
from py_nodes._peer import PeerProtocol
from py_nodes._process import Process
from py_nodes._terms import Atom, Pid, Reference

if TYPE_CHECKING:
    from py_nodes._node import Node

__all__ = ["Router"]

log = logging.getLogger("py_nodes.node")

DOWN = Atom("DOWN")
PROCESS = Atom("process")
NOPROC = Atom("noproc")
NOCONNECTION = Atom("noconnection")
# Pending monitors of a connection are installed when there are more than this: their
# DEMONITOR_P may never come (a monitor answered noproc, one held for long).
_MAX_PENDING_MONITORS = 4096


def _on_tick(peer: PeerProtocol, event: Tick) -> None:
    peer._saw_tick()


class Router:
    """Peers and control-message dispatch; :class:`~py_nodes.Node` builds on it."""

    name: str
    started: bool
    epmd_port: int
    handshake_timeout: float
    _procs: dict[Pid, Process]
    _names: dict[Atom, Pid]
    _peers: dict[str, PeerProtocol]
    _connecting: dict[str, asyncio.Task[bool]]
    _accepting: dict[str, PeerProtocol]
    _outbox: dict[str, list[ControlEvent]]
    _remote_links: dict[str, set[tuple[Pid, Pid]]]
    _remote_monitors: dict[str, dict[Reference, Pid]]
    _peer_monitors: dict[str, dict[Reference, Pid]]
    _aliases: dict[Reference, tuple[Pid, bool]]
    _alias_owners: dict[Pid, set[Reference]]
    _spawning: dict[Reference, _rpc.PendingSpawn]
    _up_waiters: dict[str, asyncio.Future[None]]  # _connect refused "nok", by peer name
    _last_watcher: Pid | None
    _dirty: list[PeerProtocol]
    _dispatching: bool
    _flush_handle: asyncio.Handle | None
    _handlers: dict[type, Callable[[PeerProtocol, Any], None]]

    def _init_router(self) -> None:
        self._peers = {}
        self._connecting = {}
        self._up_waiters = {}
        self._accepting = {}
        self._outbox = {}
        self._remote_links = {}
        self._remote_monitors = {}
        self._peer_monitors = {}
        self._aliases = {}
        self._alias_owners = {}
        self._spawning = {}
        self._last_watcher = None
        self._dirty = []
        self._dispatching = False
        self._flush_handle = None
        self._handlers = self._event_handlers()

    # -- connections ----------------------------------------------------------------------------

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
            address = await _epmd.port_please(alive, host=host, epmd_port=self.epmd_port)
            if address is None:
                raise NodeDown(f"epmd on {host} does not know {alive}")
            loop = asyncio.get_running_loop()
            node = cast("Node", self)
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: PeerProtocol(node, node_name), host, address.port),
                self.handshake_timeout,
            )
            ok = await proto.up
            refused = proto.handshake is not None and proto.handshake.status == "nok"
        except (OSError, PyNodesError, TimeoutError) as exc:
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
            self._node_down(node_name)
        return node_name in self._peers

    def _handshake_status(self, peer: PeerProtocol, peer_name: str) -> str:
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

    def _peer_up(self, peer: PeerProtocol) -> None:
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
            self._node_down(name)
        log.info("connected to %s", name)
        waiter = self._up_waiters.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        for event in self._outbox.pop(name, ()):
            peer.send(event)
        self._flush_dirty()

    def _peer_lost(self, peer: PeerProtocol) -> None:
        name = peer.peer_name
        if name is None or self._peers.get(name) is not peer:
            return
        del self._peers[name]
        log.info("connection to %s lost", name)
        self._node_down(name)

    def _node_down(self, name: str) -> None:
        self._outbox.pop(name, None)
        if self._spawning:
            _rpc.fail_spawns(cast("Node", self), name)
        for local, remote in self._remote_links.pop(name, ()):
            proc = self._procs.get(local)
            if proc is not None:
                proc._exit_signal(remote, NOCONNECTION, link=True)
        for ref, watcher in self._remote_monitors.pop(name, {}).items():
            wproc = self._procs.get(watcher)
            if wproc is not None and wproc._monitoring is not None:
                ident = wproc._monitoring.pop(ref, None)
                wproc._deliver((DOWN, ref, PROCESS, ident, NOCONNECTION))
        for ref, target in self._peer_monitors.pop(name, {}).items():
            tproc = self._procs.get(target)
            if tproc is not None:
                tproc._drop_watcher(ref)

    def _send_remote(self, node_name: str, event: ControlEvent) -> None:
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

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_handle = None
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for peer in dirty:
                peer.flush()

    # -- incoming control messages ----------------------------------------------------------------

    def _event_handlers(self) -> dict[type, Callable[[PeerProtocol, Any], None]]:
        """The handler of each kind of incoming event; the others go to _dispatch_other.

        The driver looks the handler up for each event: a gen_server:call makes two
        (MONITOR_P, REG_SEND; its DEMONITOR_P only takes the monitor back from the
        connection), each handled one call deep.
        """
        return {
            Send: self._on_send,
            RegSend: self._on_reg_send,
            Monitor: self._on_monitor,
            Demonitor: self._on_demonitor,
            Tick: _on_tick,
        }

    def _on_send(self, peer: PeerProtocol, event: Send) -> None:
        proc = self._procs.get(event.to_pid)
        if proc is not None:
            proc._deliver(event.message)

    def _on_reg_send(self, peer: PeerProtocol, event: RegSend) -> None:
        pid = self._names.get(event.to_name)
        if pid is not None:
            proc = self._procs.get(pid)
            if proc is not None:
                proc._deliver(event.message)

    def _on_monitor(self, peer: PeerProtocol, event: Monitor) -> None:
        # The monitor stays pending in the connection (see read_frames); only a missing
        # target is answered now.
        if self._monitored_process(event.target) is None:
            peer.send(MonitorExit(event.target, event.from_pid, event.ref, NOPROC))
        conn = peer.conn
        if conn is not None and len(conn.pending_monitors) > _MAX_PENDING_MONITORS:
            self._install_monitors(peer)

    def _install_monitors(self, peer: PeerProtocol) -> None:
        """Take over the monitors pending in ``peer``'s connection.

        Until then, an exit or a name change could not find them: every exit and every
        (un)registration installs them all first, so a target resolves here as it did
        when its MONITOR_P came. One whose target was missing then is missing now, and
        was answered ``noproc`` already.
        """
        conn = peer.conn
        if conn is None or not conn.pending_monitors:
            return
        assert peer.peer_name is not None
        monitors = self._peer_monitors.get(peer.peer_name)
        if monitors is None:
            monitors = self._peer_monitors[peer.peer_name] = {}
        for event in conn.pending_monitors.values():
            proc = self._monitored_process(event.target)
            if proc is None:
                continue
            name = event.target if type(event.target) is Atom else None
            # Monitors from one process (a registry watching every worker) share one
            # watcher pid instead of a decoded copy each.
            watcher = event.from_pid
            if watcher == self._last_watcher:
                watcher = self._last_watcher
            else:
                self._last_watcher = watcher
            proc._add_watcher(event.ref, watcher, name)
            monitors[event.ref] = proc.pid
        conn.pending_monitors.clear()

    def _monitored_process(self, target: Pid | Atom) -> Process | None:
        """The local process a MONITOR_P names, by pid or by registered name."""
        pid = self._names.get(target) if type(target) is Atom else target
        return self._procs.get(pid) if pid is not None else None

    def _install_all_monitors(self) -> None:
        for peer in self._peers.values():
            conn = peer.conn
            if conn is not None and conn.pending_monitors:
                self._install_monitors(peer)

    def _on_demonitor(self, peer: PeerProtocol, event: Demonitor) -> None:
        assert peer.peer_name is not None
        monitors = self._peer_monitors.get(peer.peer_name)
        pid = monitors.pop(event.ref, None) if monitors else None
        if pid is None and peer.conn is not None and peer.conn.pending_monitors:
            # Its MONITOR_P may still be pending, under its whole body (not in the usual
            # form): install, then look again.
            self._install_monitors(peer)
            pid = self._peer_monitors[peer.peer_name].pop(event.ref, None)
        if pid is not None:
            proc = self._procs.get(pid)
            if proc is not None:
                proc._drop_watcher(event.ref)

    def _dispatch_other(self, peer: PeerProtocol, event: ControlEvent) -> None:
        peer_name = peer.peer_name
        assert peer_name is not None
        match event:
            case AliasSend(_, alias, message):
                self._deliver_to_alias(alias, message)
            case Link(from_pid, to_pid):
                proc = self._procs.get(to_pid)
                if proc is None:
                    peer.send(Exit(to_pid, from_pid, NOPROC))
                    return
                self._add_remote_link(proc, from_pid, peer_name)
            case Exit(from_pid, to_pid, reason):
                self._remote_links.get(peer_name, set()).discard((to_pid, from_pid))
                proc = self._procs.get(to_pid)
                if proc is not None:
                    proc._exit_signal(from_pid, reason, link=True)
            case Exit2(from_pid, to_pid, reason):
                proc = self._procs.get(to_pid)
                if proc is not None:
                    proc._exit_signal(from_pid, reason, link=False)
            case UnlinkId(unlink_id, from_pid, to_pid):
                self._drop_remote_link(peer_name, to_pid, from_pid)
                peer.send(UnlinkIdAck(unlink_id, to_pid, from_pid))
            case Unlink(from_pid, to_pid):
                self._drop_remote_link(peer_name, to_pid, from_pid)
            case MonitorExit(from_proc, to_pid, ref, reason):
                if self._remote_monitors.get(peer_name, {}).pop(ref, None) is None:
                    return
                proc = self._procs.get(to_pid)
                if proc is not None and proc._monitoring is not None:
                    ident = proc._monitoring.pop(ref, None)
                    proc._deliver((DOWN, ref, PROCESS, ident or from_proc, reason))
            case SpawnRequest():
                _rpc.spawn_request(cast("Node", self), peer, event)
            case SpawnReply():
                _rpc.spawn_reply(cast("Node", self), peer, event)
            case _:
                pass  # UNLINK_ID_ACK, GROUP_LEADER: nothing to do

    def _deliver_to_alias(self, alias: Reference, message: Any) -> None:
        # An inactive alias (unaliased, its owner gone, a call that timed out) drops the
        # message: this is what keeps a late reply away from a caller that gave up.
        entry = self._aliases.get(alias)
        if entry is None:
            return
        pid, once = entry
        if once:
            self._drop_alias(pid, alias)
        proc = self._procs.get(pid)
        if proc is not None:
            proc._deliver(message)

    def _drop_alias(self, pid: Pid, alias: Reference) -> bool:
        if self._aliases.pop(alias, None) is None:
            return False
        owned = self._alias_owners.get(pid)
        if owned is not None:
            owned.discard(alias)
            if not owned:
                del self._alias_owners[pid]
        return True

    def _add_remote_link(self, proc: Process, remote: Pid, node_name: str) -> None:
        """``proc`` is linked to ``remote``, across the connection to ``node_name``."""
        if proc._links is None:
            proc._links = set()
        proc._links.add(remote)
        self._remote_links.setdefault(node_name, set()).add((proc.pid, remote))

    def _add_remote_monitor(
        self, proc: Process, ref: Reference, ident: Pid | tuple[Atom, Atom], node_name: str
    ) -> None:
        """``proc`` monitors ``ident`` on ``node_name`` under ``ref``."""
        if proc._monitoring is None:
            proc._monitoring = {}
        proc._monitoring[ref] = ident
        self._remote_monitors.setdefault(node_name, {})[ref] = proc.pid

    def _drop_remote_link(self, peer_name: str, local: Pid, remote: Pid) -> None:
        self._remote_links.get(peer_name, set()).discard((local, remote))
        proc = self._procs.get(local)
        if proc is not None and proc._links is not None:
            proc._links.discard(remote)
