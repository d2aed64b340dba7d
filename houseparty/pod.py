"""The pod's Python node: ``python -m houseparty.pod`` (also ``houseparty pod-node``).

It reads the pod's environment (``HOUSEPARTY_COOKIE``, ``POD_IP``, ``HP_PYTHON_NODE``,
``HP_SIDECAR_NODE``, ``HP_PYTHON_DIST_PORT``, ``HP_NET_TICKTIME``: the sidecars'
``net_ticktime``, which every node that talks with them must share;
``HOUSEPARTY_WORKERS``: the worker classes of your own it can start, as
``[kind=]module:Class`` entries, see :mod:`houseparty.workers`; ``HP_REPLICA_COPIES``:
how many other pods hold each worker's state, default 1, 0 for none;
``HP_PERSON_LOG_MAX``: how many walks a person's log keeps, the newest, default 10,000;
``HP_LOG_LEVEL`` and ``HP_LOG_FORMAT``: see :mod:`houseparty._logsetup`; ``HP_TLS_DIR``:
a folder in cert-manager's layout, ``tls.crt``, ``tls.key``, ``ca.crt``, for TLS
distribution, which the sidecars must run too; unset: plain TCP), starts a hidden node
with ``hp_workers`` registered, and connects to its sidecar. On SIGTERM it asks the
sidecar to drain, so that every worker of this pod moves to the other pods with its
state, and exits after that. ``python -m houseparty.pod --drain`` only asks the sidecar to
drain and exits: the preStop hook's way on a pod with TLS distribution.

When the connection to its sidecar goes (the sidecar crashed), its workers are orphans:
their names restart on other pods from their replicas, and these copies could only
answer with a state nobody can acknowledge any more. It stops them all the moment the
connection goes, before it reads another message, and connects again, so that the
restarted sidecar joins with an empty Python node.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import sys
from dataclasses import asdict, dataclass
from typing import Any

import uvloop

from houseparty._errors import BadArgument
from houseparty._house import DEFAULT_PERSON_LOG_MAX, PersonWorker, RoomWorker
from houseparty._logsetup import NOTICE, configure_logging
from houseparty._rex import rex_call
from houseparty._starter import WorkerStarter
from houseparty.workers import Worker, worker_table
from py_nodes import Node, Process, PyNodesError, TlsConfig, TlsError
from py_nodes._terms import Atom, Reference

__all__ = ["DrainSummary", "PodConfig", "drain_sidecar", "main", "run_pod"]

log = logging.getLogger("houseparty.pod")

DRAIN_TIMEOUT_S = 300.0
# Objects allocated between two collections of the youngest generation (CPython: 700).
# A batch of a thousand workers arriving with their state allocates tens of thousands of
# short-lived objects; collected every 700, its survivors pile into the old generation and
# bring on full collections, which walk every worker of the pod while it waits.
GC_YOUNG_THRESHOLD = 20_000
BUILTIN_WORKERS: dict[str, type[Worker]] = {"room": RoomWorker, "person": PersonWorker}
KILL = Atom("kill")


class _Summary:
    """The keys of the sidecar's drain summary (hp_handoff:summary())."""

    moved = Atom("moved")
    failed = Atom("failed")
    seconds = Atom("seconds")


@dataclass(frozen=True)
class DrainSummary:
    """What a pod's drain did, as its sidecar answers ``hp_registry:drain/0``: names
    moved, names it could not move, seconds."""

    moved: int
    failed: int
    seconds: float

    @classmethod
    def from_term(cls, term: Any) -> DrainSummary | None:
        """The summary in the sidecar's answer; None for any other answer."""
        match term:
            case {
                _Summary.moved: int(moved),
                _Summary.failed: int(failed),
                _Summary.seconds: float(seconds),
            }:
                return cls(moved, failed, seconds)
        return None


