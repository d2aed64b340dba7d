"""Workers: Python GenServers that the cluster places by name, moves on a drain and restarts
after a pod loss, with swarm's handoff hooks as methods.

The wire protocol they serve is described once, in ``docs/worker-protocol.md``.

Write a worker by subclassing :class:`Worker`::

    from houseparty.workers import Worker
    from py_nodes import Atom, Reply

    class Counter(Worker):
        kind = "counter"                      # the name pods know the class by

        def setup(self, start=0):             # the args given at registration
            self.n = start

        def on_call(self, request, from_):    # as GenServer.handle_call
            match request:
                case b"incr":
                    self.n += 1
                    self.changed()            # answered once the new state is held
                    return Reply(self.n)
                case b"get":
                    return Reply(self.n)
            return Reply((Atom("error"), Atom("unknown_request")))

        def state_term(self):                 # what a handoff carries to the new pod
            return self.n

        def end_handoff(self, state):         # the state its old copy gave
            self.n = state

        def resolve_conflict(self, state):    # a copy from the other side of a netsplit
            self.n = max(self.n, state)

Make the class known to every pod's Python node by import path: the pod setting
``HOUSEPARTY_WORKERS="counter=mypkg.counter:Counter"`` (entries ``[kind=]module:Class``,
separated by commas or spaces), which ``houseparty up --worker mypkg.counter:Counter`` sets
for a local cluster. Then register names from Python (:class:`houseparty.Workers`), or
from iex (erl alike) and call them as ordinary GenServers::

    :hp_registry.register_name("visits", :hp_python, :start_worker, [:counter, "visits", [0]])
    GenServer.call({:via, :hp_registry, "visits"}, "incr")

A worker whose request changed its state says so with :meth:`Worker.changed`: its answer
then waits until the new :meth:`Worker.state_term` is held by its pod's sidecar and by
the name's successors (``HP_REPLICA_COPIES`` of them, default 1), so that a name
restarted after its pod died starts from the state of its last acknowledged change.
When they do not hold it in time, the caller gets ``{error, {unavailable, Reason}}``
instead of the handler's answer. An ``async`` handler that must have a step held before
it goes on (a person's intent before it enters a room) awaits :meth:`Worker.replicate`.
A worker whose state is a map and grows (a log) can say what changed since its last put
with :meth:`Worker.state_changes`, so that a put costs the change and not the whole state.
A change that the worker can put right after a restart from a copy that lacks it (a room
that a person walked into or out of: the person holds where it went) may go unheld, with
``changed(wait=False)``: its answer does not wait, the change goes with the worker's next
put, and a worker restarted from a copy is told so by :meth:`Worker.restored_from_copy`.
A worker can find the workers whose state depends on its own: they name it in
:meth:`Worker.state_links`, and it asks :meth:`Worker.linked_from`.

A worker that crashes (a handler raised, it stopped with a reason other than ``normal``,
``shutdown`` or ``{shutdown, _}``, or it was killed) starts again on the same pod, with
the state of its last acknowledged change and the same name and groups, as a
supervisor restarts a permanent child: at most 3 times in 10 s, after which the name
ends and the sidecar logs an error. Callers by name wait for the restart meanwhile.

A worker that has given its state away (its :meth:`Worker.begin_handoff` answered
:class:`Resume` or :class:`Restart`) answers every call with ``{error, handed_off}`` and
forwards its casts to the live copy, until it stops or the sidecar gives the handoff up
(``{hp_handoff, abandoned}``): callers by name retry meanwhile, and
:meth:`Worker.call_name` does so too.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import re
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from weakref import WeakKeyDictionary

from houseparty._errors import BadArgument, Unavailable, UnknownName, WorkerCrashed
from houseparty._rex import registry_whereis, rex_call
from py_nodes import (
    CallExit,
    CallTimeout,
    GenServer,
    NodeDown,
    NoProc,
    NoReply,
    Process,
    PyNodesError,
    Reply,
    Stop,
)
from py_nodes._terms import Atom, Pid, Reference

__all__ = [
    "NO_ANSWER",
    "HandoffAnswer",
    "Ignore",
    "Restart",
    "Resume",
    "StateChanges",
    "Worker",
    "load_worker_class",
    "parse_worker_specs",
]

log = logging.getLogger("houseparty.workers")


class _T:
    """The atoms of the worker protocol."""

    ok = Atom("ok")
    error = Atom("error")
    swarm = Atom("swarm")
    begin_handoff = Atom("begin_handoff")
    end_handoff = Atom("end_handoff")
    resolve_conflict = Atom("resolve_conflict")
    die = Atom("die")
    hp_handoff = Atom("hp_handoff")
    abandoned = Atom("abandoned")
    resume = Atom("resume")
    restart = Atom("restart")
    ignore = Atom("ignore")
    handed_off = Atom("handed_off")
    reply = Atom("reply")
    absent = Atom("absent")
    crashed = Atom("crashed")
    unavailable = Atom("unavailable")
    shutdown = Atom("shutdown")
    hp_replica = Atom("hp_replica")
    put_many = Atom("put_many")
    stale = Atom("stale")
    set = Atom("set")
    remove = Atom("remove")
    append = Atom("append")
    delete = Atom("delete")
    down = Atom("DOWN")
    gen_call = Atom("$gen_call")
    unexpected_call = Atom("unexpected_call")
    hp_links = Atom("hp_links")


HANDED_OFF = (_T.error, _T.handed_off)
_NO_REPLY = NoReply()
# Each try of a call by name waits this long for the worker's answer.
CALL_TIMEOUT_S = 5.0
# How long a call by name may take through the sidecar: longer than its retry loop
# (hp_python:call_name/3), which answers {unavailable, Reason} when it gives up.
_RIDE_OUT_S = 60.0
# A put waits this long for the sidecar, longer than the sidecar waits for the
# successors (a second for a silent one, then 3 s for the next: hp_replica), so that
# its own answer comes first.
REPLICA_TIMEOUT_S = 5.0
# A change let go unheld (changed(wait=False)) is put at the latest this long after it,
# unless a put of the worker's carries it first: most ride along with the next change.
UNHELD_PUT_S = 0.2
DEFAULT_REPLICA_COPIES = 1
# How long a restored worker's question of which copies link to it may take: the sidecar
# asks every other one, each within 3 s (hp_replica:linked_from/1).
LINKS_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Resume:
    """Answer to :meth:`Worker.begin_handoff`: the new copy starts and takes ``state``."""

    state: Any


@dataclass(frozen=True, slots=True)
class Restart:
    """Answer to :meth:`Worker.begin_handoff`: the new copy starts afresh from its args."""


@dataclass(frozen=True, slots=True)
class Ignore:
    """Answer to :meth:`Worker.begin_handoff`: this copy stays where it is, still serving."""


HandoffAnswer = Resume | Restart | Ignore


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What changed in a worker's state, a map, since its last put (see
    :meth:`Worker.state_changes`), applied in this order by the sidecars holding its copies:

    - ``set``: keys set to these values;
    - ``remove``: keys removed;
    - ``delete``: per key, items dropped from the list under it, wherever they are;
    - ``append``: per key, items added at the end of the list under it (none: the empty
      list) and, when given, how many of its last items it keeps (a bounded log).
    """

    set: Mapping[Any, Any] = field(default_factory=dict)
    remove: Sequence[Any] = ()
    delete: Mapping[Any, Sequence[Any]] = field(default_factory=dict)
    append: Mapping[Any, tuple[Sequence[Any], int | None]] = field(default_factory=dict)

    def term(self) -> list[Any]:
        """The changes as hp_replica takes them (``hp_replica_changes``)."""
        changes: list[Any] = [(_T.set, key, value) for key, value in self.set.items()]
        changes += [(_T.remove, key) for key in self.remove]
        changes += [(_T.delete, key, list(items)) for key, items in self.delete.items()]
        for key, (items, keep) in self.append.items():
            changes.append(
                (_T.append, key, list(items))
                if keep is None
                else (_T.append, key, list(items), keep)
            )
        return changes


