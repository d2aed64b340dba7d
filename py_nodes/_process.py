"""Processes: state objects with a mailbox, driven by message delivery.

A process owns no asyncio Task while idle. The node delivers a message by calling
:meth:`Process._deliver` synchronously (from the connection reader, or from a local
send); the process runs its handler at once. A handler that returns a coroutine makes
the process *busy*: a Task runs it, messages that arrive meanwhile queue in the
mailbox, and the Task ends once the mailbox is drained. A message sent to a busy
process (including one sent to itself from its own handler) is queued, so handlers
never re-enter.

Signals follow Erlang: links propagate exits (``normal`` is ignored unless trapping),
``kill`` from :meth:`Node.exit` cannot be trapped and becomes ``killed``, a process
with ``trap_exit`` receives ``('EXIT', From, Reason)`` messages instead, and monitors
deliver ``('DOWN', Ref, process, PidOrNameNode, Reason)``.

Bookkeeping is kept small because an idle process is mostly bookkeeping: slots, no
dict or set until one is needed, and a single watcher held inline (see
``_monitored_by``); a GenServer with a small state and one remote monitor costs about
650 bytes, the monitor's Reference included.

A handler that raises stops its process with reason
``(python_error, b"ExceptionType: message")``; the traceback is logged.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from py_nodes._terms import Atom, Pid, Reference, untrack

if TYPE_CHECKING:
    from py_nodes._node import Node

__all__ = ["MailboxProcess", "Process", "python_error_reason"]

log = logging.getLogger("py_nodes.process")

NORMAL = Atom("normal")
KILL = Atom("kill")
KILLED = Atom("killed")
EXIT = Atom("EXIT")
PYTHON_ERROR = Atom("python_error")


_Watcher = tuple[Reference, Pid, Atom | None]


def python_error_reason(exc: BaseException) -> tuple[Atom, bytes]:
    """The exit reason for a Python exception: ``{python_error, <<"Type: message">>}``."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (PYTHON_ERROR, text.encode("utf-8", "replace"))


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
        "_links",
        "_mailbox",
        "_monitored_by",
        "_monitoring",
        "_on_exit",
        "_task",
        "name",
        "node",
        "pid",
        "trap_exit",
    )

    node: Node
    pid: Pid
    name: Atom | None
    trap_exit: bool
    _alive: bool
    _busy: bool
    _links: set[Pid] | None
    # Who monitors us: None, one ``(ref, watcher, name)`` tuple, or a dict ``ref ->
    # (watcher, name)`` once there are two. ``name`` is the Atom the watcher monitored,
    # or None when it monitored our pid. Most processes have exactly one watcher (the
    # registry that placed them), and a dict would cost four times the tuple.
    _monitored_by: _Watcher | dict[Reference, tuple[Pid, Atom | None]] | None
    # ref -> target pid, or (name, node) for a name monitor
    _monitoring: dict[Reference, Pid | tuple[Atom, Atom]] | None
    _mailbox: collections.deque[Any] | None
    _task: asyncio.Task[None] | None
    # node.notify_exit's callback: a monitor without a reference, message or frame.
    _on_exit: Callable[[Pid, Any], None] | None

    def _attach(self, node: Node, pid: Pid) -> None:
        self.node = node
        self.pid = pid
        self.name = None
        self.trap_exit = False
        self._alive = True
        self._busy = False
        self._links = None
        self._monitored_by = None
        self._monitoring = None
        self._mailbox = None
        self._task = None
        self._on_exit = None

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
        self, node_name: str, module: Atom | str, function: Atom | str,
        args: Sequence[Any] = (), **kwargs: Any,
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

    # -- delivery (called by the node) ------------------------------------------------

    def _deliver(self, message: Any) -> None:
        if not self._alive:
            return
        if self._busy:
            if self._mailbox is None:
                self._mailbox = collections.deque()
            self._mailbox.append(message)
            return
        self._run(message)

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
        log.error(
            "process %r (%s) crashed", self.pid, type(self).__name__, exc_info=exc
        )
        self._terminate(python_error_reason(exc))

    def _exit_signal(self, from_pid: Pid, reason: Any, *, link: bool) -> None:
        """An exit signal from ``from_pid`` (a link exit when ``link``, else exit/2)."""
        if not self._alive:
            return
        if link:
            if self._links is None or from_pid not in self._links:
                return  # already unlinked: the signal is stale
            self._links.discard(from_pid)
        if reason is KILL and not link:
            self._terminate(KILLED, run_terminate=False)
        elif self.trap_exit:
            self._deliver((EXIT, from_pid, reason))
        elif reason is NORMAL:
            if from_pid == self.pid:
                self._terminate(NORMAL)
        else:
            self._terminate(reason)

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
        self.node._process_exited(self, reason)

    # -- who monitors us (see _monitored_by) ------------------------------------------

    def _add_watcher(self, ref: Reference, watcher: Pid, name: Atom | None) -> None:
        held = self._monitored_by
        if held is None:
            # Pids, references and atoms are leaves the collector does not track; so is a
            # tuple of them, which it would otherwise walk once for every process.
            self._monitored_by = untrack((ref, watcher, name))
        elif isinstance(held, tuple):
            self._monitored_by = {held[0]: (held[1], held[2]), ref: (watcher, name)}
        else:
            held[ref] = (watcher, name)

    def _drop_watcher(self, ref: Reference) -> None:
        held = self._monitored_by
        if isinstance(held, tuple):
            if held[0] == ref:
                self._monitored_by = None
        elif held is not None:
            held.pop(ref, None)
            if not held:
                self._monitored_by = None

    def _watchers(self) -> list[_Watcher]:
        held = self._monitored_by
        if held is None:
            return []
        if isinstance(held, tuple):
            return [held]
        return [(ref, watcher, name) for ref, (watcher, name) in held.items()]

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
