"""The Python API of workers of your own: ``from houseparty import Workers``.

Register a name, and the cluster starts the worker on the name's owner pod, moves it on a
drain and restarts it after a pod loss; call it by name from anywhere. Write the worker
class with :class:`houseparty.workers.Worker` and make it known to the pods with the
``HOUSEPARTY_WORKERS`` setting (``houseparty up --worker module:Class``)::

    with Workers("sidecar1@127.0.0.1", cookie="secret") as workers:
        workers.register("visits", "counter", 0)     # name, kind, the args of setup
        workers.call("visits", "incr")               # 1, wherever it lives now
        workers.cast("visits", "incr")
        workers.join("counters", "visits")
        workers.multi_call("counters", "get")         # [2]
        workers.unregister("visits")                  # and the worker stops

    async with AsyncWorkers("sidecar1@127.0.0.1", cookie="secret") as workers:
        await workers.call("visits", "get")

Names and groups are ``str``; inside the cluster they are binaries, so Erlang and Elixir
reach the same worker as ``gen_server:call({via, hp_registry, <<"visits">>}, Msg)``.
Requests, replies and args are terms as :mod:`py_nodes` maps them: a ``str`` travels as
a binary and comes back as ``bytes``, an :class:`~py_nodes.Atom` as an atom. Errors:
:class:`UnknownName`, :class:`AlreadyRegistered`, :class:`UnknownKind`,
:class:`WorkerStartError`, :class:`Unavailable`, :class:`BadArgument`, and
:class:`ConnectError` when the cluster cannot be reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from houseparty._connection import CALL_TIMEOUT_S, AsyncClient, SyncClient, TlsSettings
from houseparty._errors import (
    AlreadyRegistered,
    ApiError,
    BadArgument,
    Unavailable,
    UnknownKind,
    UnknownName,
    WorkerStartError,
)
from houseparty.workers import CALL_TIMEOUT_S as WORKER_CALL_TIMEOUT_S
from houseparty.workers import unwrap_call_result
from py_nodes._terms import Atom, Pid

__all__ = ["AsyncWorkers", "Workers"]


class _W:
    """The atoms of the registry's answers."""

    ok = Atom("ok")
    error = Atom("error")
    absent = Atom("absent")
    already_registered = Atom("already_registered")
    unknown_kind = Atom("unknown_kind")
    init_failed = Atom("init_failed")
    no_python_node = Atom("no_python_node")
    no_node_available = Atom("no_node_available")


_SWARM_DIE = (Atom("swarm"), Atom("die"))
# Rooms and people are named by atoms, and registered by the HouseParty client.
_HOUSE_KINDS = frozenset({"room", "person"})


def _name(value: Any, what: str = "a name") -> bytes:
    """A name or group from Python, as the binary the cluster knows it by."""
    if not isinstance(value, str) or not value:
        raise BadArgument(value, f"{what} must be a non-empty str, not {value!r}")
    try:
        return value.encode()
    except UnicodeEncodeError:  # a lone surrogate
        raise BadArgument(value, f"{what} must be text UTF-8 can carry, not {value!r}") from None


def _timeout_ms(timeout: float) -> int:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise BadArgument(timeout, f"timeout must be a positive number of seconds, not {timeout!r}")
    return int(timeout * 1000)


def _registered(name: str, kind: str, result: Any) -> Pid:
    match result:
        case (_W.ok, Pid() as pid):
            return pid
        case (_W.error, (_W.already_registered, pid)):
            raise AlreadyRegistered(result, f"{name!r} is registered already", pid)
        case (_W.error, (_W.unknown_kind, _)):
            raise UnknownKind(
                result, f"no pod knows a worker of kind {kind!r} (see HOUSEPARTY_WORKERS)"
            )
        case (_W.error, (_W.init_failed, detail)):
            text = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
            raise WorkerStartError(result, f"the {kind!r} worker {name!r} did not start: {text}")
        case (_W.error, (_W.no_python_node | _W.no_node_available) as why):
            raise Unavailable(result, f"no pod could start {name!r}: {why}")
    raise ApiError(result, f"registering {name!r} failed: {result!r}")


