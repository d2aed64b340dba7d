"""Spawn requests both ways: erpc/rpc from Erlang, and :meth:`Node.spawn_remote`.

:class:`Spawner` speaks this part of the protocol; what it needs of the process table
is a :class:`SpawnTable`, and of the node a way to send and the exposed functions.

**Incoming.** Since OTP 23, ``erpc:call(Node, M, F, A)`` (and ``rpc:call``,
``erpc:multicall``, which go through it) sends SPAWN_REQUEST for
``erpc:execute_call(Ref, M, F, A)`` with the options ``[{reply, error_only}, monitor]``.
We answer SPAWN_REPLY with a fresh pid and the "monitor made" flag, run the exposed
Python function, and end the "process" the way ``execute_call/4`` does: its exit
reason, delivered as MONITOR_P_EXIT on the request's ref, is the result::

    {Ref, return, Value}                  the function returned Value
    {Ref, throw, Value}                   (never produced here)
    {Ref, exit, Reason}                   the function raised SystemExit / asked to exit
    {Ref, error, Reason, Stack}           it raised: Reason = {python_error, <<"T: msg">>}
                                          or undef for an unexposed M:F/Arity

so ``erpc:call`` raises ``error:{exception, undef, [{M, F, Args, []}]}`` for an
unexposed function, and ``rpc:call`` returns ``{badrpc, {'EXIT', {undef, ...}}}``.
``erpc:execute_cast/3`` (``erpc:cast``) runs the function and reports nothing. Any
other MFA "crashes" at once with ``undef``, as a spawn of a missing function does.

**Outgoing.** ``spawn_remote`` sends ``{29, ReqId, Owner, GroupLeader, {M, F, Arity},
Opts}`` and waits for ``{31, ReqId, Owner, Flags, Result}``. As in
``erlang:spawn_request``, the monitor it asks for is identified by ReqId, and the peer
sends the reply before any signal of the new process, on the same connection: the
link or monitor is in our tables before its exit can arrive. A reply that comes after
the request was given up (timeout, owner gone) undoes what the peer made: a link gets
the exit signal ``abandoned``, a monitor a DEMONITOR. The new process's group leader
is the node's :class:`IoServer` unless one is given: output written there goes to the
``py_nodes.io`` logger instead of blocking the writer on a process that never answers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from py_nodes._control import (
    Channel,
    ControlEvent,
    Demonitor,
    Exit,
    MonitorExit,
    SpawnReply,
    SpawnRequest,
)
from py_nodes._errors import CallTimeout, NodeDown, NoProc, SpawnError
from py_nodes._process import Process, python_error_reason
from py_nodes._terms import Atom, ImproperList, Pid, Reference

__all__ = ["IoServer", "SpawnTable", "Spawner"]

log = logging.getLogger("py_nodes.rpc")
io_log = logging.getLogger("py_nodes.io")

ERPC = Atom("erpc")
EXECUTE_CALL = Atom("execute_call")
EXECUTE_CAST = Atom("execute_cast")
MONITOR = Atom("monitor")
LINK = Atom("link")
RETURN = Atom("return")
ERROR = Atom("error")
EXIT = Atom("exit")
UNDEF = Atom("undef")
NORMAL = Atom("normal")
BADARG = Atom("badarg")
ABANDONED = Atom("abandoned")
NOCONNECTION = Atom("noconnection")
IO_REQUEST = Atom("io_request")
IO_REPLY = Atom("io_reply")
PUT_CHARS = Atom("put_chars")
OK = Atom("ok")
ENOTSUP = Atom("enotsup")

_LINK_MADE = 1
_MONITOR_MADE = 2

#: ``exposed(module, function)``: the Python function erpc may run as ``module:function``.
Exposed = Callable[[str, str], Callable[..., Any] | None]


class SpawnTable(Protocol):
    """What spawning needs of the process table."""

    def new_pid(self) -> Pid: ...
    def make_ref(self) -> Reference: ...
    def process(self, pid: Pid) -> Process | None: ...
    def add_remote_link(self, local: Pid, remote: Pid, node_name: str) -> None: ...
    def add_remote_monitor(
        self, watcher: Pid, ref: Reference, ident: Pid | tuple[Atom, Atom], node_name: str
    ) -> None: ...


def _has_option(options: list[Any], name: Atom) -> bool:
    return any(
        opt is name or (type(opt) is tuple and len(opt) == 2 and opt[0] is name) for opt in options
    )


@dataclass(slots=True)
class _PendingSpawn:
    """A spawn request of ours that waits for its SPAWN_REPLY."""

    node_name: str
    owner: Pid
    link: bool
    monitor: bool
    future: asyncio.Future[Pid]


class Spawner:
    """Spawn requests from other nodes, and ours to them."""

    def __init__(
        self, table: SpawnTable, send: Callable[[str, ControlEvent], None], exposed: Exposed
    ) -> None:
        self._table = table
        self._send = send
        self._exposed = exposed
        self._spawning: dict[Reference, _PendingSpawn] = {}

    # -- incoming: erpc and rpc -------------------------------------------------------------

    def on_request(self, peer: Channel, request: SpawnRequest) -> None:
        """Handle one SPAWN_REQUEST from ``peer``."""
        pid = self._table.new_pid()
        flags = (_LINK_MADE if _has_option(request.options, LINK) else 0) | (
            _MONITOR_MADE if _has_option(request.options, MONITOR) else 0
        )
        peer.send(SpawnReply(request.req_id, request.from_pid, flags, pid))

        def finish(reason: Any) -> None:
            if flags & _MONITOR_MADE:
                peer.send(MonitorExit(pid, request.from_pid, request.req_id, reason))
            if flags & _LINK_MADE and reason is not NORMAL:
                peer.send(Exit(pid, request.from_pid, reason))

        mfa = (request.module, request.function, len(request.args))
        if mfa == (ERPC, EXECUTE_CALL, 4):
            ref, module, function, args = request.args
            self._run(module, function, args, finish, ref)
        elif mfa == (ERPC, EXECUTE_CAST, 3):
            module, function, args = request.args
            self._run(module, function, args, lambda _reason: finish(NORMAL), None)
        else:
            stack: list[Any] = [(request.module, request.function, request.args, [])]
            finish((UNDEF, stack))

    def _run(self, module: Any, function: Any, args: Any, finish: Any, ref: Any) -> None:
        fn = None
        if type(module) is Atom and type(function) is Atom and type(args) is list:
            fn = self._exposed(module.name, function.name)
        if fn is not None:
            try:
                inspect.signature(fn).bind(*args)
            except TypeError:
                fn = None
            except ValueError:
                pass  # no signature (a builtin): let the call decide
        if fn is None:
            stack: list[Any] = [(module, function, args, [])]
            finish((ref, ERROR, UNDEF, stack))
            return
        stack = [(module, function, len(args), [])]
        try:
            result = fn(*args)
        except (Exception, SystemExit) as exc:
            finish(_failure(ref, exc, stack))
            return
        if inspect.isawaitable(result):
            asyncio.get_running_loop().create_task(_finish_async(result, ref, stack, finish))
            return
        finish((ref, RETURN, result))

    # -- outgoing: spawn_remote ----------------------------------------------------------------

    async def request(
        self,
        node_name: str,
        module: Atom,
        function: Atom,
        args: Sequence[Any],
        *,
        owner: Pid,
        group_leader: Pid,
        link: bool,
        monitor: bool,
        options: Sequence[Any],
        timeout: float | None,
    ) -> Pid | tuple[Pid, Reference]:
        """Spawn ``module:function(args...)`` on ``node_name`` for the local ``owner``.

        The arguments are checked already (see :meth:`Node.spawn_remote`).
        """
        req_id = self._table.make_ref()
        future: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()
        self._spawning[req_id] = _PendingSpawn(node_name, owner, link, monitor, future)
        opts = [*options, *([LINK] if link else ()), *([MONITOR] if monitor else ())]
        self._send(
            node_name,
            SpawnRequest(
                req_id,
                owner,
                group_leader,
                module,
                function,
                len(args),
                opts,
                list(args),
            ),
        )
        try:
            pid = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise CallTimeout(f"no spawn reply from {node_name} within {timeout}s") from None
        return (pid, req_id) if monitor else pid

    def on_reply(self, peer: Channel, reply: SpawnReply) -> None:
        """Complete the spawn request that ``reply`` answers."""
        pending = self._spawning.pop(reply.req_id, None)
        if pending is None:
            return
        future, result = pending.future, reply.result
        if type(result) is not Pid:
            if not future.done():
                where = pending.node_name
                future.set_exception(
                    NodeDown(f"{where} has no connection for the spawn")
                    if result is NOCONNECTION
                    else SpawnError(result, f"{where} refused the spawn: {result}")
                )
            return
        owner = self._table.process(pending.owner) is not None
        if owner and future.done():
            owner = False  # the request timed out
        if not owner and not future.done() and (pending.link or pending.monitor):
            future.set_exception(NoProc(f"the owner {pending.owner!r} exited during the spawn"))
        peer_name = pending.node_name
        if reply.flags & _LINK_MADE:
            if not owner:
                peer.send(Exit(pending.owner, result, ABANDONED))
            else:
                self._table.add_remote_link(pending.owner, result, peer_name)
        if reply.flags & _MONITOR_MADE:
            if not owner:
                peer.send(Demonitor(pending.owner, result, reply.req_id))
            else:
                self._table.add_remote_monitor(pending.owner, reply.req_id, result, peer_name)
        if not future.done():
            future.set_result(result)

    def node_down(self, node_name: str) -> None:
        """The connection to ``node_name`` is gone: its pending spawns fail with NodeDown."""
        if not self._spawning:
            return
        for req_id, pending in list(self._spawning.items()):
            if pending.node_name == node_name:
                del self._spawning[req_id]
                if not pending.future.done():
                    pending.future.set_exception(NodeDown(f"no connection to {node_name}"))


async def _finish_async(pending: Any, ref: Any, stack: Any, finish: Any) -> None:
    try:
        result = await pending
    except (Exception, SystemExit) as exc:
        finish(_failure(ref, exc, stack))
        return
    finish((ref, RETURN, result))


def _failure(ref: Any, exc: BaseException, stack: Any) -> Any:
    if isinstance(exc, SystemExit):
        return (ref, EXIT, exc.code if exc.code is not None else NORMAL)
    log.info("exposed function raised %s: %s", type(exc).__name__, exc)
    return (ref, ERROR, python_error_reason(exc), stack)


class IoServer(Process):
    """The group leader of processes we spawn elsewhere: writes go to a logger.

    It speaks just enough of the Erlang I/O protocol for ``io:format`` and
    ``io:put_chars`` to return ``ok``; reads get ``{error, enotsup}``.
    """

    __slots__ = ()

    def handle_message(self, message: Any) -> None:
        if type(message) is not tuple or len(message) != 4 or message[0] is not IO_REQUEST:
            return
        _, sender, reply_as, request = message
        reply: Any = (ERROR, ENOTSUP)
        if type(request) is tuple and len(request) >= 3 and request[0] is PUT_CHARS:
            io_log.info("%s: %s", sender, _chars_text(request[2:]))
            reply = OK
        if type(sender) is Pid:
            self.node.send(sender, (IO_REPLY, reply_as, reply), sender=self.pid)


def _chars_text(parts: tuple[Any, ...]) -> str:
    """Readable text for ``{put_chars, Enc, Chars}`` or ``{put_chars, Enc, M, F, A}``."""
    if len(parts) == 1:
        try:
            return _flatten(parts[0]).decode("utf-8", "replace").rstrip("\n")
        except (TypeError, ValueError):
            pass
    return repr(parts)


def _flatten(chars: Any) -> bytes:
    if isinstance(chars, bytes):
        return chars
    if isinstance(chars, int):
        return chr(chars).encode("utf-8")
    if isinstance(chars, list):
        return b"".join(_flatten(c) for c in chars)
    if isinstance(chars, ImproperList):
        return b"".join(_flatten(c) for c in (*chars.items, chars.tail))
    raise TypeError("not iodata")
