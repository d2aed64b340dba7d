"""A node whose ``echo`` GenServer answers every call with its request, for benchmarks.

``python -m py_nodes.echo --name NAME@HOST --cookie COOKIE [--port N]`` runs a node
with a registered GenServer ``echo`` that answers every call with the request itself
(and ignores casts), and an exposed ``echo:identity/1`` for erpc. It stays up until
SIGTERM or SIGINT, then stops cleanly (epmd registration closed). It runs on uvloop,
as the pod node does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

import uvloop

from py_nodes._genserver import GenServer, Reply
from py_nodes._node import Node

__all__ = ["Echo", "main", "run"]


class Echo(GenServer):
    """Replies to any call with the request."""

    __slots__ = ()

    def handle_call(self, request: Any, from_: tuple[Any, Any]) -> Reply:
        return Reply(request)


def _identity(value: Any) -> Any:
    return value


async def run(name: str, cookie: str, port: int = 0) -> None:
    node = Node(name, cookie, port=port)
    await node.start()
    node.spawn(Echo, name="echo")
    node.expose("echo", "identity", _identity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"echo node {node.name} listening on port {node.port}"
        f" ({type(loop).__module__.split('.')[0]} event loop)",
        flush=True,
    )
    await stop.wait()
    await node.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m py_nodes.echo", description=__doc__)
    parser.add_argument("--name", required=True, help="node name, NAME@HOST")
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--port", type=int, default=0, help="distribution port (0: any)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    uvloop.run(run(args.name, args.cookie, args.port))


if __name__ == "__main__":
    main()