class AsyncWorkers(AsyncClient):
    """The asyncio client of workers of your own. ``node`` is any sidecar of the cluster;
    ``timeout`` bounds each request to it, ``client_host`` names and binds this client's
    node on that address (for a client on another host or network namespace); ``tls``
    connects over TLS distribution, as :class:`~houseparty.AsyncHouseParty`'s does."""

    async def register(self, name: str, kind: str, *args: Any) -> Pid:
        """Start a worker of ``kind`` (a class the pods know) registered as ``name``, on
        the name's owner pod, its ``setup`` given ``args``; its pid. The cluster
        restarts it from the same args if its pod is lost.

        Raises :class:`AlreadyRegistered` (``.pid`` is the worker), :class:`UnknownKind`,
        :class:`WorkerStartError` (``setup`` raised), :class:`Unavailable`."""
        key = _name(name)
        if kind in _HOUSE_KINDS:
            raise BadArgument(kind, f"{kind!r} is HouseParty's own kind: see HouseParty")
        mfa_args = [_name(kind, "a kind"), key, list(args)]
        result = await self.rpc(
            "hp_registry", "register_name", [key, Atom("hp_python"), Atom("start_worker"), mfa_args]
        )
        return _registered(name, kind, result)

    async def whereis(self, name: str) -> Pid | None:
        """The pid of the worker registered as ``name``, or None."""
        pid = await self.rpc("hp_registry", "whereis_name", [_name(name)], retry_elsewhere=True)
        return pid if isinstance(pid, Pid) else None

    async def call(self, name: str, request: Any, *, timeout: float = WORKER_CALL_TIMEOUT_S) -> Any:
        """``gen_server:call`` the worker registered as ``name``; its reply. Rides out a
        handoff or a restart (for a few seconds, trying again each ``timeout``: a request
        may then reach the worker twice).

        Raises :class:`UnknownName`, :class:`Unavailable` when it does not answer, or
        :class:`WorkerCrashed` when it crashed on the request (it restarts from its last
        acknowledged state; the request is not tried again)."""
        key = _name(name)
        options = {Atom("timeout"): _timeout_ms(timeout)}
        result = await self.rpc("hp_python", "call_name", [key, request, options])
        return unwrap_call_result(name, result)

    async def cast(self, name: str, request: Any) -> None:
        """``gen_server:cast`` to the worker registered as ``name``, once it is found
        (riding out a handoff). Raises :class:`UnknownName`, :class:`Unavailable`."""
        result = await self.rpc("hp_python", "cast_name", [_name(name), request, {}])
        if result is _W.ok:
            return
        if result is _W.absent:
            raise UnknownName(result, f"no worker is registered as {name!r}")
        raise Unavailable(result, f"the worker {name!r} could not be reached: {result!r}")

    async def unregister(self, name: str, *, stop: bool = True) -> None:
        """Drop the name; the worker stops too (``{swarm, die}``) unless ``stop=False``,
        as in swarm, where it would run on unnamed. Nothing happens for an unknown name."""
        key = _name(name)
        pid = await self.whereis(name) if stop else None
        await self.rpc("hp_registry", "unregister_name", [key], retry_elsewhere=True)
        if pid is not None:
            await self.rpc("erlang", "send", [pid, _SWARM_DIE])

    async def _pid_of(self, name: str) -> Pid:
        pid = await self.whereis(name)
        if pid is None:
            raise UnknownName(name, f"no worker is registered as {name!r}")
        return pid

    async def join(self, group: str, name: str) -> None:
        """Put the worker registered as ``name`` in ``group``; it stays there when it
        moves. Raises :class:`UnknownName`."""
        group_key = _name(group, "a group")
        await self.rpc(
            "hp_registry", "join", [group_key, await self._pid_of(name)], retry_elsewhere=True
        )

    async def leave(self, group: str, name: str) -> None:
        """Take the worker registered as ``name`` out of ``group``."""
        group_key = _name(group, "a group")
        await self.rpc(
            "hp_registry", "leave", [group_key, await self._pid_of(name)], retry_elsewhere=True
        )

    async def members(self, group: str) -> list[Pid]:
        """The pids of ``group``'s members (pods that do not answer in time are left out)."""
        pids: list[Pid] = await self.rpc(
            "hp_registry", "members", [_name(group, "a group")], retry_elsewhere=True
        )
        return pids

    async def multi_call(
        self, group: str, request: Any, *, timeout: float = WORKER_CALL_TIMEOUT_S
    ) -> list[Any]:
        """``gen_server:call`` every member of ``group`` at once; the replies that came
        within ``timeout``, in no particular order (dead and slow members are left out)."""
        args = [_name(group, "a group"), request, _timeout_ms(timeout)]
        replies: list[Any] = await self.rpc("hp_registry", "multi_call", args)
        return replies

    async def publish(self, group: str, message: Any) -> None:
        """Send ``message`` to every member of ``group`` (their ``on_info``)."""
        await self.rpc("hp_registry", "publish", [_name(group, "a group"), message])


