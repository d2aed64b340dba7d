"""The node: processes, names, links, monitors, calls and erpc exposure.

Every state change happens on the event loop thread, synchronously, in the order the
events arrive; nothing here awaits except connecting, :meth:`Node.call` and start/stop.
Talking to other nodes (connections, outbox, incoming control messages, what a lost
connection does) is in :mod:`py_nodes._routing`; spawn requests both ways in
:mod:`py_nodes._rpc`.

A call from Python runs in a short-lived ``_Caller`` process. Its monitor ref doubles
as its alias (``[alias | Ref]``, as ``gen:call`` does since OTP 24), and both go when
the call ends, so a late reply finds no alias and is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, overload

from py_nodes import _epmd, _rpc
from py_nodes._codec import build_frozen
from py_nodes._connection import DEFAULT_MAX_FRAME_SIZE
from py_nodes._control import (
    AliasSend,
    Demonitor,
    Exit,
    Exit2,
    Link,
    Monitor,
    MonitorExit,
    RegSend,
    Send,
    SpawnRequest,
    UnlinkId,
)
from py_nodes._errors import CallExit, CallTimeout, NodeDown, NoProc, PyNodesError
from py_nodes._genserver import GEN_CALL, GEN_CAST, GenServer, NoReply, Reply
from py_nodes._peer import PeerProtocol
from py_nodes._process import NORMAL, Process
from py_nodes._routing import DOWN, NOCONNECTION, NOPROC, PROCESS, Router
from py_nodes._terms import Atom, ImproperList, Pid, Reference

__all__ = ["Node"]

log = logging.getLogger("py_nodes.node")

P = TypeVar("P", bound=Process)
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


class _Caller(Process):
    """The short-lived process behind one :meth:`Node.call` from Python."""

    __slots__ = ("future", "ref", "tag")

    future: asyncio.Future[Any]
    ref: Reference | None
    tag: ImproperList | None

    def terminate(self, reason: Any) -> None:
        if not self.future.done():
            self.future.set_exception(NodeDown(f"the node stopped during the call ({reason})"))

    def handle_message(self, message: Any) -> None:
        if type(message) is not tuple or self.future.done():
            return
        if len(message) == 2 and message[0] == self.tag:
            self.future.set_result(message[1])
        elif len(message) == 5 and message[0] is DOWN and message[1] == self.ref:
            reason = message[4]
            exc: Exception
            if reason is NOPROC:
                exc = NoProc(f"no process {message[3]!r}")
            elif reason is NOCONNECTION:
                exc = NodeDown(f"no connection to the node of {message[3]!r}")
            else:
                exc = CallExit(reason)
            self.future.set_exception(exc)


def _name_atom(name: Atom | str) -> Atom:
    if type(name) is Atom:
        return name
    if isinstance(name, str):
        return Atom(name)
    raise TypeError(f"a process name must be an Atom or a str, not {type(name).__name__}")


class Node(Router):
    """A hidden Erlang node hosting Python processes. See the package docstring."""

    def __init__(
        self,
        name: str,
        cookie: str,
        *,
        port: int = 0,
        listen_host: str = "0.0.0.0",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        net_ticktime: float = 60.0,
        handshake_timeout: float = 10.0,
        epmd_port: int = _epmd.EPMD_PORT,
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
        self.creation = secrets.randbits(32) or 1
        self._pid_ids = itertools.count(1)
        self._ref_ids = itertools.count(1)
        self._ref_salt = secrets.randbits(32)
        self._procs: dict[Pid, Process] = {}
        self._names: dict[Atom, Pid] = {}
        self._init_router()
        self._exposed: dict[tuple[str, str], Callable[..., Any]] = {}
        self._server: asyncio.Server | None = None
        self._registration: _epmd.EpmdRegistration | None = None
        self._system_pid: Pid | None = None
        self._group_leader: Pid | None = None
        self.started = False

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, register with epmd (starting it if needed), start ``net_kernel``."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: PeerProtocol(self), self.listen_host, self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            self._registration = await _epmd.register(
                self.alive_name, self.port, epmd_port=self.epmd_port
            )
        except BaseException:
            self._server.close()
            raise
        self.creation = self._registration.creation or self.creation
        self.started = True
        self._system_pid = self.spawn(_NetKernel, name=NET_KERNEL)
        self._group_leader = self.spawn(_rpc.IoServer)
        log.info("node %s up on port %d (creation %d)", self.name, self.port, self.creation)

    async def stop(self) -> None:
        """Stop every process (reason ``shutdown``), close connections, leave epmd."""
        for proc in list(self._procs.values()):
            proc._terminate(SHUTDOWN)
        self._flush_dirty()
        for task in list(self._connecting.values()):
            task.cancel()
        for peer in list(self._peers.values()):
            if peer.transport is not None:
                peer.transport.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self._registration is not None:
            await self._registration.close()
            self._registration = None
        self.started = False
        log.info("node %s stopped", self.name)

    # -- processes --------------------------------------------------------------------------

    def _new_pid(self) -> Pid:
        return Pid(self.atom, next(self._pid_ids), 0, self.creation)

    def make_ref(self) -> Reference:
        n = next(self._ref_ids)
        return Reference(
            self.atom, self.creation, (n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF, self._ref_salt)
        )

    def spawn(self, cls: type[P], *args: Any, name: Atom | str | None = None) -> Pid:
        """Start ``cls`` (a Process or GenServer subclass), call its ``init(*args)``.

        Raises what ``init`` raises (the process then never existed), or ValueError if
        ``name`` is taken.
        """
        proc = cls()
        pid = self._new_pid()
        proc._attach(self, pid)
        self._procs[pid] = proc
        try:
            if name is not None:
                self.register(name, pid)
            proc.init(*args)
        except BaseException:
            proc._alive = False
            self._procs.pop(pid, None)
            if proc.name is not None:
                self._names.pop(proc.name, None)
            raise
        return pid

    def process(self, pid: Pid) -> Process | None:
        """The local process object behind ``pid`` (None if gone)."""
        return self._procs.get(pid)

    def processes(self) -> list[Pid]:
        return list(self._procs)

    def notify_exit(self, pid: Pid, callback: Callable[[Pid, Any], None]) -> bool:
        """Call ``callback(pid, reason)`` once, when the local process ``pid`` exits.

        A monitor for Python code of this node that watches many processes: no
        reference, no ``DOWN`` message. One callback per process (a second call replaces
        the first). Returns False, and never calls it, when there is no such process.
        """
        proc = self._procs.get(pid)
        if proc is None:
            return False
        proc._on_exit = callback
        return True

    def register(self, name: Atom | str, pid: Pid) -> None:
        atom = _name_atom(name)
        self._install_all_monitors()
        proc = self._procs.get(pid)
        if proc is None:
            raise NoProc(f"no local process {pid!r}")
        if atom in self._names or proc.name is not None:
            raise ValueError(f"{atom.name} is already registered, or {pid!r} has a name")
        self._names[atom] = pid
        proc.name = atom

    def unregister(self, name: Atom | str) -> None:
        self._install_all_monitors()
        pid = self._names.pop(_name_atom(name), None)
        proc = self._procs.get(pid) if pid is not None else None
        if proc is not None:
            proc.name = None

    def whereis(self, name: Atom | str) -> Pid | None:
        return self._names.get(_name_atom(name))

    def registered(self) -> list[Atom]:
        return list(self._names)

    def _process_exited(self, proc: Process, reason: Any) -> None:
        self._install_all_monitors()
        pid = proc.pid
        self._procs.pop(pid, None)
        if proc.name is not None and self._names.get(proc.name) == pid:
            del self._names[proc.name]
        links, proc._links = proc._links, None
        for other in links or ():
            if other.node is self.atom:
                target = self._procs.get(other)
                if target is not None:
                    target._exit_signal(pid, reason, link=True)
            else:
                node_name = other.node.name
                self._remote_links.get(node_name, set()).discard((pid, other))
                self._send_remote(node_name, Exit(pid, other, reason))
        watchers = proc._watchers()
        proc._monitored_by = None
        for ref, watcher, name in watchers:
            if watcher.node is self.atom:
                wproc = self._procs.get(watcher)
                if wproc is not None:
                    if wproc._monitoring is not None:
                        wproc._monitoring.pop(ref, None)
                    down_ident = pid if name is None else (name, self.atom)
                    wproc._deliver((DOWN, ref, PROCESS, down_ident, reason))
            else:
                node_name = watcher.node.name
                self._peer_monitors.get(node_name, {}).pop(ref, None)
                ident = pid if name is None else name
                self._send_remote(node_name, MonitorExit(ident, watcher, ref, reason))
        if self._alias_owners:
            for alias in self._alias_owners.pop(pid, ()):
                del self._aliases[alias]
        on_exit, proc._on_exit = proc._on_exit, None
        if on_exit is not None:
            try:
                on_exit(pid, reason)
            except Exception:
                log.exception("exit callback of %r raised", pid)
        monitoring, proc._monitoring = proc._monitoring, None
        for ref, monitored in (monitoring or {}).items():
            self._drop_monitor(pid, ref, monitored)

    # -- sending ----------------------------------------------------------------------------

    def send(self, dest: Any, message: Any, *, sender: Pid | None = None) -> None:
        """Send to a Pid, a local name (Atom/str), ``(name, node)`` or an alias ref.

        Like Erlang's ``!``: never fails for a missing process; a message to an
        unreachable node is dropped.
        """
        kind = type(dest)
        if kind is Pid:
            if dest.node is self.atom:
                proc = self._procs.get(dest)
                if proc is not None:
                    proc._deliver(message)
            else:
                self._send_remote(dest.node.name, Send(dest, message))
        elif kind is tuple and len(dest) == 2:
            name, node = _name_atom(dest[0]), dest[1]
            node_name = node.name if type(node) is Atom else str(node)
            if node_name == self.name:
                self.send(name, message, sender=sender)
            else:
                self._send_remote(
                    node_name, RegSend(sender or self._sender(), name, message)
                )
        elif kind is Reference:
            self._send_to_alias(dest, message, sender)
        else:
            pid = self._names.get(_name_atom(dest))
            if pid is None:
                raise NoProc(f"no process registered as {dest!r}")
            self.send(pid, message, sender=sender)

    def _send_to_alias(self, alias: Reference, message: Any, sender: Pid | None) -> None:
        if alias.node is self.atom:
            self._deliver_to_alias(alias, message)
        else:
            # Every reply to a call from an OTP 24+ node comes here: the event is built
            # without its dataclass __init__.
            event = build_frozen(AliasSend, sender or self._sender(), alias, message, None)
            self._send_remote(alias.node.name, event)

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
        loop = asyncio.get_running_loop()
        caller = _Caller()
        pid = self._new_pid()
        caller._attach(self, pid)
        caller.future = loop.create_future()
        caller.ref = caller.tag = None
        self._procs[pid] = caller
        try:
            ref = self.monitor(pid, dest)
            # As gen:call since OTP 24: the monitor ref is also an alias, and the tag
            # [alias | Ref] tells the server to reply to it. The alias dies with the
            # caller, so a reply that comes after a timeout is dropped on arrival.
            caller.ref = ref
            caller.tag = ImproperList((ALIAS,), ref)
            self._aliases[ref] = (pid, False)
            if not caller.future.done():
                self.send(dest, (GEN_CALL, (pid, caller.tag), request), sender=pid)
            try:
                return await asyncio.wait_for(caller.future, timeout)
            except TimeoutError:
                raise CallTimeout(f"no reply from {dest!r} within {timeout}s") from None
        finally:
            caller._terminate(NORMAL, run_terminate=False)
            if caller.ref is not None:
                del self._aliases[caller.ref]

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
        self, node_name: str, module: Atom | str, function: Atom | str, args: Sequence[Any] = (),
        *, owner: Pid | None = None, link: bool = False, monitor: Literal[False] = False,
        options: Sequence[Any] = (), group_leader: Pid | None = None,
        timeout: float | None = 5.0,
    ) -> Pid: ...

    @overload
    async def spawn_remote(
        self, node_name: str, module: Atom | str, function: Atom | str, args: Sequence[Any] = (),
        *, owner: Pid | None = None, link: bool = False, monitor: Literal[True],
        options: Sequence[Any] = (), group_leader: Pid | None = None,
        timeout: float | None = 5.0,
    ) -> tuple[Pid, Reference]: ...

    async def spawn_remote(
        self, node_name: str, module: Atom | str, function: Atom | str, args: Sequence[Any] = (),
        *, owner: Pid | None = None, link: bool = False, monitor: bool = False,
        options: Sequence[Any] = (), group_leader: Pid | None = None,
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
        elif owner not in self._procs:
            raise NoProc(f"no local process {owner!r}")
        req_id = self.make_ref()
        future: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()
        self._spawning[req_id] = _rpc.PendingSpawn(node_name, owner, link, monitor, future)
        opts = [*options, *([LINK] if link else ()), *([MONITOR] if monitor else ())]
        self._send_remote(node_name, SpawnRequest(
            req_id, owner, group_leader or self._group_leader or owner,
            _name_atom(module), _name_atom(function), len(args), opts, list(args),
        ))
        try:
            pid = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise CallTimeout(f"no spawn reply from {node_name} within {timeout}s") from None
        return (pid, req_id) if monitor else pid

    # -- aliases -------------------------------------------------------------------------------

    def alias(self, pid: Pid, *, reply: bool = False) -> Reference:
        """``alias()`` for local process ``pid``: a reference that messages can be sent to.

        A message sent to the alias (``node.send(alias, msg)`` here, ``Alias ! Msg``
        from Erlang) reaches ``pid`` until :meth:`unalias` or the process exits; after
        that it is dropped. With ``reply=True`` the alias works once (``[reply]`` in
        Erlang): the first message through it deactivates it.
        """
        if pid not in self._procs:
            raise NoProc(f"no local process {pid!r}")
        alias = self.make_ref()
        self._aliases[alias] = (pid, reply)
        owned = self._alias_owners.get(pid)
        if owned is None:
            owned = self._alias_owners[pid] = set()
        owned.add(alias)
        return alias

    def unalias(self, pid: Pid, alias: Reference) -> bool:
        """Deactivate ``alias`` of ``pid``; True if it was an active alias of ``pid``."""
        entry = self._aliases.get(alias)
        if entry is None or entry[0] != pid:
            return False
        return self._drop_alias(pid, alias)

    # -- links, monitors and exit signals ------------------------------------------------------

    def link(self, a: Pid, b: Pid) -> None:
        """Link local process ``a`` with ``b`` (local or remote)."""
        proc = self._procs.get(a)
        if proc is None:
            raise NoProc(f"no local process {a!r}")
        if a == b:
            return
        if proc._links is None:
            proc._links = set()
        if b in proc._links:
            return
        if b.node is self.atom:
            other = self._procs.get(b)
            if other is None:
                proc._exit_signal(b, NOPROC, link=False)
                return
            proc._links.add(b)
            if other._links is None:
                other._links = set()
            other._links.add(a)
        else:
            self._add_remote_link(proc, b, b.node.name)
            self._send_remote(b.node.name, Link(a, b))

    def unlink(self, a: Pid, b: Pid) -> None:
        proc = self._procs.get(a)
        if proc is None or proc._links is None or b not in proc._links:
            return
        proc._links.discard(b)
        if b.node is self.atom:
            other = self._procs.get(b)
            if other is not None and other._links is not None:
                other._links.discard(a)
        else:
            node_name = b.node.name
            self._remote_links.get(node_name, set()).discard((a, b))
            self._send_remote(node_name, UnlinkId(next(self._ref_ids), a, b))

    def exit(self, pid: Pid, reason: Any, *, sender: Pid | None = None) -> None:
        """``exit(Pid, Reason)``: an exit signal (``kill`` cannot be trapped)."""
        from_pid = sender or self._sender()
        if pid.node is self.atom:
            proc = self._procs.get(pid)
            if proc is not None:
                proc._exit_signal(from_pid, reason, link=False)
        else:
            self._send_remote(pid.node.name, Exit2(from_pid, pid, reason))

    def monitor(self, watcher: Pid, target: Any) -> Reference:
        """Monitor ``target`` (pid, local name, or ``(name, node)``) from local ``watcher``.

        The watcher later receives ``('DOWN', Ref, process, Pid | (Name, Node), Reason)``.
        """
        wproc = self._procs.get(watcher)
        if wproc is None:
            raise NoProc(f"no local process {watcher!r}")
        ref = self.make_ref()
        kind = type(target)
        remote_node: str | None = None
        remote_target: Pid | Atom | None = None
        ident: Any = target
        if kind is Pid:
            if target.node is not self.atom:
                remote_node, remote_target = target.node.name, target
        elif kind is tuple and len(target) == 2:
            name = _name_atom(target[0])
            node_name = target[1].name if type(target[1]) is Atom else str(target[1])
            ident = (name, Atom(node_name))
            if node_name != self.name:
                remote_node, remote_target = node_name, name
            else:
                target = name
        else:
            target = _name_atom(target)
            ident = (target, self.atom)
        if remote_node is not None:
            assert remote_target is not None
            self._add_remote_monitor(wproc, ref, ident, remote_node)
            self._send_remote(remote_node, Monitor(watcher, remote_target, ref))
            return ref
        pid = target if type(target) is Pid else self._names.get(target)
        tproc = self._procs.get(pid) if pid is not None else None
        if tproc is None:
            wproc._deliver((DOWN, ref, PROCESS, ident, NOPROC))
            return ref
        if wproc._monitoring is None:
            wproc._monitoring = {}
        wproc._monitoring[ref] = tproc.pid
        tproc._add_watcher(ref, watcher, None if type(target) is Pid else target)
        return ref

    def demonitor(self, watcher: Pid, ref: Reference) -> None:
        wproc = self._procs.get(watcher)
        if wproc is None or wproc._monitoring is None:
            return
        target = wproc._monitoring.pop(ref, None)
        if target is not None:
            self._drop_monitor(watcher, ref, target)

    def _drop_monitor(self, watcher: Pid, ref: Reference, target: Pid | tuple[Atom, Atom]) -> None:
        if type(target) is Pid and target.node is self.atom:
            tproc = self._procs.get(target)
            if tproc is not None:
                tproc._drop_watcher(ref)
            return
        remote: Pid | Atom
        if isinstance(target, Pid):
            node_name, remote = target.node.name, target
        else:
            node_name, remote = target[1].name, target[0]
        if self._remote_monitors.get(node_name, {}).pop(ref, None) is not None:
            self._send_remote(node_name, Demonitor(watcher, remote, ref))

    def monitor_count(self) -> int:
        """Monitors held by our processes plus those remote processes hold on ours.

        Every index is counted, so a leak anywhere shows (0 means none at all). Pending
        monitors are installed first.
        """
        self._install_all_monitors()
        held = sum(len(proc._monitoring or ()) for proc in self._procs.values())
        held_remote = sum(len(m) for m in self._remote_monitors.values())
        held_local = sum(
            1
            for proc in self._procs.values()
            for target in (proc._monitoring or {}).values()
            if type(target) is Pid and target.node is self.atom
        )
        on_us = sum(len(m) for m in self._peer_monitors.values())
        on_us_local = sum(
            1
            for proc in self._procs.values()
            for _, watcher, _ in proc._watchers()
            if watcher.node is not self.atom
        )
        # Each monitor is in two indexes; take the larger count of each pair so that a
        # leak in either shows.
        return max(held, held_local + held_remote) + max(on_us, on_us_local)

    # -- erpc ---------------------------------------------------------------------------------

    def expose(
        self, module: str, function: str, fn: Callable[..., Any] | None = None
    ) -> Any:
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