@dataclass(frozen=True)
class PodConfig:
    cookie: str
    python_node: str
    sidecar_node: str
    python_port: int
    net_ticktime: int = 60
    workers: str = ""
    replica_copies: int = 1
    listen_ip: str = "127.0.0.1"  # POD_IP: where the Python node listens
    person_log_max: int = DEFAULT_PERSON_LOG_MAX
    tls_dir: str = ""  # HP_TLS_DIR: TLS distribution's certificates; "" for plain TCP

    def tls(self) -> TlsConfig | None:
        """The node's TLS settings, read from ``tls_dir``; None for plain distribution."""
        if not self.tls_dir:
            return None
        try:
            return TlsConfig.from_dir(self.tls_dir)
        except TlsError as exc:
            raise SystemExit(f"HP_TLS_DIR: {exc}") from None

    def worker_classes(self) -> dict[str, type[Worker]]:
        """The worker classes by kind: rooms, people and those of ``HOUSEPARTY_WORKERS``."""
        try:
            return worker_table(BUILTIN_WORKERS, self.workers)
        except BadArgument as exc:
            raise SystemExit(f"HOUSEPARTY_WORKERS: {exc}") from exc

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PodConfig:
        env = dict(os.environ if env is None else env)
        cookie = env.get("HOUSEPARTY_COOKIE")
        if not cookie:
            raise SystemExit("HOUSEPARTY_COOKIE is not set: the pod cannot join its cluster")
        pod_ip = env.get("POD_IP", "127.0.0.1")
        return cls(
            cookie=cookie,
            python_node=env.get("HP_PYTHON_NODE", f"py@{pod_ip}"),
            sidecar_node=env.get("HP_SIDECAR_NODE", f"sidecar@{pod_ip}"),
            python_port=_port(env, "HP_PYTHON_DIST_PORT", "9101"),
            listen_ip=pod_ip,
            net_ticktime=_positive(env, "HP_NET_TICKTIME", "60"),
            workers=env.get("HOUSEPARTY_WORKERS", ""),
            replica_copies=_count(env, "HP_REPLICA_COPIES", "1"),
            person_log_max=_at_least_one(env, "HP_PERSON_LOG_MAX", str(DEFAULT_PERSON_LOG_MAX)),
            tls_dir=env.get("HP_TLS_DIR", ""),
        )


def _port(env: dict[str, str], name: str, default: str) -> int:
    value = env.get(name, default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"{name} must be a TCP port (1-65535), got {value!r}")
    return int(value)


def _positive(env: dict[str, str], name: str, default: str) -> int:
    value = env.get(name, default)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a positive number of seconds, got {value!r}")
    return int(value)


def _count(env: dict[str, str], name: str, default: str) -> int:
    value = env.get(name, default)
    if not value.isdigit():
        raise SystemExit(f"{name} must be a number, 0 or more, got {value!r}")
    return int(value)


def _at_least_one(env: dict[str, str], name: str, default: str) -> int:
    value = env.get(name, default)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a number, 1 or more, got {value!r}")
    return int(value)


async def _connect(node: Node, sidecar: str, stop: asyncio.Event) -> None:
    """Keep trying until the sidecar answers: it may start after us."""
    while not stop.is_set():
        if await node.ping(sidecar, timeout=2.0):
            log.info("connected to sidecar %s", sidecar)
            return
        await asyncio.sleep(0.5)


class _Watched:
    """The atoms of the sidecar watch's monitor."""

    net_kernel = Atom("net_kernel")
    down = Atom("DOWN")


class _SidecarWatch(Process):
    """Stops the pod's workers the moment the connection to its sidecar goes, unless the
    pod is stopping, then sets ``lost`` and exits.

    It monitors the sidecar's ``net_kernel``, which lives as long as the sidecar's node,
    so its ``DOWN`` comes with the lost connection itself, before the node reads another
    message. Stopped any later, a worker could answer a caller that found its pid earlier
    with a change nobody holds, after the name's copy restarted elsewhere had already
    asked everyone where they stand."""

    __slots__ = ("lost", "ref", "sidecar", "stop")

    sidecar: Atom
    stop: asyncio.Event
    lost: asyncio.Event
    ref: Reference

    def init(self, sidecar: Atom, stop: asyncio.Event, lost: asyncio.Event) -> None:
        self.sidecar = sidecar
        self.stop = stop
        self.lost = lost
        self.ref = self.monitor((_Watched.net_kernel, sidecar))

    def handle_message(self, message: Any) -> None:
        match message:
            case (_Watched.down, ref, _, _, _) if ref == self.ref:
                if not self.stop.is_set():
                    stopped = self._stop_workers()
                    log.warning(
                        "lost sidecar %s: stopped its %d orphan workers", self.sidecar, stopped
                    )
                self.lost.set()
                self.exit()

    def _stop_workers(self) -> int:
        node = self.node
        workers = [pid for pid in node.processes() if isinstance(node.process(pid), Worker)]
        for pid in workers:
            node.exit(pid, KILL)
        return len(workers)


