"""Room and person workers: Python GenServers placed by the sidecar's registry.

Each pod's Python node runs one :class:`WorkerStarter`, registered as ``hp_workers``. The
sidecar's ``hp_python:start_worker(Kind, Name, Args)`` asks it for a new worker with
``{start, Kind, Name, Args}``; the registry names the worker ``{room, Name}`` or
``{person, Name}``. Workers refer to each other by those names, never by pid: a pid
changes when a worker moves to another pod.

Handoff follows swarm's protocol verbatim:

============================== ======= =====================================================
``{swarm, begin_handoff}``      call    ``{resume, State}``: the state travels to the new pod
``{swarm, end_handoff, State}`` cast    the new worker takes the state over
``{swarm, resolve_conflict, S}`` cast   two copies met after a netsplit: merge (see below)
``{swarm, die}``                info    stop
============================== ======= =====================================================

A worker that has given its state away answers every call with ``{error, handed_off}``
(callers retry by name) until it dies, or until the sidecar gives the handoff up with
``{hp_handoff, abandoned}`` (info): then it serves again, and the next attempt asks it
for its state anew.

Conflict merges are deterministic, whichever copy wins:

* a person keeps the union of both logs, ordered by time, and stands in the room of the
  newest entry; that room then lists it (even beyond its ``max``: both sides of the split
  may have let people in, and no walk that was answered ``ok`` is undone);
* a room keeps the larger ``max`` and the union of both people lists, then, once the
  persons have merged too, drops those who say they stand elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any

from houseparty._rex import rex_call
from py_nodes import (
    CallExit,
    CallTimeout,
    GenServer,
    NodeDown,
    NoProc,
    PyNodesError,
    Reply,
    Stop,
)
from py_nodes._terms import Atom, Pid

__all__ = [
    "DEFAULT_MAX",
    "PersonWorker",
    "RoomWorker",
    "WorkerStarter",
    "datetime_term",
    "registry_whereis",
]

DEFAULT_MAX = 10

log = logging.getLogger("houseparty.workers")

OK = Atom("ok")
ERROR = Atom("error")
NIL = Atom("nil")
SWARM = Atom("swarm")
BEGIN_HANDOFF = Atom("begin_handoff")
END_HANDOFF = Atom("end_handoff")
RESOLVE_CONFLICT = Atom("resolve_conflict")
DIE = Atom("die")
HANDOFF_ABANDONED = (Atom("hp_handoff"), Atom("abandoned"))
SETTLE_ROOMS = Atom("settle_rooms")
RESUME = Atom("resume")
ROOM = Atom("room")
PERSON = Atom("person")
ENTER = Atom("enter")
ENTER_MERGED = Atom("enter_merged")
LEAVE = Atom("leave")
WHO_IS_IN = Atom("who_is_in")
DUMP = Atom("dump")
DUMP_ROOMS = Atom("dump_rooms")
SET_MAX = Atom("set_max")
WALK_INTO = Atom("walk_into")
WHERE_IS = Atom("where_is")
ROOM_LOG = Atom("room_log")
MAX = Atom("max")
PEOPLE = Atom("people")
LOG = Atom("log")
START = Atom("start")
START_MANY = Atom("start_many")
BEGIN_HANDOFFS = Atom("begin_handoffs")
STOP_HANDED_OFF = Atom("stop_handed_off")
WATCH = Atom("watch")
EXITED = Atom("hp_exits")
NOPROC = Atom("noproc")
RESTART = Atom("restart")
BUSY = Atom("busy")
DESTINATION_FULL = (ERROR, Atom("destination_full"))
HANDED_OFF = (ERROR, Atom("handed_off"))

# A name may be between pods for a moment (handoff, restart after a node loss).
RETRY_FOR_S = 15.0
RETRY_PAUSE_S = 0.05

_DATETIME = Atom("Elixir.DateTime")
_CALENDAR_ISO = Atom("Elixir.Calendar.ISO")
_STRUCT = Atom("__struct__")
_DT_FIELDS = tuple(
    Atom(n) for n in ("year", "month", "day", "hour", "minute", "second")
)  # fmt: skip


def datetime_term(micros: int) -> dict[Atom, Any]:
    """An Elixir ``%DateTime{}`` in UTC for ``micros`` since the epoch, as iex prints it."""
    dt = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    term: dict[Atom, Any] = {
        _STRUCT: _DATETIME,
        Atom("calendar"): _CALENDAR_ISO,
        Atom("microsecond"): (micros % 1_000_000, 6),
        Atom("std_offset"): 0,
        Atom("utc_offset"): 0,
        Atom("time_zone"): "Etc/UTC",
        Atom("zone_abbr"): "UTC",
    }
    for key, value in zip(_DT_FIELDS, dt.timetuple()[:6], strict=True):
        term[key] = value
    return term


def _now_micros() -> int:
    return time.time_ns() // 1000


async def registry_whereis(server: GenServer, sidecar: Atom, key: tuple[Atom, Atom]) -> Pid | None:
    """``hp_registry:whereis_name(Key)`` on this pod's sidecar, through its rpc server."""
    pid = await rex_call(server, sidecar, "hp_registry", "whereis_name", [key], server.pid, 10.0)
    return pid if isinstance(pid, Pid) else None