# What Worker.answer_in_place gives for a request it cannot answer in place.
NO_ANSWER: Any = object()
_IN_PLACE = (None, None)  # the from_ of a request answered in place: nobody waits on it


# A worker's whole state as a put, asked for when the sidecar could not take its changes.
_WholePut = Callable[[], tuple[Any, ...] | None]
# What a put's owner does with the sidecar's answer: ok, another term, or a PyNodesError.
_Held = Callable[[Any], None]


class _Puts(Process):
    """The state puts of one node's workers: those of one turn of its event loop go to its
    sidecar as one ``{put_many, [{Name, Version, State}]}``, so that concurrent changes
    share one round trip. This process takes the sidecar's answers and hands each put's
    to its owner's callback at once. It sends each batch as a ``gen_server`` call of its
    own and watches the sidecar's ``hp_replica`` with one monitor, not one per batch: a
    put costs the two messages of its request and answer."""

    __slots__ = ("batches", "pending", "sidecar", "unheld", "watch")

    sidecar: Atom
    pending: list[tuple[tuple[Any, ...], _Held, _WholePut]]
    # Per delay, per worker (by id) with a change let go unheld: what puts it then unless a
    # put of its own came first.
    unheld: dict[float, dict[int, Callable[[], None]]]
    # Per batch on its way, by its call's tag: its puts (name, callback, whole state on
    # demand) and its timeout.
    batches: dict[Reference, tuple[list[tuple[Any, _Held, _WholePut]], asyncio.TimerHandle]]
    watch: Reference | None

    def init(self, sidecar: Atom) -> None:
        self.sidecar = sidecar
        self.pending = []
        self.batches = {}
        self.watch = None
        self.unheld = {}

    def put(self, put: tuple[Any, ...], whole: _WholePut, held: _Held) -> None:
        """Have ``put``, ``{Name, Version, State}`` or ``{Name, Version, Base, Changes}``,
        held; ``held`` gets the sidecar's answer (a PyNodesError when it gave none).
        ``whole`` gives the worker's whole state as a new put, for when the sidecar's copy
        cannot take the changes; None when the worker has moved on."""
        if not self.pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self.pending.append((put, held, whole))

    def later(self, owner: object, put: Callable[[], None], within: float = UNHELD_PUT_S) -> None:
        """Have ``put`` called ``within`` seconds from now; a later one for the same
        ``owner`` and delay before then takes its place."""
        due = self.unheld.get(within)
        if due is None:
            due = self.unheld[within] = {}
            asyncio.get_running_loop().call_later(within, self._put_unheld, within)
        due[id(owner)] = put

    def _put_unheld(self, within: float) -> None:
        for put in self.unheld.pop(within, {}).values():
            put()

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        entries = [(put[0], held, whole) for put, held, whole in batch]
        if not self.alive:
            _settle([held for _, held, _ in entries], NodeDown("the node is stopping"))
            return
        replica = (_T.hp_replica, self.sidecar)
        if self.watch is None:
            self.watch = self.monitor(replica)
        tag = self.node.make_ref()
        timeout = asyncio.get_running_loop().call_later(
            REPLICA_TIMEOUT_S, self._answered, tag, CallTimeout("no answer from the sidecar")
        )
        self.batches[tag] = (entries, timeout)
        self.send(
            replica, (_T.gen_call, (self.pid, tag), (_T.put_many, [put for put, _, _ in batch]))
        )

    def _answered(self, tag: Reference, result: Any) -> None:
        entry = self.batches.pop(tag, None)
        if entry is None:
            return
        entries, timeout = entry
        timeout.cancel()
        match result:
            case (_T.stale, list(names)):
                # The sidecar's copies of these names were not at the changes' base: the
                # rest are held, these go again as whole states.
                for name, held, whole in entries:
                    if name in names:
                        self._again(held, whole)
                    else:
                        _settle([held], _T.ok)
            case _:
                _settle([held for _, held, _ in entries], result)

    def _again(self, held: _Held, whole: _WholePut) -> None:
        put = whole()
        if put is None:
            _settle([held], NodeDown("the worker moved on before its state was held"))
            return
        self.put(put, whole, held)

    def handle_message(self, message: Any) -> None:
        match message:
            case (Reference() as tag, result):
                self._answered(tag, result)
            case (_T.down, ref, _, _, reason) if ref == self.watch:
                # hp_replica or its node is gone: no batch on its way gets an answer.
                self.watch = None
                self._fail_all(NodeDown(f"the sidecar's hp_replica went: {reason!r}"))

    def terminate(self, reason: Any) -> None:
        self._fail_all(NodeDown("the node is stopping"))

    def _fail_all(self, error: PyNodesError) -> None:
        for tag in list(self.batches):
            self._answered(tag, error)


