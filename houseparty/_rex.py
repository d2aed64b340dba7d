"""``rpc:call`` into a sidecar from Python, through the node's ``rex`` server, and the
registry lookup that rides on it.

Every OTP node runs ``rex`` (kernel's rpc server): a gen_server call of
``{call, Module, Function, Args, GroupLeader}`` applies the function there and answers its
result, or ``{badrpc, Reason}``. The group leader, a pid, receives any io the function
does.
"""

from __future__ import annotations

from typing import Any, Protocol

from py_nodes._terms import Atom, Pid

__all__ = ["registry_whereis", "rex_call"]

REGISTRY_TIMEOUT_S = 10.0


class _Caller(Protocol):
    async def call(self, dest: Any, request: Any, timeout: float) -> Any: ...


class _Process(_Caller, Protocol):
    @property
    def pid(self) -> Pid: ...


async def rex_call(
    caller: _Caller,
    node: str | Atom,
    module: str,
    function: str,
    args: list[Any],
    group_leader: Pid | None,
    timeout: float,
) -> Any:
    """``apply(Module, Function, Args)`` on ``node``, called by a Node or a process."""
    request = (Atom("call"), Atom(module), Atom(function), args, group_leader)
    target = node if isinstance(node, Atom) else Atom(node)
    return await caller.call((Atom("rex"), target), request, timeout)


async def registry_whereis(caller: _Process, sidecar: Atom, name: Any) -> Pid | None:
    """``hp_registry:whereis_name(Name)`` on ``sidecar``, asked by a process."""
    pid = await rex_call(
        caller, sidecar, "hp_registry", "whereis_name", [name], caller.pid, REGISTRY_TIMEOUT_S
    )
    return pid if isinstance(pid, Pid) else None
