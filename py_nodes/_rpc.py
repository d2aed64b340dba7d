"""Spawn requests both ways: erpc/rpc from Erlang, and :meth:`Node.spawn_remote`.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from py_nodes._control import Demonitor, Exit, MonitorExit, SpawnReply, SpawnRequest
from py_nodes._errors import NodeDown, NoProc, SpawnError
from py_nodes._process import Process, python_error_reason
from py_nodes._terms import Atom, ImproperList, Pid

if TYPE_CHECKING:
    from py_nodes._node import Node
    from py_nodes._peer import PeerProtocol

__all__ = ["IoServer", "PendingSpawn", "fail_spawns", "spawn_reply", "spawn_request"]

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


def _has_option(options: list[Any], name: Atom) -> bool:
    return any(
        opt is name or (type(opt) is tuple and len(opt) == 2 and opt[0] is name)
        for opt in options
    )


def spawn_request(node: Node, peer: PeerProtocol, request: SpawnRequest) -> None:
    """Handle one SPAWN_REQUEST from ``peer``."""
    pid = node._new_pid()
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
        _run(node, module, function, args, finish, ref)
    elif mfa == (ERPC, EXECUTE_CAST, 3):
        module, function, args = request.args
        _run(node, module, function, args, lambda _reason: finish(NORMAL), None)
    else:
        stack: list[Any] = [(request.module, request.function, request.args, [])]
        finish((UNDEF, stack))


def _run(node: Node, module: Any, function: Any, args: Any, finish: Any, ref: Any) -> None:
    fn = None
    if type(module) is Atom and type(function) is Atom and type(args) is list:
        fn = node.exposed(module.name, function.name)
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


@dataclass(slots=True)
class PendingSpawn:
    """A spawn request of ours that waits for its SPAWN_REPLY."""

    node_name: str
    owner: Pid
    link: bool
    monitor: bool
    future: asyncio.Future[Pid]


def spawn_reply(node: Node, peer: PeerProtocol, reply: SpawnReply) -> None:
    """Complete the :class:`PendingSpawn` that ``reply`` answers."""
    pending = node._spawning.pop(reply.req_id, None)
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
    owner = node._procs.get(pending.owner)
    if owner is not None and future.done():
        owner = None  # the request timed out
    if owner is None and not future.done() and (pending.link or pending.monitor):
        future.set_exception(NoProc(f"the owner {pending.owner!r} exited during the spawn"))
    peer_name = pending.node_name
    if reply.flags & _LINK_MADE:
        if owner is None:
            peer.send(Exit(pending.owner, result, ABANDONED))
        else:
            node._add_remote_link(owner, result, peer_name)
    if reply.flags & _MONITOR_MADE:
        if owner is None:
            peer.send(Demonitor(pending.owner, result, reply.req_id))
        else:
            node._add_remote_monitor(owner, reply.req_id, result, peer_name)
    if not future.done():
        future.set_result(result)


def fail_spawns(node: Node, node_name: str) -> None:
    """The connection to ``node_name`` is gone: its pending spawns fail with NodeDown."""
    for req_id, pending in list(node._spawning.items()):
        if pending.node_name == node_name:
            del node._spawning[req_id]
            if not pending.future.done():
                pending.future.set_exception(NodeDown(f"no connection to {node_name}"))


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