async def _serve(node: Node, sidecar: str, stop: asyncio.Event) -> None:
    """Stay connected to the sidecar until ``stop``; stop the workers each time it goes."""
    while not stop.is_set():
        await _connect(node, sidecar, stop)
        lost = asyncio.Event()
        node.spawn(_SidecarWatch, Atom(sidecar), stop, lost)
        waits = [asyncio.ensure_future(event.wait()) for event in (stop, lost)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


async def _drain(node: Node, sidecar: str) -> None:
    group_leader = node.whereis("hp_workers")
    try:
        result = await rex_call(
            node, sidecar, "hp_registry", "drain", [], group_leader, DRAIN_TIMEOUT_S
        )
    except PyNodesError as exc:
        log.error("drain through %s failed: %s", sidecar, exc)
        return
    summary = DrainSummary.from_term(result)
    if summary is None:
        log.warning("drain through %s answered %r", sidecar, result)
        return
    log.log(
        NOTICE,
        "drain through %s done: %d names moved, %d failed, in %.2f s",
        sidecar,
        summary.moved,
        summary.failed,
        summary.seconds,
        extra={"event": "drain", **asdict(summary)},
    )


async def run_pod(config: PodConfig, stop: asyncio.Event) -> None:
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    kinds = config.worker_classes()
    PersonWorker.log_max = config.person_log_max
    node = Node(
        config.python_node,
        cookie=config.cookie,
        port=config.python_port,
        # The pod's own address only: distribution is for the pod's sidecar and peers.
        listen_host=config.listen_ip,
        net_ticktime=config.net_ticktime,
        tls=config.tls(),
    )
    await node.start()
    node.spawn(
        WorkerStarter,
        Atom(config.sidecar_node),
        kinds,
        config.replica_copies,
        name="hp_workers",
    )
    log.info(
        "python node %s up, sidecar %s, workers %s",
        config.python_node,
        config.sidecar_node,
        ", ".join(sorted(kinds)),
    )
    try:
        await _serve(node, config.sidecar_node, stop)
        log.info("stopping: draining this pod's workers through %s", config.sidecar_node)
        await _drain(node, config.sidecar_node)
    finally:
        await node.stop()
    log.info("stopped")


async def drain_sidecar(config: PodConfig) -> bool:
    """Ask this pod's sidecar to drain, as a client node of its own: ``drain.sh`` on a pod
    whose distribution is TLS, which ``erl_call`` cannot speak. True when it drained."""
    host = config.sidecar_node.split("@", 1)[1]
    node = Node(
        f"hpdrain_{secrets.token_hex(4)}@{host}",
        cookie=config.cookie,
        listen_host=None,  # it only calls out
        net_ticktime=config.net_ticktime,
        tls=config.tls(),
    )
    await node.start()
    try:
        if not await node.connect(config.sidecar_node):
            print(f"could not reach {config.sidecar_node}", file=sys.stderr)
            return False
        try:
            result = await rex_call(
                node,
                config.sidecar_node,
                "hp_registry",
                "drain",
                [],
                node.whereis("net_kernel"),
                DRAIN_TIMEOUT_S,
            )
        except PyNodesError as exc:
            print(f"{config.sidecar_node} did not drain: {exc}", file=sys.stderr)
            return False
        summary = DrainSummary.from_term(result)
        if summary is None:
            print(f"{config.sidecar_node} did not drain: {result!r}", file=sys.stderr)
            return False
        drained = summary.failed == 0
        print(
            f"{config.sidecar_node} {'drained' if drained else 'did not drain'}: "
            f"{summary.moved} names moved, {summary.failed} failed, in {summary.seconds:.2f} s",
            file=sys.stdout if drained else sys.stderr,
        )
        return drained
    finally:
        await node.stop()


def main() -> None:
    env = dict(os.environ)
    configure_logging(env)
    # `--name NODE` (as the local cluster runner passes it) overrides HP_PYTHON_NODE, and
    # makes the node visible in `ps`.
    if len(sys.argv) == 3 and sys.argv[1] == "--name":
        env["HP_PYTHON_NODE"] = sys.argv[2]
    config = PodConfig.from_env(env)
    if sys.argv[1:] == ["--drain"]:  # drain.sh, on a pod with TLS distribution
        sys.exit(0 if asyncio.run(drain_sidecar(config)) else 1)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_pod(config, stop)

    uvloop.run(runner())  # a faster event loop for the node's sockets


if __name__ == "__main__":
    main()
