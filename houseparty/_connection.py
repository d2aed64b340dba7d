"""The connection every Python client of the cluster stands on: a hidden node of its own,
``rpc:call`` into one sidecar, and a synchronous front running the asyncio client on a
private event loop thread."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Coroutine, Sequence
from os import PathLike
from typing import Any, Self, TypeAlias, TypeVar

from houseparty._errors import ApiError, ConnectError, CookieRefused, NotConnected, Timeout
from houseparty._rex import rex_call
from py_nodes import (
    CallExit,
    CallTimeout,
    ConnectionLost,
    Node,
    NodeDown,
    PyNodesError,
    TlsConfig,
)
from py_nodes._terms import Atom

__all__ = ["CALL_TIMEOUT_S", "AsyncClient", "SyncClient", "TlsSettings"]

T = TypeVar("T")

#: A client's TLS settings: a :class:`~py_nodes.TlsConfig`, or a folder in cert-manager's
#: layout (``tls.crt``, ``tls.key``, ``ca.crt``).
TlsSettings: TypeAlias = TlsConfig | str | PathLike[str]

CALL_TIMEOUT_S = 60.0
HOST = "127.0.0.1"

log = logging.getLogger("houseparty.client")


class AsyncClient:
    """An asyncio client of the cluster, standing on any of its sidecars.

    ``nodes`` is one sidecar or several (seeds): the client talks to the first that
    answers, and when that one goes away under a request that is safe to repeat, asks the
    next. ``timeout`` bounds each request; ``client_host`` names this client's node after that
    address and has it listen there, for a client whose address differs from the
    sidecars' host (another network namespace, another machine); by default the client
    takes the first sidecar's host for its name and listens nowhere: it only calls out.
    ``tls`` (a :class:`~py_nodes.TlsConfig`, or a folder holding ``tls.crt``, ``tls.key``
    and ``ca.crt``) connects over TLS distribution, to a cluster that runs it; raises
    :class:`~py_nodes.TlsError` when the files cannot be used.
    """

    def __init__(
        self,
        node: str | Sequence[str],
        cookie: str,
        *,
        timeout: float = CALL_TIMEOUT_S,
        client_host: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self.seeds = [node] if isinstance(node, str) else list(node)
        if not self.seeds:
            raise ValueError("a client needs at least one sidecar to talk to")
        self.sidecar = self.seeds[0]
        self.timeout = timeout
        # A client only calls out: its node neither listens nor registers with epmd,
        # unless ``client_host`` asks it to listen on that address.
        host = client_host or (self.sidecar.split("@", 1)[1] if "@" in self.sidecar else HOST)
        self._node = Node(
            f"hpclient_{secrets.token_hex(4)}@{host}",
            cookie=cookie,
            port=0,
            listen_host=client_host,
            tls=tls if tls is None or isinstance(tls, TlsConfig) else TlsConfig.from_dir(tls),
        )
        self._started = False
        self._connected = False

    async def connect(self) -> None:
        """Start this client's node and reach a sidecar, the seeds in order.

        Raises :class:`CookieRefused` when a seed is up but refuses this client's cookie
        (and none answers), :class:`ConnectError` when none can be reached."""
        if not self._started:
            await self._node.start()
            self._started = True
        await self._reach(self.seeds)

    async def _reach(self, candidates: Sequence[str]) -> None:
        if await self._first_answering(candidates):
            self._connected = True
            return
        refused = [seed for seed in candidates if await self._node.listed_by_epmd(seed)]
        await self.close()
        if refused:
            raise CookieRefused(
                f"{', '.join(refused)} refused this client: is the cookie right, and does the "
                f"client speak {'TLS' if self._node.tls else 'plain'} distribution as the "
                "cluster does?"
            )
        raise ConnectError(f"cannot reach {_listing(candidates)} (is the cluster running?)")

    async def close(self) -> None:
        """Leave the cluster. The client can be connected again."""
        self._connected = False
        if self._started:
            self._started = False
            await self._node.stop()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def rpc(
        self, module: str, function: str, args: list[Any], *, retry_elsewhere: bool = False
    ) -> Any:
        """``rpc:call(Sidecar, Module, Function, Args)``.

        With ``retry_elsewhere``, a request whose sidecar went away before answering is
        asked again of the next seed that answers: only for requests that give the same
        result when they run twice. Raises :class:`NotConnected`, :class:`Timeout`,
        :class:`ConnectError` (no sidecar left), :class:`ApiError` (the function failed
        there: an exception, an unknown module)."""
        if not self._connected:
            raise NotConnected("the client is not connected: call connect() first")
        while True:
            try:
                return await self._rpc_once(module, function, args)
            except _SidecarLost as lost:
                if not retry_elsewhere:
                    raise ConnectError(
                        f"{lost.sidecar} went away during {module}:{function}"
                    ) from None
                others = [s for s in self.seeds if s != lost.sidecar]
                if not others:
                    raise ConnectError(
                        f"{lost.sidecar} went away during {module}:{function}, "
                        "and there is no other seed to ask"
                    ) from None
                log.info("%s went away; asking %s", lost.sidecar, _listing(others))
                if not await self._first_answering(others):
                    raise ConnectError(f"cannot reach {_listing(others)} either") from None

    async def _first_answering(self, candidates: Sequence[str]) -> bool:
        """Talk to the first of ``candidates`` that answers a ping; whether one did."""
        for seed in candidates:
            if await self._node.ping(seed, timeout=5.0):
                self.sidecar = seed
                return True
        return False

    async def _rpc_once(self, module: str, function: str, args: list[Any]) -> Any:
        sidecar = self.sidecar
        group_leader = self._node.whereis("net_kernel")
        try:
            result = await rex_call(
                self._node, sidecar, module, function, args, group_leader, self.timeout
            )
        except CallTimeout:
            raise Timeout(
                f"{sidecar} did not answer {module}:{function} within {self.timeout:g} s"
            ) from None
        except (NodeDown, ConnectionLost) as exc:
            raise _SidecarLost(sidecar) from exc
        except CallExit as exc:
            if exc.reason is _NOCONNECTION:
                raise _SidecarLost(sidecar) from exc
            raise ApiError(exc.reason, f"{module}:{function} failed on {sidecar}: {exc}") from exc
        except PyNodesError as exc:
            raise ApiError(
                exc, f"{module}:{function} could not be asked of {sidecar}: {exc}"
            ) from exc
        match result:
            case (_T.badrpc, _T.nodedown):
                raise _SidecarLost(sidecar)
            case (_T.badrpc, reason):
                raise ApiError(reason, f"{module}:{function} failed on {sidecar}: {reason!r}")
        return result


class _SidecarLost(Exception):
    """The sidecar a request went to went away before it answered."""

    def __init__(self, sidecar: str) -> None:
        super().__init__(sidecar)
        self.sidecar = sidecar


class _T:
    badrpc = Atom("badrpc")
    nodedown = Atom("nodedown")


_NOCONNECTION = Atom("noconnection")


def _listing(nodes: Sequence[str]) -> str:
    return ", ".join(nodes) if len(nodes) <= 3 else f"{', '.join(nodes[:3])} (+{len(nodes) - 3})"


class SyncClient:
    """The synchronous front of an :class:`AsyncClient`, which runs on a private event
    loop thread; subclasses forward each method with :meth:`_run`."""

    def __init__(self, client: AsyncClient) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._async = client
        try:
            self._run(client.connect())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise NotConnected("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def close(self) -> None:
        """Leave the cluster."""
        if not self._loop.is_closed():
            self._run(self._async.close())
            self._stop_loop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sidecar(self) -> str:
        """The sidecar this client talks to now."""
        return self._async.sidecar

    def rpc(self, module: str, function: str, args: list[Any]) -> Any:
        """``rpc:call(Sidecar, Module, Function, Args)``: see :meth:`AsyncClient.rpc`."""
        return self._run(self._async.rpc(module, function, args))
