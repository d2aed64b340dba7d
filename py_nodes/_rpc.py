"""erpc and rpc from Erlang: SPAWN_REQUEST of ``erpc:execute_call/4``.

Since OTP 23, ``erpc:call(Node, M, F, A)`` (and ``rpc:call``, ``erpc:multicall``, which
go through it) sends SPAWN_REQUEST for ``erpc:execute_call(Ref, M, F, A)`` with the
options ``[{reply, error_only}, monitor]``. We answer SPAWN_REPLY with a fresh pid and
the "monitor made" flag, run the exposed Python function, and end the "process" the
way ``execute_call/4`` does: its exit reason, delivered as MONITOR_P_EXIT on the
request's ref, is the result::

    {Ref, return, Value}                  the function returned Value
    {Ref, throw, Value}                   (never produced here)
    {Ref, exit, Reason}                   the function raised SystemExit / asked to exit
    {Ref, error, Reason, Stack}           it raised: Reason = {python_error, <<"T: msg">>}
                                          or undef for an unexposed M:F/Arity

so ``erpc:call`` raises ``error:{exception, undef, [{M, F, Args, []}]}`` for an
unexposed function, and ``rpc:call`` returns ``{badrpc, {'EXIT', {undef, ...}}}``.
``erpc:execute_cast/3`` (``erpc:cast``) runs the function and reports nothing. Any
other MFA "crashes" at once with ``undef``, as a spawn of a missing function does.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from py_nodes._control import Exit, MonitorExit, SpawnReply, SpawnRequest
from py_nodes._process import python_error_reason
from py_nodes._terms import Atom

if TYPE_CHECKING:
    from py_nodes._node import Node
    from py_nodes._peer import PeerProtocol

__all__ = ["spawn_request"]

log = logging.getLogger("py_nodes.rpc")

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