class Workers(SyncClient):
    """The synchronous client of workers of your own: an :class:`AsyncWorkers` on a
    private event loop thread, with the same methods."""

    _workers: AsyncWorkers

    def __init__(
        self,
        node: str | Sequence[str],
        cookie: str,
        *,
        timeout: float = CALL_TIMEOUT_S,
        client_host: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self._workers = AsyncWorkers(
            node, cookie, timeout=timeout, client_host=client_host, tls=tls
        )
        super().__init__(self._workers)

    def register(self, name: str, kind: str, *args: Any) -> Pid:
        """See :meth:`AsyncWorkers.register`."""
        return self._run(self._workers.register(name, kind, *args))

    def whereis(self, name: str) -> Pid | None:
        """See :meth:`AsyncWorkers.whereis`."""
        return self._run(self._workers.whereis(name))

    def call(self, name: str, request: Any, *, timeout: float = WORKER_CALL_TIMEOUT_S) -> Any:
        """See :meth:`AsyncWorkers.call`."""
        return self._run(self._workers.call(name, request, timeout=timeout))

    def cast(self, name: str, request: Any) -> None:
        """See :meth:`AsyncWorkers.cast`."""
        self._run(self._workers.cast(name, request))

    def unregister(self, name: str, *, stop: bool = True) -> None:
        """See :meth:`AsyncWorkers.unregister`."""
        self._run(self._workers.unregister(name, stop=stop))

    def join(self, group: str, name: str) -> None:
        """See :meth:`AsyncWorkers.join`."""
        self._run(self._workers.join(group, name))

    def leave(self, group: str, name: str) -> None:
        """See :meth:`AsyncWorkers.leave`."""
        self._run(self._workers.leave(group, name))

    def members(self, group: str) -> list[Pid]:
        """See :meth:`AsyncWorkers.members`."""
        return self._run(self._workers.members(group))

    def multi_call(
        self, group: str, request: Any, *, timeout: float = WORKER_CALL_TIMEOUT_S
    ) -> list[Any]:
        """See :meth:`AsyncWorkers.multi_call`."""
        return self._run(self._workers.multi_call(group, request, timeout=timeout))

    def publish(self, group: str, message: Any) -> None:
        """See :meth:`AsyncWorkers.publish`."""
        self._run(self._workers.publish(group, message))


# help() on the synchronous client shows the same reference as on the asyncio one.
for _method in (
    "register",
    "whereis",
    "call",
    "cast",
    "unregister",
    "join",
    "leave",
    "members",
    "multi_call",
    "publish",
):
    getattr(Workers, _method).__doc__ = getattr(AsyncWorkers, _method).__doc__
