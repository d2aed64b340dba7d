"""Process: a Python object with a pid and a mailbox, run when a message reaches it.

A process owns no asyncio Task while idle. The node delivers a message by calling
:meth:`Process.deliver` synchronously (from the connection reader, or from a local
send); the process runs its handler at once. A handler that returns a coroutine makes
the process *busy*: a Task runs it, messages that arrive meanwhile queue in the
mailbox, and the Task ends once the mailbox is drained. A message sent to a busy
process (including one sent to itself from its own handler) is queued, so handlers
never re-enter.

Signals follow Erlang: ``kill`` from :meth:`Node.exit` cannot be trapped and becomes
``killed``, a process with ``trap_exit`` receives ``('EXIT', From, Reason)`` messages
instead, and ``normal`` is ignored unless trapping. Who is linked to or monitors whom
is not kept here but in the process table (:mod:`py_nodes._table`), which a process
tells when it exits (:class:`Owner`); the node a process talks to is a :class:`Host`.

An idle process is mostly its own slots: no dict or set until one is needed.

A handler that raises stops its process with reason
``(python_error, b"ExceptionType: message")``; the traceback is logged.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, Protocol, TypeVar, overload

from py_nodes._terms import Atom, Pid, Reference

__all__ = ["Host", "MailboxProcess", "Owner", "Process", "python_error_reason"]

log = logging.getLogger("py_nodes.process")

NORMAL = Atom("normal")
KILL = Atom("kill")
KILLED = Atom("killed")
EXIT = Atom("EXIT")
PYTHON_ERROR = Atom("python_error")

P = TypeVar("P", bound="Process")
_F = TypeVar("_F", bound=Callable[..., Any])


def python_error_reason(exc: BaseException) -> tuple[Atom, bytes]:
    """The exit reason for a Python exception: ``{python_error, <<"Type: message">>}``."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (PYTHON_ERROR, text.encode("utf-8", "replace"))


class Host(Protocol):
    """What a process may ask of its node: :class:`~py_nodes.Node`'s public calls."""

    @property
    def name(self) -> str: ...
    @property
    def atom(self) -> Atom: ...
    @property
    def net_ticktime(self) -> float: ...

    def send(self, dest: Any, message: Any, *, sender: Pid | None = None) -> None: ...
    def reply(self, from_: tuple[Any, Any], value: Any, *, sender: Pid | None = None) -> None: ...
    def cast(self, dest: Any, request: Any) -> None: ...
    async def call(self, dest: Any, request: Any, timeout: float | None = 5.0) -> Any: ...
    async def ping(self, node_name: str, timeout: float = 5.0) -> bool: ...
    def spawn(self, cls: type[P], *args: Any, name: Atom | str | None = None) -> Pid: ...
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
    def process(self, pid: Pid) -> Process | None: ...
    def processes(self) -> list[Pid]: ...
    def registered(self) -> list[Atom]: ...
    def nodes(self) -> list[str]: ...
    async def connect(self, node_name: str) -> bool: ...
    def disconnect(self, node_name: str) -> bool: ...
    def monitor_count(self) -> int: ...
    @overload
    def expose(self, module: str, function: str) -> Callable[[_F], _F]: ...
    @overload
    def expose(self, module: str, function: str, fn: _F) -> _F: ...
    def exposed(self, module: str, function: str) -> Callable[..., Any] | None: ...
    def notify_exit(self, pid: Pid, callback: Callable[[Pid, Any], None]) -> bool: ...
    def register(self, name: Atom | str, pid: Pid) -> None: ...
    def unregister(self, name: Atom | str) -> None: ...
    def whereis(self, name: Atom | str) -> Pid | None: ...
    def make_ref(self) -> Reference: ...
    def link(self, a: Pid, b: Pid) -> None: ...
    def unlink(self, a: Pid, b: Pid) -> None: ...
    def exit(self, pid: Pid, reason: Any, *, sender: Pid | None = None) -> None: ...
    def monitor(self, watcher: Pid, target: Any) -> Reference: ...
    def demonitor(self, watcher: Pid, ref: Reference) -> None: ...
    def alias(self, pid: Pid, *, reply: bool = False) -> Reference: ...
    def unalias(self, pid: Pid, alias: Reference) -> bool: ...


class Owner(Protocol):
    """What keeps the process's links and monitors: told once when it exits."""

    def exited(self, proc: Process, reason: Any) -> None: ...


