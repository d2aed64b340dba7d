"""``hp_workers``: the process on each pod's Python node that starts, hands over, watches
and counts that node's workers for the sidecars (its requests: ``docs/worker-protocol.md``).

It knows worker classes by kind, from a table given at start: rooms, people and the
classes of the pod's ``HOUSEPARTY_WORKERS`` setting. A kind is asked for as an atom or
a binary. Workers are started only when the pod's own sidecar asks (its registry places
them): a worker started from anywhere else would be one the registry never hears of.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from houseparty.workers import NO_ANSWER, Worker, bind_sidecar, without_links
from py_nodes import GenServer, Reply
from py_nodes._terms import Atom, Pid

__all__ = ["WorkerStarter"]

log = logging.getLogger("houseparty.workers")


class S:
    """The atoms of ``hp_workers``' requests."""

    ok = Atom("ok")
    error = Atom("error")
    start = Atom("start")
    start_many = Atom("start_many")
    begin_handoffs = Atom("begin_handoffs")
    stop_handed_off = Atom("stop_handed_off")
    watch = Atom("watch")
    call_many = Atom("call_many")
    memory = Atom("memory")
    workers = Atom("workers")
    hp_exits = Atom("hp_exits")
    swarm = Atom("swarm")
    die = Atom("die")
    noproc = Atom("noproc")
    normal = Atom("normal")
    shutdown = Atom("shutdown")
    restart = Atom("restart")
    gone = Atom("gone")
    copy = Atom("copy")
    busy = Atom("busy")
    bad_request = Atom("bad_request")
    unknown_kind = Atom("unknown_kind")
    init_failed = Atom("init_failed")
    bad_state = Atom("bad_state")
    not_from_sidecar = Atom("not_from_sidecar")