def _unheld_answer(result: Any) -> None:
    # Nobody waits on an unheld change: a copy that missed it is put right after a
    # restart from it, and the worker's next put carries it.
    if result is not _T.ok:
        log.debug("an unheld change was not put: %r", result)


class _Links(Process):
    """The questions of one node's workers of which names' copies link to them
    (:meth:`Worker.linked_from`): those of one turn of its event loop go to the sidecar as
    one ``hp_replica:linked_from(Names)``, as a pod's loss restores thousands at once."""

    __slots__ = ("pending", "sidecar")

    sidecar: Atom
    pending: list[tuple[Any, asyncio.Future[list[Any]]]]

    def init(self, sidecar: Atom) -> None:
        self.sidecar = sidecar
        self.pending = []

    def ask(self, name: Any) -> asyncio.Future[list[Any]]:
        """The names whose copies link to ``name``; :class:`~houseparty.Unavailable` when
        a sidecar that may hold one did not answer."""
        if not self.pending:
            run_outside_mailbox(self._ask())  # runs once this turn's questions are in
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.pending.append((name, answer))
        return answer

    async def _ask(self) -> None:
        batch, self.pending = self.pending, []
        names = [name for name, _ in batch]
        try:
            result = await rex_call(
                self, self.sidecar, "hp_replica", "linked_from", [names], self.pid, LINKS_TIMEOUT_S
            )
        except PyNodesError as exc:
            result = (_T.error, (_T.unavailable, str(exc).encode()))
        match result:
            case (_T.ok, list(found)) if len(found) == len(batch):
                for (_, answer), (_, linkers) in zip(batch, found, strict=True):
                    if not answer.done():
                        answer.set_result(list(linkers))
            case _:
                for name, answer in batch:
                    if not answer.done():
                        answer.set_exception(
                            Unavailable(result, f"which copies link to {name!r}: {result!r}")
                        )


