"""GenServer: the Python side of ``gen_server``.

Handlers run synchronously when their message is delivered and return an outcome:

* ``handle_call(request, from_)`` returns :class:`Reply` (answer now), :class:`NoReply`
  (answer later with ``self.reply(from_, value)``) or :class:`Stop` (stop, optionally
  answering first);
* ``handle_cast(request)`` and ``handle_info(message)`` return None / :class:`NoReply`,
  or :class:`Stop`.

A handler may also be ``async def``: the process is then busy until the coroutine
returns its outcome, and later messages wait in the mailbox (as a ``gen_server``
blocked in a call). This is the way to call another server from a handler::

    async def handle_call(self, request, from_):
        room = await self.call(("room_den", "sidecar1@127.0.0.1"), {"enter": self.me})
        return Reply(room)

Another way, which keeps the server responsive, is ``NoReply()`` plus a Task that
later calls ``self.reply(from_, value)``.

Calls arrive as ``('$gen_call', (Pid, Tag), Request)`` where ``Tag`` is a ref or, from
OTP 24+, the improper list ``[alias | Ref]``; :meth:`GenServer.reply` answers
``{Tag, Reply}`` to the alias (ALIAS_SEND) or to the pid. Any other return value
stops the server with ``{bad_return_value, Value}``; a raising handler stops it with
``{python_error, <<"Type: message">>}`` and a caller waiting in ``gen_server:call``
gets that exit.
"""

from __future__ import annotations

import inspect
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from py_nodes._process import NORMAL, Process
from py_nodes._terms import Atom

__all__ = ["GenServer", "NoReply", "Reply", "Stop"]

GEN_CALL = Atom("$gen_call")
GEN_CAST = Atom("$gen_cast")
BAD_RETURN_VALUE = Atom("bad_return_value")
_NO_REPLY: Any = object()


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the call with ``value`` and keep running."""

    value: Any


@dataclass(frozen=True, slots=True)
class NoReply:
    """Keep running; a call is answered later with :meth:`GenServer.reply`."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop with ``reason``; from ``handle_call``, answer ``reply`` first if given."""

    reason: Any = NORMAL
    reply: Any = _NO_REPLY


class GenServer(Process):
    """Base class of Python gen_servers. State lives in attributes set in :meth:`init`."""

    __slots__ = ()

    def handle_call(
        self, request: Any, from_: tuple[Any, Any]
    ) -> Reply | NoReply | Stop | Coroutine[Any, Any, Reply | NoReply | Stop]:
        """Answer a ``gen_server:call``. The default stops with ``bad_call``-like exit."""
        return Stop((Atom("unexpected_call"), request))

    def handle_cast(self, request: Any) -> NoReply | Stop | Coroutine[Any, Any, Any] | None:
        return None

    def handle_info(self, message: Any) -> NoReply | Stop | Coroutine[Any, Any, Any] | None:
        return None

    def reply(self, from_: tuple[Any, Any], value: Any) -> None:
        """Answer a call taken with :class:`NoReply`."""
        self.node.reply(from_, value, sender=self.pid)

    def call_again(self, request: Any, from_: tuple[Any, Any]) -> None:
        """Put a call taken with :class:`NoReply` at the end of the mailbox, to be handled
        again as if it had just come: its caller still waits for the answer."""
        self.send(self.pid, (GEN_CALL, from_, request))

    # -- dispatch -----------------------------------------------------------------

    def _dispatch(self, message: Any) -> Coroutine[Any, Any, Any] | None:
        if type(message) is tuple:
            size = len(message)
            if size == 3 and message[0] is GEN_CALL:
                from_ = message[1]
                outcome: Any = self.handle_call(message[2], from_)
                if type(outcome) is Reply:
                    self.node.reply(from_, outcome.value, sender=self.pid)
                    return None
                if inspect.iscoroutine(outcome):
                    return self._finish_async(outcome, from_)
                self._apply(outcome, from_)
                return None
            if size == 2 and message[0] is GEN_CAST:
                outcome = self.handle_cast(message[1])
                if inspect.iscoroutine(outcome):
                    return self._finish_async(outcome, _NO_REPLY)
                self._apply(outcome, _NO_REPLY)
                return None
        outcome = self.handle_info(message)
        if inspect.iscoroutine(outcome):
            return self._finish_async(outcome, _NO_REPLY)
        self._apply(outcome, _NO_REPLY)
        return None

    async def _finish_async(self, pending: Coroutine[Any, Any, Any], from_: Any) -> None:
        self._apply(await pending, from_)

    def _apply(self, outcome: Any, from_: Any) -> None:
        kind = type(outcome)
        if kind is Reply and from_ is not _NO_REPLY:
            self.node.reply(from_, outcome.value, sender=self.pid)
        elif kind is NoReply or (outcome is None and from_ is _NO_REPLY):
            pass
        elif kind is Stop:
            if outcome.reply is not _NO_REPLY and from_ is not _NO_REPLY:
                self.node.reply(from_, outcome.reply, sender=self.pid)
            self._terminate(outcome.reason)
        else:
            self._terminate((BAD_RETURN_VALUE, repr(outcome)))