class WorkerStarter(GenServer):
    """``hp_workers``, started once per pod's Python node with its sidecar and its table
    of worker classes by kind."""

    __slots__ = ("exit_reports", "kinds", "sidecar")

    sidecar: Atom
    kinds: dict[str, type[Worker]]
    exit_reports: dict[Pid, _ExitReport]

    def init(
        self, sidecar: Atom, kinds: Mapping[str, type[Worker]], replica_copies: int = 1
    ) -> None:
        self.sidecar = sidecar
        self.kinds = dict(kinds)
        self.exit_reports = {}
        bind_sidecar(self.node, sidecar, replica_copies)

    def handle_call(self, request: Any, from_: tuple[Any, Any]) -> Reply:
        match request:
            case (S.start | S.start_many, *_) if not self._from_sidecar(from_):
                return Reply(self._refuse(request, from_))
            case (S.start, kind, name, list(args)):
                return Reply(self._start(kind, name, args))
            case (S.start_many, list(specs)) if all(
                type(spec) is tuple and len(spec) in (3, 4, 5, 6) and type(spec[2]) is list
                for spec in specs
            ):
                return Reply([self._start(*spec) for spec in specs])
            case (S.begin_handoffs, list(pids)):
                return Reply([self._begin_handoff(pid) for pid in pids])
            case (S.call_many, list(pids), call):
                return Reply(self._call_many(pids, call))
            case S.memory:
                return Reply(
                    {Atom("rss"): _rss_bytes(), Atom("processes"): len(self.node.processes())}
                )
            case S.workers:
                return Reply(self._count_by_kind())
        return Reply((S.error, (S.bad_request, request)))

    def _from_sidecar(self, from_: tuple[Any, Any]) -> bool:
        # The caller's pid names its node: the registry of this pod's sidecar places the
        # pod's workers, and only a start it asks for is one it will know of.
        caller = from_[0] if type(from_) is tuple and from_ else None
        return type(caller) is Pid and caller.node == self.sidecar

    def _refuse(self, request: Any, from_: tuple[Any, Any]) -> Any:
        caller = from_[0] if type(from_) is tuple and from_ else None
        node = caller.node if type(caller) is Pid else Atom("undefined")
        log.warning(
            "hp_workers refused a %s from %r on %s: workers start only when the registry "
            "of this pod's sidecar %s asks",
            request[0].name,
            caller,
            node.name,
            self.sidecar.name,
        )
        return (S.error, (S.not_from_sidecar, node))

    def _start(self, kind: Any, name: Any, args: list[Any], *handed_over: Any) -> Any:
        # With a handed-over state (and its version, and `copy` when it is a replica's),
        # the new worker takes it as {swarm, end_handoff, State} would, before its first
        # message; the sidecar keeps that state as its owner copy and sends it to the
        # successors itself.
        cls = self._class_of(kind)
        if cls is None:
            return (S.error, (S.unknown_kind, kind))
        try:
            pid = self.node.spawn(cls, name, *args)
        except Exception as exc:  # the worker class's own code: any error refuses the start
            return (S.error, (S.init_failed, _describe(exc)))
        if handed_over:
            worker = self.node.process(pid)
            assert isinstance(worker, Worker)
            try:
                worker.end_handoff(without_links(handed_over[0]))
                if handed_over[2:] == (S.copy,):
                    worker.restored_from_copy()
            except Exception as exc:
                self.node.exit(pid, Atom("kill"))
                return (S.error, (S.bad_state, _describe(exc)))
            if len(handed_over) >= 2 and type(handed_over[1]) is int:
                worker.take_version(handed_over[1])
        return (S.ok, pid)

    def _class_of(self, kind: Any) -> type[Worker] | None:
        if isinstance(kind, Atom):
            return self.kinds.get(kind.name)
        if isinstance(kind, bytes):
            return self.kinds.get(kind.decode(errors="replace"))
        return None

    def handle_info(self, message: Any) -> None:
        match message:
            case (S.stop_handed_off, list(pids)):
                self._stop_handed_off(pids)
            case (S.watch, Pid() as registry, list(pids)):
                self._watch(registry, pids)

    def _stop_handed_off(self, pids: list[Any]) -> None:
        # What {swarm, die} does to each (it stops with reason shutdown), done in place
        # for a worker between two messages, as a drain stops a pod's workers by the
        # hundred thousand; one in the middle of a message gets the message after it.
        process = self.node.process
        for pid in pids:
            worker = process(pid) if type(pid) is Pid else None
            if isinstance(worker, Worker) and worker.alive and not worker.busy:
                worker.exit(S.shutdown)
            else:
                self.send(pid, (S.swarm, S.die))

    def _watch(self, registry: Pid, pids: list[Any]) -> None:
        # The registry's monitor on each worker, without a MONITOR_P, a reference and a
        # watcher entry per worker: the exits go back in batches.
        report = self.exit_reports.get(registry)
        if report is None:
            report = self.exit_reports[registry] = _ExitReport(self, registry)
        node = self.node
        for pid in pids:
            if type(pid) is not Pid or not node.notify_exit(pid, report):
                report(pid, S.noproc)

    def _begin_handoff(self, pid: Any) -> Any:
        # What the worker would answer {swarm, begin_handoff}, asked in place: only when
        # it is between two messages, else "busy" and the sidecar sends the call itself.
        # A worker that is gone says "gone": the sidecar starts the new copy from the last
        # state it acknowledged (its owner copy), else afresh.
        worker = self.node.process(pid) if type(pid) is Pid else None
        if worker is None or not worker.alive:
            return S.gone
        if not isinstance(worker, Worker) or worker.busy:
            return S.busy
        try:
            return worker.answer_begin_handoff()
        except Exception:
            # The worker's own code failed: asked by the sidecar itself, it fails in its
            # own process, which exits and restarts, and this one stays up.
            return S.busy

    def _call_many(self, pids: list[Any], request: Any) -> list[Any]:
        # What each worker would answer the call, asked in place between two of its
        # messages: one call here replaces a distribution round trip per worker. Only a
        # worker that answers at once with a Reply counts; those gone, handed off, in the
        # middle of a message or answering later are left out, as a dead member is left
        # out of a multi_call. The replies come without pids, which would double the
        # answer's size: a reply that must say whose it is says so itself.
        answers = []
        process = self.node.process
        for pid in pids:
            worker = process(pid) if type(pid) is Pid else None
            if (
                not isinstance(worker, Worker)
                or not worker.alive
                or worker.busy
                or worker.handed_off
            ):
                continue
            try:
                answer = worker.answer_in_place(request)
            except Exception:
                continue  # the worker's own code failed; a call of its own would show it
            if answer is not NO_ANSWER:
                answers.append(answer)
        return answers

    def _count_by_kind(self) -> dict[Atom, int]:
        kind_of: dict[type[Any], Atom] = {cls: Atom(kind) for kind, cls in self.kinds.items()}
        counts = dict.fromkeys(kind_of.values(), 0)
        node = self.node
        for pid in node.processes():
            kind = kind_of.get(type(node.process(pid)))
            if kind is not None:
                counts[kind] += 1
        return counts


# The exit reasons of a worker that ended as asked (or was never there); any other is a
# crash, which the registry answers with a restart.
_ENDED = (S.normal, S.shutdown, S.noproc)


class _ExitReport:
    """``Registry ! {hp_exits, [Pid], [{Pid, Reason}]}`` for the watched processes that
    exited during one turn of the event loop, the second list those that crashed."""

    __slots__ = ("crashes", "pending", "registry", "starter")

    def __init__(self, starter: WorkerStarter, registry: Pid) -> None:
        self.starter = starter
        self.registry = registry
        self.pending: list[Any] = []
        self.crashes: list[tuple[Any, Any]] = []

    def __call__(self, pid: Any, reason: Any) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append(pid)
        if reason not in _ENDED and not (type(reason) is tuple and reason[:1] == (S.shutdown,)):
            self.crashes.append((pid, reason))

    def flush(self) -> None:
        pids, self.pending = self.pending, []
        crashes, self.crashes = self.crashes, []
        if self.starter.alive:  # not while the node stops
            self.starter.send(self.registry, (S.hp_exits, pids, crashes))


def _describe(exc: Exception) -> bytes:
    """``<<"Type: message">>``, as a Python process's exit reason says it."""
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__).encode()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