async def _call_name(server: GenServer, sidecar: Atom, key: tuple[Atom, Atom], request: Any) -> Any:
    """Call the worker registered as ``key``, riding out a handoff; None if it is not there."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        pid = await registry_whereis(server, sidecar, key)
        if pid is None:
            return None
        try:
            reply = await server.call(pid, request, 5.0)
        except (NoProc, CallExit, NodeDown, CallTimeout):
            if time.monotonic() > deadline:
                raise
        else:
            if reply != HANDED_OFF or time.monotonic() > deadline:
                return reply
        await asyncio.sleep(RETRY_PAUSE_S)


# Persons and rooms of a healed split get their resolve_conflict casts in no set order;
# reconciling after a pause lets both sides merge first.
MERGE_SETTLE_S = 2.0
_merging: set[asyncio.Task[None]] = set()


def _after_merge(work: Coroutine[Any, Any, None], *, settle: bool = True) -> None:
    """Run ``work`` (after the settle pause) outside the worker's mailbox: it calls other
    workers, which may be calling this one."""

    async def later() -> None:
        if settle:
            await asyncio.sleep(MERGE_SETTLE_S)
        try:
            await work
        except PyNodesError as exc:
            log.warning("reconciling after a merge failed: %s", exc)

    task = asyncio.get_running_loop().create_task(later())
    _merging.add(task)
    task.add_done_callback(_merging.discard)


class _HandoffWorker(GenServer):
    """Swarm's handoff for both kinds of worker.

    Once a worker has given its state away (``begin_handoff``), it must not change it
    any more: the copy on the new pod is the live one. Calls that still reach the old
    copy get ``{error, handed_off}`` and retry by name.
    """

    __slots__ = ("handed_off", "sidecar")

    handed_off: bool
    sidecar: Atom  # this pod's sidecar, whose registry finds other workers by name

    def handle_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        if self.handed_off:
            # A handoff that failed on the new pod is tried again later: the state has
            # not changed since it was given, so it is given again.
            if request == (SWARM, BEGIN_HANDOFF):
                return Reply((RESUME, self.state_term()))
            # Answer at once: a caller left waiting here could hold up its own handoff.
            return Reply(HANDED_OFF)
        if request == (SWARM, BEGIN_HANDOFF):
            self.handed_off = True
            return Reply((RESUME, self.state_term()))
        return self.handle_request(request)

    def handle_cast(self, request: Any) -> None:
        if type(request) is tuple and len(request) == 3 and request[0] is SWARM:
            if request[1] is END_HANDOFF:
                self.take_state(request[2])
            elif request[1] is RESOLVE_CONFLICT:
                if self.handed_off:
                    # The conflict met this copy just as it moved on: the live copy
                    # must merge the loser's state, or its walks are lost.
                    _after_merge(self._forward_conflict(request), settle=False)
                else:
                    self.merge_state(request[2])

    async def _forward_conflict(self, request: Any) -> None:
        deadline = time.monotonic() + RETRY_FOR_S
        while time.monotonic() < deadline:
            pid = await registry_whereis(self, self.sidecar, self.registry_key())
            if pid is not None and pid != self.pid:
                self.cast(pid, request)
                return
            await asyncio.sleep(RETRY_PAUSE_S)
        log.warning("no live copy of %s took a conflict's state", self.registry_key())

    def handle_info(self, message: Any) -> Stop | None:
        if message == HANDOFF_ABANDONED:
            self.handed_off = False
            return None
        if message == (SWARM, DIE):
            return Stop(Atom("shutdown"))
        return None

    def handle_request(self, request: Any) -> Any:
        return Stop((Atom("unexpected_call"), request), reply=(ERROR, Atom("unexpected_call")))

    def state_term(self) -> dict[Atom, Any]:
        raise NotImplementedError

    def registry_key(self) -> tuple[Atom, Atom]:
        raise NotImplementedError

    def take_state(self, state: Any) -> None:
        raise NotImplementedError

    def merge_state(self, state: Any) -> None:
        raise NotImplementedError


class RoomWorker(_HandoffWorker):
    """A room: its people (sorted names) and its ``max``.

    The people are a tuple, rebuilt on each change: rooms are small, and most hold
    nobody, which then costs nothing (a list would cost its own object per room).
    """

    __slots__ = ("max", "people", "room")

    room: Atom
    max: int
    people: tuple[Atom, ...]

    def init(self, room: Atom, max_people: int, sidecar: Atom) -> None:
        self.room = room
        self.max = max_people
        self.people = ()
        self.sidecar = sidecar
        self.handed_off = False

    def handle_request(self, request: Any) -> Any:
        if type(request) is tuple and request:
            tag = request[0]
            if tag is ENTER_MERGED:
                if request[1] not in self.people:
                    self._set_people((*self.people, request[1]))
                return Reply(OK)
            if tag is ENTER:
                person = request[1]
                if person in self.people:
                    return Reply(OK)
                if len(self.people) >= self.max:
                    return Reply(DESTINATION_FULL)
                self._set_people((*self.people, person))
                return Reply(OK)
            if tag is LEAVE:
                self._without(request[1])
                return Reply(OK)
            if tag is DUMP:
                return Reply((OK, self.dump()))
            if tag is SET_MAX:
                if len(self.people) > request[1]:
                    return Reply((ERROR, (Atom("too_many_people"), len(self.people))))
                self.max = request[1]
                return Reply(OK)
        elif request is WHO_IS_IN:
            return Reply((OK, list(self.people)))
        return super().handle_request(request)

    def state_term(self) -> dict[Atom, Any]:
        return {MAX: self.max, PEOPLE: list(self.people)}

    def dump(self) -> tuple[Atom, list[Atom]]:
        """The room and its people, as ``{dump}`` answers them."""
        return (self.room, list(self.people))

    def _set_people(self, people: Iterable[Atom]) -> None:
        self.people = tuple(sorted(people, key=str))

    def _without(self, person: Atom) -> None:
        if person in self.people:
            self.people = tuple(p for p in self.people if p != person)

    def registry_key(self) -> tuple[Atom, Atom]:
        return (ROOM, self.room)

    def take_state(self, state: Any) -> None:
        self.max = state[MAX]
        self._set_people(state[PEOPLE])

    def merge_state(self, state: Any) -> None:
        self.max = max(self.max, state[MAX])
        self._set_people(set(self.people) | set(state[PEOPLE]))
        _after_merge(self._keep_only_those_here())

    async def _keep_only_those_here(self) -> None:
        # Each side of a split may have moved people on: a person belongs here only if,
        # once persons have merged too, it says it stands here. A person's own merge may
        # land after the first pass, hence a second one.
        for pause in (0.0, 2 * MERGE_SETTLE_S):
            await asyncio.sleep(pause)
            for person in self.people:
                try:
                    where = await _call_name(self, self.sidecar, (PERSON, person), WHERE_IS)
                except PyNodesError as exc:
                    log.warning("%s: cannot ask %s where it stands: %s", self.room, person, exc)
                    continue
                if isinstance(where, Atom) and where is not self.room:
                    self._without(person)


class PersonWorker(_HandoffWorker):
    """A person: the room they stand in and their log of ``(micros, room)``, oldest first.

    Until the first walk the log is the empty tuple, which costs no object per person.
    """

    __slots__ = ("log", "person", "room")

    person: Atom
    room: Atom | None
    log: list[tuple[int, Atom]] | tuple[()]

    def init(self, person: Atom, sidecar: Atom) -> None:
        self.person = person
        self.sidecar = sidecar
        self.handed_off = False
        self.room = None
        self.log = ()

    def handle_request(self, request: Any) -> Any:
        if type(request) is tuple and len(request) == 2 and request[0] is WALK_INTO:
            return self._walk_into(request[1])
        if request is WHERE_IS:
            return Reply(self.room if self.room is not None else NIL)
        if request is ROOM_LOG:
            return Reply([(datetime_term(us), room) for us, room in reversed(self.log)])
        return super().handle_request(request)

    async def _walk_into(self, room: Atom) -> Reply:
        # The person runs its own move: enter the new room, leave the old one, log it.
        # Being async, the worker takes its next message only once the move is done.
        if room is self.room:
            return Reply(OK)
        entered = await _call_name(self, self.sidecar, (ROOM, room), (ENTER, self.person))
        if entered is None:
            return Reply((ERROR, (Atom("unknown_room"), room)))
        if entered is not OK:
            return Reply(entered)
        if self.room is not None:
            await _call_name(self, self.sidecar, (ROOM, self.room), (LEAVE, self.person))
        self.room = room
        if isinstance(self.log, list):
            self.log.append((_now_micros(), room))
        else:
            self.log = [(_now_micros(), room)]
        return Reply(OK)

    def state_term(self) -> dict[Atom, Any]:
        return {LOG: list(self.log)}

    def registry_key(self) -> tuple[Atom, Atom]:
        return (PERSON, self.person)

    def take_state(self, state: Any) -> None:
        # A walk may reach the new copy before its state does: keep both.
        self._join_log((int(us), room) for us, room in state[LOG])

    def merge_state(self, state: Any) -> None:
        theirs = sorted((int(us), room) for us, room in state[LOG])
        stood_in = {room for room in (self.room, theirs[-1][1] if theirs else None) if room}
        self._join_log(theirs)
        _after_merge(self._settle_later(stood_in - {self.room}))

    def _join_log(self, entries: Iterable[tuple[int, Atom]]) -> None:
        # The union of both logs in time order; the person stands in the newest room.
        self.log = sorted(set(self.log) | set(entries), key=lambda e: (e[0], str(e[1])))
        self.room = self.log[-1][1] if self.log else None

    async def _settle_later(self, stale: set[Atom]) -> None:
        # Settled in the mailbox, between walks: a walk running alongside could leave the
        # room this settling is about to list the person in.
        self.send(self.pid, (SETTLE_ROOMS, stale))

    def handle_info(self, message: Any) -> Any:
        if type(message) is tuple and len(message) == 2 and message[0] is SETTLE_ROOMS:
            # A copy that has moved on leaves the rooms to the live copy.
            return None if self.handed_off else self._settle_rooms(message[1])
        return super().handle_info(message)

    async def _settle_rooms(self, stale: set[Atom]) -> None:
        # The merged log says where this person stands. The rooms either copy stood in
        # may still list it; that room's winning copy may not have seen the walk, and
        # lists the person even if that puts it over its max.
        for room in stale:
            if self.room is not room:
                await _call_name(self, self.sidecar, (ROOM, room), (LEAVE, self.person))
        if self.room is not None:
            await _call_name(self, self.sidecar, (ROOM, self.room), (ENTER_MERGED, self.person))


class WorkerStarter(GenServer):
    """``hp_workers``: the sidecar's ``hp_python`` asks it, for the workers of this node:

    ==================================== ============================================
    ``{start, Kind, Name, Args}``         ``{ok, Pid}`` or ``{error, Reason}``
    ``{start_many, [Spec]}``              one of those per worker, in order; a spec is
                                          ``{Kind, Name, Args}``, or with a 4th element
                                          the state a handoff gave (``end_handoff``)
    ``{begin_handoffs, [Pid]}``           per pid: its ``begin_handoff`` reply, or ``busy``
    ``{stop_handed_off, [Pid]}`` (send)   ``{swarm, die}`` to each
    ``{watch, Registry, [Pid]}`` (send)   ``Registry ! {hp_exits, [Pid]}`` once they exit,
                                          many in one message; at once for those gone
    ``{dump_rooms, [Pid]}``               ``[{Room, [Person]}]`` of those that are rooms
    ``memory``                            RSS and process count of this node
    ==================================== ============================================
    """

    __slots__ = ("exit_reports", "sidecar")

    sidecar: Atom
    exit_reports: dict[Pid, _ExitReport]

    def init(self, sidecar: Atom) -> None:
        self.sidecar = sidecar
        self.exit_reports = {}

    def handle_call(self, request: Any, from_: tuple[Any, Any]) -> Reply:
        if type(request) is tuple and len(request) == 2 and request[0] is DUMP_ROOMS:
            return Reply(self._dump_rooms(request[1]))
        if type(request) is tuple and len(request) == 4 and request[0] is START:
            return Reply(self._start(*request[1:]))
        if type(request) is tuple and len(request) == 2 and request[0] is START_MANY:
            specs = request[1]
            if type(specs) is not list or not all(
                type(spec) is tuple and len(spec) in (3, 4) for spec in specs
            ):
                return Reply((ERROR, (Atom("bad_request"), request)))
            return Reply([self._start(*spec) for spec in specs])
        if type(request) is tuple and len(request) == 2 and request[0] is BEGIN_HANDOFFS:
            if type(request[1]) is not list:
                return Reply((ERROR, (Atom("bad_request"), request)))
            return Reply([self._begin_handoff(pid) for pid in request[1]])
        if request is Atom("memory"):
            return Reply({Atom("rss"): _rss_bytes(), Atom("processes"): len(self.node.processes())})
        return Reply((ERROR, (Atom("bad_request"), request)))

    def _start(self, kind: Any, name: Any, args: Any, *handed_over: Any) -> Any:
        # With a handed-over state, the new worker takes it as {swarm, end_handoff, State}
        # would, before its first message.
        if not isinstance(name, Atom):
            return (ERROR, (Atom("bad_name"), name))
        if kind is ROOM:
            max_people = args[0] if args else DEFAULT_MAX
            if type(max_people) is not int or max_people < 1:
                return (ERROR, (Atom("bad_max"), max_people))
            pid = self.node.spawn(RoomWorker, name, max_people, self.sidecar)
        elif kind is PERSON:
            pid = self.node.spawn(PersonWorker, name, self.sidecar)
        else:
            return (ERROR, (Atom("unknown_kind"), kind))
        if handed_over:
            worker = self.node.process(pid)
            assert isinstance(worker, _HandoffWorker)
            try:
                worker.take_state(handed_over[0])
            except (KeyError, TypeError, ValueError) as exc:
                self.node.exit(pid, Atom("kill"))
                return (ERROR, (Atom("bad_state"), str(exc).encode()))
        return (OK, pid)

    def handle_info(self, message: Any) -> None:
        if type(message) is tuple and len(message) == 2 and message[0] is STOP_HANDED_OFF:
            for pid in message[1] if type(message[1]) is list else ():
                self.send(pid, (SWARM, DIE))
        elif (
            type(message) is tuple and len(message) == 3 and message[0] is WATCH
            and type(message[1]) is Pid and type(message[2]) is list
        ):  # fmt: skip
            self._watch(message[1], message[2])

    def _watch(self, registry: Pid, pids: list[Any]) -> None:
        # The registry's monitor on each worker, without a MONITOR_P, a reference and a
        # watcher entry per worker: the exits go back in batches.
        report = self.exit_reports.get(registry)
        if report is None:
            report = self.exit_reports[registry] = _ExitReport(self, registry)
        node = self.node
        for pid in pids:
            if type(pid) is not Pid or not node.notify_exit(pid, report):
                report(pid, NOPROC)

    def _begin_handoff(self, pid: Any) -> Any:
        # What the worker would answer {swarm, begin_handoff}, asked in place: only when
        # it is between two messages, else "busy" and the sidecar sends the call itself.
        # A worker that is gone is restarted, as when the call finds no process.
        worker = self.node.process(pid) if type(pid) is Pid else None
        if worker is None or not worker.alive:
            return RESTART
        if not isinstance(worker, _HandoffWorker) or worker.busy:
            return BUSY
        return worker.handle_call((SWARM, BEGIN_HANDOFF), (None, None)).value

    def _dump_rooms(self, pids: Any) -> list[tuple[Atom, list[Atom]]]:
        # What each room would answer {dump}, read in one pass: a room's handlers never
        # wait, so between two messages its fields are its state, and one call here
        # replaces a distribution round trip per room. Rooms gone or handed off are left
        # out, as a dead member is left out of a multi_call.
        if not isinstance(pids, list):
            return []
        node = self.node
        rooms = []
        for pid in pids:
            room = node.process(pid) if type(pid) is Pid else None
            if type(room) is RoomWorker and room.alive and not room.handed_off:
                rooms.append(room.dump())
        return rooms


class _ExitReport:
    """``Registry ! {hp_exits, [Pid]}`` for the watched processes that exited during one
    turn of the event loop."""

    __slots__ = ("pending", "registry", "starter")

    def __init__(self, starter: WorkerStarter, registry: Pid) -> None:
        self.starter = starter
        self.registry = registry
        self.pending: list[Any] = []

    def __call__(self, pid: Any, reason: Any) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append(pid)

    def flush(self) -> None:
        pids, self.pending = self.pending, []
        if self.starter.alive:  # not while the node stops
            self.starter.send(self.registry, (EXITED, pids))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
