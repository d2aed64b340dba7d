"""The connection every Python client of the cluster stands on: a hidden node of its own,
``rpc:call`` into one sidecar, and a synchronous front running the asyncio client on a
private event loop thread."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from houseparty._errors import ConnectError
from houseparty._rex import rex_call
from py_nodes import Node, PyNodesError
from py_nodes._terms import Atom

__all__ = ["CALL_TIMEOUT_S", "AsyncClient", "SyncClient"]

T = TypeVar("T")

_BADRPC = Atom("badrpc")
CALL_TIMEOUT_S = 60.0


class AsyncClient:
    """An asyncio client of the cluster. ``node`` is any sidecar of the cluster."""

    def __init__(
        self,
        node: str,
        cookie: str,
        *,
        timeout: float = CALL_TIMEOUT_S,
        client_host: str | None = None,
    ) -> None:
        """``client_host`` names and binds this client's node on that address, for a
        client whose address differs from the sidecar's host (another network
        namespace, another machine); by default the client takes the sidecar's host
        and listens on every interface."""
        self.sidecar = node
        self.timeout = timeout
        if client_host is None:
            host = node.split("@", 1)[1] if "@" in node else "127.0.0.1"
            self._node = Node(f"hpclient_{secrets.token_hex(4)}@{host}", cookie=cookie, port=0)
        else:
            self._node = Node(
                f"hpclient_{secrets.token_hex(4)}@{client_host}",
                cookie=cookie,
                port=0,
                listen_host=client_host,
            )
        self._started = False

    async def connect(self) -> None:
        """Start this client's node and reach the sidecar; :class:`ConnectError` if not."""
        if not self._started:
            await self._node.start()
            self._started = True
        try:
            reachable = await self._node.ping(self.sidecar, timeout=5.0)
        except PyNodesError as exc:
            reachable = False
            detail = f": {exc}"
        else:
            detail = ""
        if not reachable:
            await self.close()
            raise ConnectError(
                f"cannot reach {self.sidecar} (is the cluster running, is the cookie right?)"
                + detail
            )

    async def close(self) -> None:
        """Leave the cluster."""
        if self._started:
            self._started = False
            await self._node.stop()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def rpc(self, module: str, function: str, args: list[Any]) -> Any:
        """``rpc:call(Sidecar, Module, Function, Args)``; raises on ``badrpc``."""
        group_leader = self._node.whereis("net_kernel")
        try:
            result = await rex_call(
                self._node, self.sidecar, module, function, args, group_leader, self.timeout
            )
        except PyNodesError as exc:
            raise ConnectError(f"{self.sidecar} did not answer: {exc}") from exc
        if type(result) is tuple and len(result) == 2 and result[0] is _BADRPC:
            raise ConnectError(f"{module}:{function} failed on {self.sidecar}: {result[1]!r}")
        return result


class SyncClient:
    """The synchronous front of an :class:`AsyncClient`, which runs on a private event
    loop thread; subclasses forward each method with :meth:`_run`."""

    def __init__(self, client: AsyncClient) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._async = client
        self.sidecar = client.sidecar
        try:
            self._run(client.connect())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
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

    def rpc(self, module: str, function: str, args: list[Any]) -> Any:
        """``rpc:call(Sidecar, Module, Function, Args)``; raises on ``badrpc``."""
        return self._run(self._async.rpc(module, function, args))
