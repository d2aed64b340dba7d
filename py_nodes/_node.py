"""The node: a thin front over its process table, its peers and its spawner.

:class:`Node` holds three parts and wires them together: the process table
(:mod:`py_nodes._table`: processes, names, links, monitors, aliases), the peers
(:mod:`py_nodes._peers`: connections, and the events they bring) and the spawner
(:mod:`py_nodes._rpc`: spawn requests both ways). Every state change happens on the
event loop thread, synchronously, in the order the events arrive; nothing here awaits
except connecting, :meth:`Node.call` and start/stop.

Calls from Python go through one ``_Calls`` process, the ``From`` of each. A call's
monitor ref doubles as its alias (``[alias | Ref]``, as ``gen:call`` does since OTP 24),
and both go when the call ends, so a late reply finds no alias and is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, overload

from py_nodes import _epmd
from py_nodes._codec import build_frozen
from py_nodes._connection import DEFAULT_MAX_FRAME_SIZE
from py_nodes._control import (
    AliasSend,
    ControlEvent,
    Demonitor,
    Monitor,
    RegSend,
    Send,
    SpawnReply,
    SpawnRequest,
)
from py_nodes._errors import CallExit, CallTimeout, NodeDown, NoProc, PyNodesError
from py_nodes._genserver import GEN_CALL, GEN_CAST, GenServer, NoReply, Reply
from py_nodes._peers import Listener, Peers
from py_nodes._process import P, Process
from py_nodes._rpc import IoServer, Spawner
from py_nodes._table import DOWN, NOCONNECTION, NOPROC, ProcessTable, name_atom
from py_nodes._terms import Atom, ImproperList, Pid, Reference
from py_nodes._tls import TlsConfig

__all__ = ["Node"]

log = logging.getLogger("py_nodes.node")

F = TypeVar("F", bound=Callable[..., Any])

SHUTDOWN = Atom("shutdown")
ALIAS = Atom("alias")
YES = Atom("yes")
IS_AUTH = Atom("is_auth")
NET_KERNEL = Atom("net_kernel")
LINK = Atom("link")
MONITOR = Atom("monitor")
# Spawn options that change what the reply means: spawn_remote sets them itself.
_OWN_SPAWN_OPTIONS = (LINK, MONITOR, Atom("reply"), Atom("reply_tag"))


class _NetKernel(GenServer):
    """Answers ``net_adm:ping/1``: ``{is_auth, Node}`` -> ``yes``."""

    __slots__ = ()

    def handle_call(self, request: Any, from_: tuple[Any, Any]) -> Reply | NoReply:
        if type(request) is tuple and len(request) == 2 and request[0] is IS_AUTH:
            return Reply(YES)
        return NoReply()


class _Calls(Process):
    """The one process behind every :meth:`Node.call` from Python: it holds each call's
    monitor and alias (one reference, ``[alias | Ref]`` as ``gen:call`` does since OTP 24)
    and settles the call's future with the reply or the monitor's ``DOWN``."""

    __slots__ = ("waiting",)

    # The future of each call under way, by its reference.
    waiting: dict[Reference, asyncio.Future[Any]]

    def init(self) -> None:
        self.waiting = {}

    def expect(self, ref: Reference, future: asyncio.Future[Any]) -> None:
        """The call under ``ref`` is settled in ``future``, until :meth:`forget`."""
        self.waiting[ref] = future

    def forget(self, ref: Reference) -> None:
        del self.waiting[ref]

    def terminate(self, reason: Any) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(NodeDown(f"the node stopped during the call ({reason})"))

    def handle_message(self, message: Any) -> None:
        # Anyone may send to this pid, the From of every call: what is not a reply or a
        # DOWN of a call under way is dropped, and nothing here can raise.
        if type(message) is not tuple:
            return
        if len(message) == 2:
            tag = message[0]
            if type(tag) is not ImproperList or type(tag.tail) is not Reference:
                return
            future = self.waiting.get(tag.tail)
            if future is not None and not future.done():
                future.set_result(message[1])
        elif len(message) == 5 and message[0] is DOWN and type(message[1]) is Reference:
            future = self.waiting.get(message[1])
            if future is None or future.done():
                return
            reason = message[4]
            exc: Exception
            if reason is NOPROC:
                exc = NoProc(f"no process {message[3]!r}")
            elif reason is NOCONNECTION:
                exc = NodeDown(f"no connection to the node of {message[3]!r}")
            else:
                exc = CallExit(reason)
            future.set_exception(exc)


def _time_out(future: asyncio.Future[Any], dest: Any, timeout: float) -> None:
    if not future.done():
        future.set_exception(CallTimeout(f"no reply from {dest!r} within {timeout}s"))


class Node:
    """A hidden Erlang node hosting Python processes. See the package docstring."""

    def __init__(
        self,
        name: str,
        cookie: str,
        *,
        port: int = 0,
        listen_host: str | None = "0.0.0.0",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        net_ticktime: float = 60.0,
        handshake_timeout: float = 10.0,
        epmd_port: int = _epmd.EPMD_PORT,
        tls: TlsConfig | None = None,
    ) -> None:
        alive, sep, host = name.partition("@")
        if not sep or not alive or not host:
            raise ValueError(f"node name must look like name@host, not {name!r}")
        self.name = name
        self.alive_name = alive
        self.host = host
        self.atom = Atom(name)
        self.cookie = cookie
        self.port = port
        self.listen_host = listen_host
        self.max_frame_size = max_frame_size
        self.net_ticktime = net_ticktime
        self.handshake_timeout = handshake_timeout
        self.epmd_port = epmd_port
        #: TLS distribution settings; None: plain TCP (development only).
        self.tls = tls
        #: The process table: processes, names, links, monitors and aliases.
        self.table = ProcessTable(self, self.atom, self._to_peer)
        self._exposed: dict[tuple[str, str], Callable[..., Any]] = {}
        self._spawner = Spawner(self.table, self._to_peer, self.exposed)
        table = self.table
        handlers: dict[type, Callable[[Any, Any], None]] = {
            # A gen_server:call from a BEAM node makes two events (MONITOR_P, REG_SEND;
            # its DEMONITOR_P only takes the monitor back from the connection's store),
            # each handled one call deep.
            Send: table.on_send,
            RegSend: table.on_reg_send,
            Monitor: table.on_monitor,
            Demonitor: table.on_demonitor,
            SpawnRequest: self._spawner.on_request,
            SpawnReply: self._spawner.on_reply,
        }
        #: The connections to other nodes.
        self.peers = Peers(
            self,
            handlers=handlers,
            other_events=table.on_signal,
            pending_store=table.pending_store,
            node_down=self._node_down,
        )
        self._server: Listener | None = None
        self._registration: _epmd.EpmdRegistration | None = None
        self._system_pid: Pid | None = None
        self._group_leader: Pid | None = None
        self._calls: _Calls | None = None

    @property
    def creation(self) -> int:
        """The creation of this incarnation of the node (from epmd once started)."""
        return self.table.creation

    @property
    def started(self) -> bool:
        return self.peers.started

    def _to_peer(self, node_name: str, event: ControlEvent) -> None:
        self.peers.send(node_name, event)

    def _node_down(self, node_name: str) -> None:
        self._spawner.node_down(node_name)
        self.table.node_down(node_name)

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, register with epmd (starting it if needed), start ``net_kernel``.

        A node made with ``listen_host=None`` does neither: it only connects out, as a
        client that no other node needs to reach first (replies come back on the
        connection the client opened)."""
        if self.listen_host is not None:
            await self._listen(self.listen_host)
        self.peers.started = True
        self._system_pid = self.spawn(_NetKernel, name=NET_KERNEL)
        self._group_leader = self.spawn(IoServer)
        self._calls = self.table.spawn(_Calls, (), None)
        log.info(
            "node %s up on port %d (creation %d, %s distribution)",
            self.name,
            self.port,
            self.creation,
            "TLS" if self.tls else "plain",
        )
        if self.tls is None:
            log.warning(
                "node %s: distribution is plain TCP, unencrypted and unauthenticated but for "
                "the cookie; give the node TLS settings outside development",
                self.name,
            )

    async def _listen(self, host: str) -> None:
        self._server = await self.peers.serve(host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            self._registration = await _epmd.register(
                self.alive_name, self.port, epmd_port=self.epmd_port
            )
        except BaseException:
            self._server.close()
            raise
        self.table.creation = self._registration.creation or self.table.creation

    async def stop(self) -> None:
        """Stop every process (reason ``shutdown``), close connections, leave epmd."""
        self.table.exit_all(SHUTDOWN)
        self.peers.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self._registration is not None:
            await self._registration.close()
            self._registration = None
        self.peers.started = False
        log.info("node %s stopped", self.name)

    # -- connections ----------------------------------------------------------------------

    def nodes(self) -> list[str]:
        """Names of the nodes connected now."""
        return self.peers.nodes()

    async def connect(self, node_name: str) -> bool:
        """Connect to ``node_name`` (no-op when connected); True when up."""
        return await self.peers.connect(node_name)

    def disconnect(self, node_name: str) -> bool:
        """``erlang:disconnect_node``: drop the connection; True if there was one."""
        return self.peers.disconnect(node_name)

    # -- processes --------------------------------------------------------------------------

    def make_ref(self) -> Reference:
        return self.table.make_ref()

    def spawn(self, cls: type[P], *args: Any, name: Atom | str | None = None) -> Pid:
        """Start ``cls`` (a Process or GenServer subclass), call its ``init(*args)``.

        Raises what ``init`` raises (the process then never existed), or ValueError if
        ``name`` is taken.
        """
        return self.table.spawn(cls, args, name).pid

    def process(self, pid: Pid) -> Process | None:
        """The local process object behind ``pid`` (None if gone)."""
        return self.table.process(pid)

    def processes(self) -> list[Pid]:
        return self.table.processes()

    def notify_exit(self, pid: Pid, callback: Callable[[Pid, Any], None]) -> bool:
        """Call ``callback(pid, reason)`` once, when the local process ``pid`` exits.

        A monitor for Python code of this node that watches many processes: no
        reference, no ``DOWN`` message. One callback per process (a second call replaces
        the first). Returns False, and never calls it, when there is no such process.
        """
        return self.table.notify_exit(pid, callback)

    def register(self, name: Atom | str, pid: Pid) -> None:
        self.table.register(name, pid)

    def unregister(self, name: Atom | str) -> None:
        self.table.unregister(name)

    def whereis(self, name: Atom | str) -> Pid | None:
        return self.table.whereis(name_atom(name))

    def registered(self) -> list[Atom]:
        return self.table.registered()

    # -- sending ----------------------------------------------------------------------------

    def send(self, dest: Any, message: Any, *, sender: Pid | None = None) -> None:
        """Send to a Pid, a local name (Atom/str), ``(name, node)`` or an alias ref.

        Like Erlang's ``!``: never fails for a missing process; a message to an
        unreachable node is dropped.
        """
        kind = type(dest)
        if kind is Pid:
            if dest.node is self.atom:
                self.table.deliver(dest, message)
            else:
                self.peers.send(dest.node.name, Send(dest, message))
        elif kind is tuple and len(dest) == 2:
            name, node = name_atom(dest[0]), dest[1]
            node_name = node.name if type(node) is Atom else str(node)
            if node_name == self.name:
                self.send(name, message, sender=sender)
            else:
                self.peers.send(node_name, RegSend(sender or self._sender(), name, message))
        elif kind is Reference:
            self._send_to_alias(dest, message, sender)
        else:
            pid = self.table.whereis(name_atom(dest))
            if pid is None:
                raise NoProc(f"no process registered as {dest!r}")
            self.send(pid, message, sender=sender)

    def _send_to_alias(self, alias: Reference, message: Any, sender: Pid | None) -> None:
        if alias.node is self.atom:
            self.table.deliver_to_alias(alias, message)
        else:
            # Every reply to a call from an OTP 24+ node comes here: the event is built
            # without its dataclass __init__.
            event = build_frozen(AliasSend, sender or self._sender(), alias, message, None)
            self.peers.send(alias.node.name, event)

    def _sender(self) -> Pid:
        if self._system_pid is None:
            raise PyNodesError("the node is not started")
        return self._system_pid

    def cast(self, dest: Any, request: Any) -> None:
        """``gen_server:cast``: never fails."""
        with contextlib.suppress(NoProc):
            self.send(dest, (GEN_CAST, request))

    def reply(self, from_: tuple[Any, Any], value: Any, *, sender: Pid | None = None) -> None:
        """Answer a ``gen_server:call`` whose ``From`` is ``from_``."""
        pid, tag = from_
        if type(tag) is ImproperList and len(tag.items) == 1 and tag.items[0] is ALIAS:
            alias = tag.tail
            if type(alias) is Reference:
                self._send_to_alias(alias, (tag, value), sender)
                return
        self.send(pid, (tag, value), sender=sender)

    async def call(self, dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
        """``gen_server:call(dest, request, timeout)`` from Python.

        Raises :class:`NoProc` (no such process), :class:`NodeDown` (node
        unreachable or lost), :class:`CallTimeout`, or :class:`CallExit` (the callee
        exited; ``.reason`` is the exit reason).
        """
        calls = self._calls
        if calls is None or not calls.alive:
            raise PyNodesError("the node is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        table = self.table
        ref = table.make_ref()
        # Waiting before the monitor is made: a local target that is missing answers DOWN
        # at once.
        calls.expect(ref, future)
        # As gen:call since OTP 24: the monitor ref is also an alias, and the tag
        # [alias | Ref] tells the server to reply to it. The alias goes when the call
        # ends, so a reply that comes after a timeout is dropped on arrival.
        table.call_alias(calls.pid, ref)
        timer: asyncio.TimerHandle | None = None
        try:
            table.monitor(calls.pid, dest, ref)
            if not future.done():
                tag = ImproperList((ALIAS,), ref)
                self.send(dest, (GEN_CALL, (calls.pid, tag), request), sender=calls.pid)
            if timeout is not None:
                timer = loop.call_later(timeout, _time_out, future, dest, timeout)
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            calls.forget(ref)
            table.demonitor(calls.pid, ref)
            table.end_call_alias(ref)

    async def listed_by_epmd(self, node_name: str) -> bool:
        """Whether the epmd of ``node_name``'s host lists that node: it is up, even when it
        refuses us (a wrong cookie); False when epmd does not know it or cannot be asked."""
        alive, _, host = node_name.partition("@")
        try:
            address = await _epmd.port_please(alive, host=host, epmd_port=self.epmd_port)
        except (OSError, TimeoutError, PyNodesError):
            return False
        return address is not None

    async def ping(self, node_name: str, timeout: float = 5.0) -> bool:
        """``net_adm:ping``: True when ``node_name`` answers (``pong``)."""
        try:
            answer = await self.call((NET_KERNEL, node_name), (IS_AUTH, self.atom), timeout)
        except PyNodesError:
            return False
        return answer is YES or answer is True

    # -- spawning on other nodes ------------------------------------------------------------------

    @overload
    async def spawn_remote(
        self,
        node_name: str,
        module: Atom | str,
        function: Atom | str,
        args: Sequence[Any] = (),
        *,
        owner: Pid | None = None,
        link: bool = False,
        monitor: Literal[False] = False,
        options: Sequence[Any] = (),
        group_leader: Pid | None = None,
        timeout: float | None = 5.0,
    ) -> Pid: ...

    @overload
    async def spawn_remote(
        self,
        node_name: str,
        module: Atom | str,
        function: Atom | str,
        args: Sequence[Any] = (),
        *,
        owner: Pid | None = None,
        link: bool = False,
        monitor: Literal[True],
        options: Sequence[Any] = (),
        group_leader: Pid | None = None,
        timeout: float | None = 5.0,
    ) -> tuple[Pid, Reference]: ...

    async def spawn_remote(
        self,
        node_name: str,
        module: Atom | str,
        function: Atom | str,
        args: Sequence[Any] = (),
        *,
        owner: Pid | None = None,
        link: bool = False,
        monitor: bool = False,
        options: Sequence[Any] = (),
        group_leader: Pid | None = None,
        timeout: float | None = 5.0,
    ) -> Pid | tuple[Pid, Reference]:
        """``erlang:spawn_opt(Node, M, F, A, Opts)``: start ``M:F(A...)`` on another node.

        Returns the new pid, or ``(pid, ref)`` with ``monitor=True`` (``ref`` is the
        monitor's, as from ``spawn_monitor``). ``link``/``monitor`` tie the new process
        to the local process ``owner``, as ``link``/``monitor`` would. ``options`` are
        further spawn options passed as they are (``{priority, high}``...).

        Raises :class:`SpawnError` when the node refuses (``.reason``: ``badopt``,
        ``notsup``, ``system_limit``), :class:`NodeDown`, :class:`CallTimeout`,
        :class:`NoProc` when ``owner`` exits first, ValueError for bad arguments.
        A process that fails at once (an undefined function) is still spawned: its exit
        arrives through the link or monitor.
        """
        if not isinstance(node_name, str) or node_name == self.name:
            raise ValueError(f"spawn_remote needs the name of another node, not {node_name!r}")
        if not isinstance(args, Sequence) or isinstance(args, str | bytes):
            raise ValueError(f"args must be a list of terms, not {args!r}")
        for opt in options:
            key = opt[0] if type(opt) is tuple and opt else opt
            if key in _OWN_SPAWN_OPTIONS:
                raise ValueError(f"spawn option {opt!r}: use link=/monitor= instead")
        if owner is None:
            if link or monitor:
                raise ValueError("a linked or monitored spawn needs an owner process")
            owner = self._sender()
        elif self.table.process(owner) is None:
            raise NoProc(f"no local process {owner!r}")
        return await self._spawner.request(
            node_name,
            name_atom(module),
            name_atom(function),
            args,
            owner=owner,
            group_leader=group_leader or self._group_leader or owner,
            link=link,
            monitor=monitor,
            options=options,
            timeout=timeout,
        )

    # -- aliases -------------------------------------------------------------------------------

    def alias(self, pid: Pid, *, reply: bool = False) -> Reference:
        """``alias()`` for local process ``pid``: a reference that messages can be sent to.

        A message sent to the alias (``node.send(alias, msg)`` here, ``Alias ! Msg``
        from Erlang) reaches ``pid`` until :meth:`unalias` or the process exits; after
        that it is dropped. With ``reply=True`` the alias works once (``[reply]`` in
        Erlang): the first message through it deactivates it.
        """
        return self.table.alias(pid, reply=reply)

    def unalias(self, pid: Pid, alias: Reference) -> bool:
        """Deactivate ``alias`` of ``pid``; True if it was an active alias of ``pid``."""
        return self.table.unalias(pid, alias)

    # -- links, monitors and exit signals ------------------------------------------------------

    def link(self, a: Pid, b: Pid) -> None:
        """Link local process ``a`` with ``b`` (local or remote)."""
        self.table.link(a, b)

    def unlink(self, a: Pid, b: Pid) -> None:
        self.table.unlink(a, b)

    def exit(self, pid: Pid, reason: Any, *, sender: Pid | None = None) -> None:
        """``exit(Pid, Reason)``: an exit signal (``kill`` cannot be trapped)."""
        self.table.exit(pid, reason, sender or self._sender())

    def monitor(self, watcher: Pid, target: Any) -> Reference:
        """Monitor ``target`` (pid, local name, or ``(name, node)``) from local ``watcher``.

        The watcher later receives ``('DOWN', Ref, process, Pid | (Name, Node), Reason)``.
        """
        return self.table.monitor(watcher, target)

    def demonitor(self, watcher: Pid, ref: Reference) -> None:
        self.table.demonitor(watcher, ref)

    def monitor_count(self) -> int:
        """Monitors held by our processes plus those remote processes hold on ours.

        Every index is counted, so a leak anywhere shows (0 means none at all).
        """
        return self.table.monitor_count()

    # -- erpc ---------------------------------------------------------------------------------

    @overload
    def expose(self, module: str, function: str) -> Callable[[F], F]: ...
    @overload
    def expose(self, module: str, function: str, fn: F) -> F: ...
    def expose(
        self, module: str, function: str, fn: Callable[..., Any] | None = None
    ) -> Callable[..., Any]:
        """Make ``fn`` reachable as ``module:function`` by ``erpc:call``/``rpc:call``.

        Usable as ``node.expose("m", "f", fn)`` or as a decorator ``@node.expose("m", "f")``.
        ``fn`` may be ``async``. Arguments arrive as decoded terms.
        """
        if fn is None:

            def decorator(f: F) -> F:
                self._exposed[(module, function)] = f
                return f

            return decorator
        self._exposed[(module, function)] = fn
        return fn

    def exposed(self, module: str, function: str) -> Callable[..., Any] | None:
        return self._exposed.get((module, function))