def _settle(helds: list[_Held], result: Any) -> None:
    # One worker's callback failing must not keep the answer from the others, nor stop
    # the process that takes every put's answer.
    for held in helds:
        try:
            held(result)
        except Exception:
            log.exception("a state put's answer could not be handled")


@dataclass(frozen=True, slots=True)
class _Bound:
    """The sidecar of a node's pod, whose registry finds workers by name and which holds
    their state copies; how many successors hold a copy too; and the processes that put
    the workers' states and ask which copies link to them."""

    sidecar: Atom
    copies: int
    puts: _Puts
    links: _Links


# One per node, so that no worker carries it.
_sidecars: WeakKeyDictionary[object, _Bound] = WeakKeyDictionary()


def bind_sidecar(node: Any, sidecar: Atom, copies: int = DEFAULT_REPLICA_COPIES) -> None:
    """Workers on ``node`` find other workers through ``sidecar``'s registry, and keep
    their state there and on ``copies`` other sidecars (0: replication is off)."""
    puts = node.process(node.spawn(_Puts, sidecar))
    links = node.process(node.spawn(_Links, sidecar))
    assert isinstance(puts, _Puts) and isinstance(links, _Links)
    _sidecars[node] = _Bound(sidecar, copies, puts, links)


def without_links(state: Any) -> Any:
    """A state from a copy without the links its put added (:meth:`Worker.state_links`):
    the worker's own :meth:`Worker.state_term`."""
    if type(state) is dict and _T.hp_links in state:
        return {key: value for key, value in state.items() if key is not _T.hp_links}
    return state