class Process:
    """Base of every process hosted by a :class:`~py_nodes.Node`.

    Subclass it and override :meth:`handle_message` (which may return a coroutine), or
    use :class:`~py_nodes.GenServer`. Start it with ``node.spawn(cls, *args)``, which
    calls :meth:`init` with ``args``. Subclasses that declare no ``__slots__`` get a
    ``__dict__`` for their state.
    """

    __slots__ = (
        "_alive",
        "_busy",
        "_mailbox",
        "_owner",
        "_task",
        "exit_callback",
        "name",
        "node",
        "pid",
        "trap_exit",
    )

    node: Host
    pid: Pid
    name: Atom | None
    trap_exit: bool
    # Set by the table's notify_exit, called by it once when this process exits: kept
    # here rather than in a table keyed by pid, which a node of many processes would
    # look up and write in memory that is rarely in the cache.
    exit_callback: Callable[[Pid, Any], None] | None
    _alive: bool
    _busy: bool
    _owner: Owner
    _mailbox: collections.deque[Any] | None
    _task: asyncio.Task[None] | None

    def attach(self, node: Host, owner: Owner, pid: Pid) -> None:
        """Make this object the live process ``pid`` of ``node`` (the table calls it)."""
        self.node = node
        self._owner = owner
        self.pid = pid
        self.name = None
        self.trap_exit = False
        self.exit_callback = None
        self._alive = True
        self._busy = False
        self._mailbox = None
        self._task = None

    def detach(self) -> None:
        """This process never started (its ``init`` raised): it is dead, silently."""
        self._alive = False

    # -- callbacks ----------------------------------------------------------------

    def init(self, *args: Any) -> None:
        """Called by ``node.spawn`` with its extra arguments; raise to refuse to start."""

    def handle_message(self, message: Any) -> Coroutine[Any, Any, Any] | None:
        """Handle one message. Return None, or a coroutine to run before the next one."""
        return None

    def terminate(self, reason: Any) -> None:
        """Called once when the process exits (not when killed)."""

    # -- API for subclasses ---------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def busy(self) -> bool:
        """True while a coroutine handler runs; messages wait in the mailbox meanwhile."""
        return self._busy

    def send(self, dest: Any, message: Any) -> None:
        """Send ``message`` to a pid, a name, a ``(name, node)`` tuple or an alias."""
        self.node.send(dest, message, sender=self.pid)

    def link(self, pid: Pid) -> None:
        self.node.link(self.pid, pid)

    def unlink(self, pid: Pid) -> None:
        self.node.unlink(self.pid, pid)

    def monitor(self, target: Any) -> Reference:
        """Monitor a pid, a local name, or ``(name, node)``; returns the monitor ref."""
        return self.node.monitor(self.pid, target)

    def demonitor(self, ref: Reference) -> None:
        self.node.demonitor(self.pid, ref)

    async def spawn_remote(
        self,
        node_name: str,
        module: Atom | str,
        function: Atom | str,
        args: Sequence[Any] = (),
        **kwargs: Any,
    ) -> Any:
        """:meth:`Node.spawn_remote` with this process as the owner of link and monitor."""
        return await self.node.spawn_remote(
            node_name, module, function, args, owner=self.pid, **kwargs
        )

    def alias(self, *, reply: bool = False) -> Reference:
        """A new alias of this process (see :meth:`Node.alias`)."""
        return self.node.alias(self.pid, reply=reply)

    def unalias(self, alias: Reference) -> bool:
        """Deactivate one of this process's aliases; False if it was not active."""
        return self.node.unalias(self.pid, alias)

    def exit(self, reason: Any = NORMAL) -> None:
        """Stop this process now with ``reason`` (links and monitors are told)."""
        self._terminate(reason)

    async def call(self, dest: Any, request: Any, timeout: float = 5.0) -> Any:
        """``gen_server:call`` from this process (see :meth:`Node.call`)."""
        return await self.node.call(dest, request, timeout)

    def cast(self, dest: Any, request: Any) -> None:
        self.node.cast(dest, request)

    # -- delivery and signals (called by the node and its table) ------------------------

    def deliver(self, message: Any) -> None:
        """A message arrives: handle it now, or queue it while busy."""
        if not self._alive:
            return
        if self._busy:
            if self._mailbox is None:
                self._mailbox = collections.deque()
            self._mailbox.append(message)
            return
        self._run(message)

    def exit_signal(self, from_pid: Pid, reason: Any, *, link: bool) -> None:
        """An exit signal from ``from_pid``: through a link (``link``), or ``exit/2``.

        The table checks that a link signal comes through a link still in place.
        """
        if not self._alive:
            return
        if reason is KILL and not link:
            self._terminate(KILLED, run_terminate=False)
        elif self.trap_exit:
            self.deliver((EXIT, from_pid, reason))
        elif reason is NORMAL:
            if from_pid == self.pid:
                self._terminate(NORMAL)
        else:
            self._terminate(reason)

    def _run(self, message: Any) -> None:
        self._busy = True
        while True:
            try:
                pending = self._dispatch(message)
            except BaseException as exc:
                self._crash(exc)
                return
            if not self._alive:
                return
            if pending is not None and inspect.iscoroutine(pending):
                self._task = asyncio.get_running_loop().create_task(self._run_async(pending))
                return
            mailbox = self._mailbox
            if not mailbox:
                break
            message = mailbox.popleft()
        self._busy = False

    async def _run_async(self, pending: Coroutine[Any, Any, Any]) -> None:
        try:
            await pending
        except asyncio.CancelledError:
            return
        except BaseException as exc:
            self._crash(exc)
            return
        self._task = None
        self._busy = False
        if self._alive and self._mailbox:
            self._run(self._mailbox.popleft())

    def _dispatch(self, message: Any) -> Coroutine[Any, Any, Any] | None:
        return self.handle_message(message)

    def _crash(self, exc: BaseException) -> None:
        log.error("process %r (%s) crashed", self.pid, type(self).__name__, exc_info=exc)
        self._terminate(python_error_reason(exc))

    def _terminate(self, reason: Any, *, run_terminate: bool = True) -> None:
        if not self._alive:
            return
        self._alive = False
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if run_terminate:
            try:
                self.terminate(reason)
            except Exception:
                log.exception("terminate of %r raised", self.pid)
        self._mailbox = None
        self._owner.exited(self, reason)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pid!r}{' ' + self.name.name if self.name else ''}>"


class MailboxProcess(Process):
    """A plain process whose messages wait in a mailbox for ``await receive()``."""

    __slots__ = ("_inbox", "_waiter")

    _inbox: collections.deque[Any]
    _waiter: asyncio.Future[None] | None

    def init(self, *args: Any) -> None:
        self._inbox = collections.deque()
        self._waiter = None

    def handle_message(self, message: Any) -> None:
        self._inbox.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self, timeout: float | None = None) -> Any:
        """The oldest message; raises TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not self._inbox:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        return self._inbox.popleft()

    def messages(self) -> list[Any]:
        """Take every message already received, without waiting."""
        out = list(self._inbox)
        self._inbox.clear()
        return out