def _version_after(version: int) -> int:
    # Monotonic per name: above the last one even if the clock went back or the last
    # one came from another pod's clock.
    return max(version + 1, time.time_ns() // 1000)


class Worker(GenServer):
    """Base class of the workers the cluster places: a GenServer serving swarm's handoff.

    Subclasses set their state in :meth:`setup`, answer their own requests in
    :meth:`on_call`, :meth:`on_cast` and :meth:`on_info` (the return values of
    GenServer's ``handle_call``, ``handle_cast`` and ``handle_info``; ``async def`` is
    allowed, to call other workers), and keep their state across moves with
    :meth:`state_term`, :meth:`end_handoff` and :meth:`resolve_conflict`. The class
    attribute ``kind`` names the class for registrations, unless the pod setting
    names it (``kind=module:Class``); without either, its name in lower case does.
    ``self.key`` is the name it is registered under (``bytes`` for a name given from
    Python as ``str``). It calls other workers by name with :meth:`call_name`.
    """

    __slots__ = ("copy_held", "handed_off", "key", "put_base", "replica_due", "version")

    kind: ClassVar[str | None] = None

    key: Any
    handed_off: bool
    replica_due: bool
    version: int
    # The version of this worker's last put, which its sidecar's copy holds unless a put
    # was lost; None before the first and after a state taken whole (a handoff's, a
    # merge's), whose next put carries the whole state.
    put_base: int | None
    # Whether a put of this worker was held since it started: until then a restart would
    # start it afresh from its args, not from a copy, and no change may go unheld.
    copy_held: bool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A worker's own helper named like one of GenServer's private methods would
        # replace it and break message handling in ways far from the cause.
        super().__init_subclass__(**kwargs)
        taken = {
            name
            for name in vars(cls)
            if name.startswith("_")
            and not name.startswith("__")
            and any(name in vars(base) for base in GenServer.__mro__)
        }
        if taken:
            raise TypeError(f"{cls.__name__} redefines GenServer's private {sorted(taken)}")

    def init(self, key: Any, *args: Any) -> None:
        self.key = key
        self.handed_off = False
        self.replica_due = False
        self.version = 0
        self.put_base = None
        self.copy_held = False
        self.setup(*args)

    # -- for subclasses ---------------------------------------------------------------

    def setup(self, *args: Any) -> None:
        """Set the worker's state from the args given at registration; raise to refuse."""

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        """A call that is not swarm's; the default answers ``{error, unexpected_call}`` and
        stops the worker, as a GenServer without the clause would crash (it then starts
        again from its last acknowledged state)."""
        return Stop((_T.unexpected_call, request), reply=(_T.error, _T.unexpected_call))

    def on_cast(self, request: Any) -> Any:
        """A cast that is not swarm's; the default ignores it."""
        return None

    def on_info(self, message: Any) -> Any:
        """Any other message; the default ignores it."""
        return None

    def state_term(self) -> Any:
        """The worker's state as a term: what a handoff carries. The default: None."""
        return None

    def state_changes(self) -> StateChanges | None:
        """What changed in :meth:`state_term`, a map, since this was last asked: asked once
        for each put, so that a put carries the changes rather than the whole state. The
        default, None, sends the whole state each time. Changes made by
        :meth:`end_handoff` and :meth:`resolve_conflict` need not be counted: the put
        after them carries the whole state, as does any put whose base the sidecar's
        copy has lost."""
        return None

    def state_links(self) -> Sequence[Any]:
        """The names of other workers (registry keys) whose state depends on this one's:
        a person's, the room it stands in. Each put carries them, under ``hp_links`` in the
        state, a map, so that one of those restarted from an older copy of its own finds
        this worker with :meth:`linked_from` and can ask it. The default: none, and puts
        carry nothing more."""
        return ()

    async def linked_from(self) -> list[Any]:
        """The names of the workers whose state copies, on any sidecar, link to this one
        (see :meth:`state_links`): those that may depend on a change its copy lacks.
        Raises :class:`~houseparty.Unavailable` when a sidecar that may hold such a copy
        did not answer."""
        return await _sidecars[self.node].links.ask(self.registry_key())

    def begin_handoff(self) -> HandoffAnswer:
        """Asked when the worker's name moves to another pod (a drain, a new pod).

        :class:`Resume` carries a state to the new copy, :class:`Restart` starts it
        afresh, :class:`Ignore` keeps this copy where it is. The default resumes with
        :meth:`state_term`.
        """
        return Resume(self.state_term())

    def end_handoff(self, state: Any) -> None:
        """Take the state the old copy handed over. The default ignores it."""

    def resolve_conflict(self, state: Any) -> None:
        """Merge the state of another copy of this name, met after a netsplit healed.
        The default keeps this copy's state."""

    def answer_in_place(self, request: Any) -> Any:
        """The answer to ``request`` given between two messages, without a message: what
        ``hp_workers`` asks for ``call_many``. The default is :meth:`on_call`'s, when it
        answers at once with a Reply, else :data:`NO_ANSWER`; override it to answer a
        request many workers are asked at once more cheaply."""
        outcome = self.on_call(request, _IN_PLACE)
        if type(outcome) is Reply:
            return outcome.value
        if inspect.iscoroutine(outcome):
            outcome.close()  # not started: it has run none of its code
        return NO_ANSWER

    def registry_key(self) -> Any:
        """The name this worker is registered under in the cluster."""
        return self.key

    @property
    def sidecar(self) -> Atom:
        """This pod's sidecar node."""
        return _sidecars[self.node].sidecar

    @property
    def replicated(self) -> bool:
        """Whether this pod copies its workers' states to others (``HP_REPLICA_COPIES``
        above 0). When it does not, :meth:`state_changes` is never asked, and a worker
        need not keep track of its changes."""
        return _sidecars[self.node].copies > 0

    def changed(self, wait: bool = True, within: float = UNHELD_PUT_S) -> None:
        """Say that the request being handled changed the state: its answer waits until
        the new state is replicated (see the module's docstring). Cheap to call often:
        the state is sent once, after the handler.

        With ``wait=False`` the answer does not wait: the change goes with the worker's
        next put, and at the latest ``within`` seconds later (:data:`UNHELD_PUT_S` by
        default). A copy may then lack it, so a worker restarted from one must be able to
        put it right itself (see :meth:`restored_from_copy`). Until a put of the worker has
        been held since it started, its changes wait all the same: a restart without any
        copy would start it afresh, and not tell it so."""
        if wait or not self.copy_held:
            self.replica_due = True
            return
        bound = _sidecars[self.node]
        if bound.copies:
            bound.puts.later(self, functools.partial(self._put_if_not_since, self.version), within)

    def restored_from_copy(self) -> None:
        """Called after :meth:`end_handoff` when its state came from a copy (a restart
        after a crash or a pod's loss) rather than from the live worker: the changes made
        with ``changed(wait=False)`` since the copy's put may be missing. The default does
        nothing."""

    def _put_if_not_since(self, version: int) -> None:
        # Unless a put since (its version moved on) carried the change, or one is due.
        if self.version == version and self.alive and not self.handed_off and not self.replica_due:
            _sidecars[self.node].puts.put(self._next_put(), self._whole_put, _unheld_answer)

    async def replicate(self) -> None:
        """Have the current :meth:`state_term` held by this pod's sidecar and the name's
        successors now, under a new version. Raises :class:`~houseparty.Unavailable` when
        they do not hold it in time; the state stays here and goes with the next one."""
        self.replica_due = False
        bound = _sidecars[self.node]
        if bound.copies == 0:
            return
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def held(result: Any) -> None:
            if not answer.done():  # cancelled when the worker stopped meanwhile
                answer.set_result(result)

        bound.puts.put(self._next_put(), self._whole_put, held)
        result = await answer
        if isinstance(result, PyNodesError):
            self.replica_due = True
            # The reason goes back to callers as a term: the error's text, not the error.
            raise Unavailable(
                str(result).encode(), f"{self.registry_key()!r}: no replica took its state"
            )
        if result is not _T.ok:
            self.replica_due = True
            raise Unavailable(result, f"{self.registry_key()!r}: {result!r}")
        self.copy_held = True

    def take_version(self, version: int) -> None:
        """The version of the state this worker started from (a restart, a handoff):
        its next changes are numbered above it."""
        self.version = max(self.version, version)

    def _next_put(self) -> tuple[Any, ...]:
        # The changes since the last put when the sidecar's copy should hold that one,
        # else the whole state.
        changes = self.state_changes()
        base, self.version = self.put_base, _version_after(self.version)
        self.put_base = self.version
        # A class without state_links puts nothing more: no links key, not even empty.
        links = None if type(self).state_links is Worker.state_links else list(self.state_links())
        if base is None or changes is None:
            state = self.state_term()
            if links is not None:
                if type(state) is not dict:
                    raise TypeError(
                        f"{type(self).__name__} has state_links: its state must be a map"
                    )
                state = {**state, _T.hp_links: links}
            return (self.registry_key(), self.version, state)
        terms = changes.term()
        if links is not None:
            terms.append((_T.set, _T.hp_links, links))
        return (self.registry_key(), self.version, base, terms)

    def _whole_put(self) -> tuple[Any, ...] | None:
        # Asked by _Puts when the sidecar's copy could not take this worker's changes.
        if self.handed_off or not self.alive:
            return None
        self.put_base = None
        return self._next_put()

    async def _answer_once_replicated(self, outcome: Any) -> Any:
        if inspect.iscoroutine(outcome):
            outcome = await outcome
        if self.replica_due:
            try:
                await self.replicate()
            except Unavailable as exc:
                if type(outcome) is Reply:
                    return Reply((_T.error, (_T.unavailable, exc.reason)))
                log.warning("%s", exc)
        return outcome

    async def call_name(
        self, name: Any, request: Any, timeout: float = CALL_TIMEOUT_S, pid: Pid | None = None
    ) -> Any:
        """Call the worker registered as ``name`` (a term: ``bytes`` for a Python name),
        riding out a handoff or a restart. Raises :class:`~houseparty.UnknownName` when
        nothing is registered under it, :class:`~houseparty.Unavailable` when it does
        not answer in time. ``pid``, the process found under ``name`` a moment ago, is
        tried first instead of a lookup: a copy that has moved on answers ``handed_off``
        and the name is looked up then, so only the name's live copy answers."""
        # The first try goes straight to the worker; the sidecar's retry loop takes over
        # only when that misses, so a call that lands costs no more than a lookup.
        if pid is None:
            pid = await registry_whereis(self, self.sidecar, name)
        if pid is not None:
            try:
                reply = await self.call(pid, request, timeout)
            except (NoProc, CallExit, NodeDown, CallTimeout):
                pass
            else:
                if reply != HANDED_OFF:
                    return reply
        result = await rex_call(
            self,
            self.sidecar,
            "hp_python",
            "call_name",
            [name, request, {Atom("timeout"): int(timeout * 1000)}],
            self.pid,
            _RIDE_OUT_S,
        )
        return unwrap_call_result(name, result)

    # -- swarm's protocol -------------------------------------------------------------

    def handle_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        """Swarm's ``begin_handoff``, the handed-off guard, then :meth:`on_call`, whose
        answer waits for the state's copies when the handler called :meth:`changed`.
        Subclasses override :meth:`on_call`, not this."""
        match request:
            case (_T.swarm, _T.begin_handoff):
                return Reply(self.answer_begin_handoff())
            case _ if self.handed_off:
                # The copy on the new pod is the live one; answer at once, as a caller
                # left waiting here could hold up its own handoff.
                return Reply(HANDED_OFF)
        outcome = self.on_call(request, from_)
        if self.replica_due and type(outcome) is Reply:
            # The answer waits for the copies, the mailbox does not: the next request is
            # served meanwhile, and its own answer waits for a later put (which holds
            # this change too).
            self._reply_once_held(from_, outcome.value)
            return _NO_REPLY
        return self._replicated(outcome)

    def _replicated(self, outcome: Any) -> Any:
        # Acknowledged means replicated: an outcome that changed the state (or may yet,
        # being async) is given only once the state is held elsewhere.
        if self.replica_due or inspect.iscoroutine(outcome):
            return self._answer_once_replicated(outcome)
        return outcome

    def _reply_once_held(self, from_: tuple[Any, Any], value: Any) -> None:
        self.replica_due = False
        bound = _sidecars[self.node]
        if bound.copies == 0:
            self.reply(from_, value)
            return

        def answer(result: Any) -> None:
            if result is _T.ok:
                self.copy_held = True
                self.reply(from_, value)
                return
            self.replica_due = True  # goes with the next put
            if isinstance(result, PyNodesError):
                result = (_T.error, (_T.unavailable, str(result).encode()))
            self.reply(from_, result)

        bound.puts.put(self._next_put(), self._whole_put, answer)

    def answer_begin_handoff(self) -> Any:
        """The term that answers ``{swarm, begin_handoff}``. Once given, the state must
        not change: a handoff that failed on the new pod asks again, and the state given
        then is the same."""
        match self.begin_handoff():
            case Resume(state):
                self.handed_off = True
                return (_T.resume, state)
            case Restart():
                self.handed_off = True
                return _T.restart
            case Ignore():
                return _T.ignore
            case other:
                raise TypeError(f"begin_handoff must answer Resume, Restart or Ignore: {other!r}")

    def handle_cast(self, request: Any) -> Any:
        """Swarm's ``end_handoff`` and ``resolve_conflict``; a copy that has handed off
        forwards the rest to the live copy; else :meth:`on_cast`. Subclasses override
        :meth:`on_cast`, not this."""
        match request:
            case (_T.swarm, _T.end_handoff, state):
                self.end_handoff(without_links(state))
                self.put_base = None
                self.changed()
                return self._replicated(None)
            case (_T.swarm, _T.resolve_conflict, state) if not self.handed_off:
                # The merged state supersedes both sides': its version is above both.
                self.resolve_conflict(without_links(state))
                self.put_base = None
                self.changed()
                return self._replicated(None)
            case _ if self.handed_off:
                # Met this copy just as it moved on (a conflict's state among them): the
                # live copy must have it.
                run_outside_mailbox(self._forward(request))
                return None
        return self._replicated(self.on_cast(request))

    def handle_info(self, message: Any) -> Any:
        """``{hp_handoff, abandoned}`` (serve again) and swarm's ``die``; else
        :meth:`on_info`. Subclasses override :meth:`on_info`, not this."""
        match message:
            case (_T.hp_handoff, _T.abandoned):
                self.handed_off = False
                return None
            case (_T.swarm, _T.die):
                return Stop(_T.shutdown)
        return self._replicated(self.on_info(message))

    async def _forward(self, request: Any) -> None:
        result = await rex_call(
            self,
            self.sidecar,
            "hp_python",
            "cast_name",
            [self.registry_key(), request, {Atom("not_pid"): self.pid}],
            self.pid,
            _RIDE_OUT_S,
        )
        if result is not _T.ok:
            log.warning("no live copy of %r took a cast: %r", self.registry_key(), result)


def unwrap_call_result(name: Any, result: Any) -> Any:
    """The reply in ``hp_python:call_name/3``'s answer, or the error it stands for."""
    match result:
        case (_T.reply, reply):
            return reply
        case _T.absent:
            raise UnknownName(result, f"no worker is registered as {name!r}")
        case (_T.unavailable, reason):
            raise Unavailable(result, f"the worker {name!r} did not answer: {reason!r}")
        case (_T.crashed, reason):
            raise WorkerCrashed(result, f"the worker {name!r} crashed on the request: {reason!r}")
    raise Unavailable(result, f"calling {name!r} failed: {result!r}")


_background: set[asyncio.Task[None]] = set()


def run_outside_mailbox(work: Coroutine[Any, Any, object], delay: float = 0.0) -> None:
    """Run ``work`` (after ``delay`` seconds) apart from the worker's mailbox: it calls
    other workers, which may be calling this one."""

    async def later() -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            await work
        except PyNodesError as exc:
            log.warning("a worker's background work failed: %s", exc)

    task = asyncio.get_running_loop().create_task(later())
    _background.add(task)
    task.add_done_callback(_background.discard)


# -- the pod setting ---------------------------------------------------------------------

_SPEC = re.compile(r"(?:(?P<kind>[a-z][a-z0-9_]*)=)?(?P<module>[\w.]+):(?P<cls>[A-Za-z_]\w*)")


def parse_worker_specs(setting: str) -> list[tuple[str | None, str, str]]:
    """``"[kind=]module:Class ..."`` (commas or spaces between entries) as
    ``(kind or None, module, class)`` triples; :class:`~houseparty.BadArgument` if one is
    not of that form."""
    specs = []
    for entry in re.split(r"[,\s]+", setting.strip()):
        if not entry:
            continue
        m = _SPEC.fullmatch(entry)
        if m is None:
            raise BadArgument(entry, f"a worker is [kind=]module:Class, not {entry!r}")
        specs.append((m["kind"], m["module"], m["cls"]))
    return specs


def load_worker_class(kind: str | None, module: str, cls: str) -> tuple[str, type[Worker]]:
    """Import ``module:cls`` and check it is a :class:`Worker`; its kind is ``kind``, else
    its ``kind`` attribute, else its name in lower case. Raises
    :class:`~houseparty.BadArgument` with the reason when it cannot."""
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise BadArgument(f"{module}:{cls}", f"cannot load worker {module}:{cls}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Worker)):
        raise BadArgument(f"{module}:{cls}", f"{module}:{cls} is not a houseparty Worker class")
    return kind or found.kind or found.__name__.lower(), found


def worker_table(
    builtin: Mapping[str, type[Worker]], setting: str | None
) -> dict[str, type[Worker]]:
    """The kinds a pod's Python node can start: ``builtin`` and those of the setting."""
    table = dict(builtin)
    for kind, module, cls in parse_worker_specs(setting or ""):
        name, found = load_worker_class(kind, module, cls)
        if name in table and table[name] is not found:
            raise BadArgument(name, f"two worker classes for the kind {name!r}")
        table[name] = found
    return table
