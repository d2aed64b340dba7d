"""Rooms and people: the two kinds of worker HouseParty itself places in the cluster.

Both are ordinary :class:`~houseparty.workers.Worker` classes, registered as
``{room, Name}`` and ``{person, Name}`` (``Name`` an atom); their requests are listed in
``docs/worker-protocol.md``. Workers refer to each other by those names, never by pid: a
pid changes when a worker moves to another pod.

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
import operator
import time
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, ClassVar

from houseparty._errors import ApiError, Unavailable, UnknownName
from houseparty.workers import NO_ANSWER, StateChanges, Worker, run_outside_mailbox
from py_nodes import NoReply, PyNodesError, Reply
from py_nodes._terms import Atom, Pid

__all__ = ["DEFAULT_MAX", "DEFAULT_PERSON_LOG_MAX", "PersonWorker", "RoomWorker", "datetime_term"]

DEFAULT_MAX = 10
# A person's log keeps this many walks, the newest (the pod's HP_PERSON_LOG_MAX).
DEFAULT_PERSON_LOG_MAX = 10_000

log = logging.getLogger("houseparty.house")


class H:
    """The atoms of rooms' and people's requests."""

    ok = Atom("ok")
    error = Atom("error")
    nil = Atom("nil")
    room = Atom("room")
    person = Atom("person")
    enter = Atom("enter")
    enter_merged = Atom("enter_merged")
    walk_under_way = Atom("walk_under_way")
    leave = Atom("leave")
    walked_out = Atom("walked_out")
    walked_in = Atom("walked_in")
    unknown_request = Atom("unknown_request")
    who_is_in = Atom("who_is_in")
    dump = Atom("dump")
    set_max = Atom("set_max")
    walk_into = Atom("walk_into")
    where_is = Atom("where_is")
    room_log = Atom("room_log")
    room_log_micros = Atom("room_log_micros")
    settle_rooms = Atom("settle_rooms")
    finish_walk = Atom("finish_walk")
    intent = Atom("intent")
    max = Atom("max")
    people = Atom("people")
    log = Atom("log")
    unknown_room = Atom("unknown_room")
    unavailable = Atom("unavailable")


DESTINATION_FULL = (H.error, Atom("destination_full"))
# Answers that never change, made once: a Reply is immutable.
REPLY_OK = Reply(H.ok)
REPLY_FULL = Reply(DESTINATION_FULL)
# A request a room or person does not know is answered, not a crash: any erl or iex user
# can send one, and the worker's state is the cluster's.
REPLY_UNKNOWN = Reply((H.error, H.unknown_request))
DUMP = (H.dump,)

# The fields every DateTime in UTC shares; datetime_term adds the date and time.
_DT_CONSTANT: dict[Atom, Any] = {
    Atom("__struct__"): Atom("Elixir.DateTime"),
    Atom("calendar"): Atom("Elixir.Calendar.ISO"),
    Atom("std_offset"): 0,
    Atom("utc_offset"): 0,
    Atom("time_zone"): "Etc/UTC",
    Atom("zone_abbr"): "UTC",
}
_YEAR, _MONTH, _DAY, _HOUR, _MINUTE, _SECOND, _MICROSECOND = (
    Atom(n) for n in ("year", "month", "day", "hour", "minute", "second", "microsecond")
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# (year, month, day) per day since the epoch: a log's entries share few days. Emptied when
# full, so that no input grows it without bound.
_DATES: dict[int, tuple[int, int, int]] = {}
_DATES_MAX = 4096


def datetime_term(micros: int) -> dict[Atom, Any]:
    """An Elixir ``%DateTime{}`` in UTC for ``micros`` since the epoch, as iex prints it.

    In integers throughout (a float of the seconds could round into the next second), and
    without a ``datetime`` per call: a room log read builds one per entry."""
    seconds, micro = divmod(micros, 1_000_000)
    days, second = divmod(seconds, 86_400)
    ymd = _DATES.get(days)
    if ymd is None:
        day = date.fromordinal(_EPOCH_ORDINAL + days)
        if len(_DATES) >= _DATES_MAX:
            _DATES.clear()
        ymd = _DATES[days] = (day.year, day.month, day.day)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    term = _DT_CONSTANT.copy()
    term[_YEAR], term[_MONTH], term[_DAY] = ymd
    term[_HOUR] = hour
    term[_MINUTE] = minute
    term[_SECOND] = second
    term[_MICROSECOND] = (micro, 6)
    return term


# An atom's text: its sort key, the order the BEAM sorts atoms in.
_atom_name = operator.attrgetter("name")


def _now_micros() -> int:
    return time.time_ns() // 1000


def _is_unavailable(answer: Any) -> bool:
    return (
        type(answer) is tuple
        and len(answer) == 2
        and answer[0] is H.error
        and type(answer[1]) is tuple
        and answer[1][:1] == (H.unavailable,)
    )


# Persons and rooms of a healed split get their resolve_conflict casts in no set order;
# reconciling after a pause lets both sides merge first.
MERGE_SETTLE_S = 2.0
# A room restored from a copy asks again those who could not answer at first (their own
# pod may be restarting them), for about a minute.
RESTORE_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# How long its first question waits for each person, the calls it holds waiting with it.
RESTORE_FIRST_PASS_S = 2.0
# A walk done, the person's copies hold its intent, not the walk, until its next put: one
# comes this long after, unless the next walk's came first. A person restored from a copy
# that still holds an intent walks again (the same walk, to the same end), which a pod's
# loss would otherwise ask of nearly every person it held.
WALKED_PUT_S = 2.0

# Per room (by id) that asks people where they stand (after a merge, or restored from a
# copy), one set per check under way: the people who came or went meanwhile. An answer
# may predate the walk that follows it, which the room handles before the answer reaches
# the check: the room's own handling stands. Kept here rather than on each room: most
# rooms never check.
_MOVED_WHILE_ASKING: dict[int, list[set[Atom]]] = {}
# Per room (by id) restored from a copy whose first round of questions is under way: the
# calls that wait for it, taken again once it is done. Its list is what a user reads and
# its max what it refuses by, and either may miss people who came or count people who
# have gone.
_RESTORING: dict[int, list[tuple[Any, tuple[Any, Any]]]] = {}
# Per room (by id) restored from a copy: the people whose copies link to it, not listed,
# who have not said yet where they stand. Each holds a seat: one who stands here is taken
# in, and the room must not have let others fill its place meanwhile.
_SEATS: dict[int, set[Atom]] = {}
# Per room (by id) restored from a copy: the walks in of seat holders that its list, which
# may still count people who have gone, does not fit yet. Taken again after each round.
_SEAT_WAITS: dict[int, list[tuple[Any, tuple[Any, Any]]]] = {}
# Where a person registered nowhere stands, to a room that asks: neither let go nor
# taken in. Not an atom, which a room may be named.
_NOWHERE: Any = object()


class RoomWorker(Worker):
    """A room (``self.key``): its people and its ``max``.

    The people are a dict used as an ordered set, so that entering and leaving cost the
    same however many people the room holds; they are sorted only when listed. A room
    that holds nobody keeps the empty tuple instead, which costs no object: most rooms
    are empty, and a dict per room would cost its own object each.

    A person's walk comes in with ``walked_in`` and goes out with ``walked_out``, neither
    held before it answers: the person's own copy, held before the walk goes on, says
    where it went and links to the room it walks into. A room restored from a copy that
    missed either asks the people it lists and those whose copies link to it.
    """

    __slots__ = ("max", "people", "touched")

    kind = "room"

    key: Atom
    max: int
    people: dict[Atom, None] | tuple[()]
    # The people who entered or left since the last put (the empty tuple: none).
    touched: list[Atom] | tuple[()]

    def setup(self, max_people: int = DEFAULT_MAX) -> None:
        self.max = max_people
        self.people = ()
        self.touched = ()

    def registry_key(self) -> tuple[Atom, Atom]:
        return (H.room, self.key)

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        # The requests of walks and dumps first: they come by the thousand.
        match request:
            case (H.walked_in | H.enter as how, person):
                if _MOVED_WHILE_ASKING:
                    self._moved_while_asking(person)
                if person in self.people:
                    return REPLY_OK
                if self._full_for(person):
                    return self._seat_or_refusal(person, request, from_)
                self._add(person)
                # A walk's person links here in its own copy, held before it came: a
                # room restored from a copy that missed this finds it. A walk that fills
                # the room is held all the same (see _full_for).
                self.changed(wait=how is H.enter or len(self.people) >= self.max)
                return REPLY_OK
            case (H.dump,):
                return Reply((H.ok, (self.key, self._listed())))
            case (H.walked_out | H.leave as how, person):
                if _MOVED_WHILE_ASKING:
                    self._moved_while_asking(person)
                # The person holds the room it went to, which a room restarted from a
                # copy that still lists it asks: a walk's way out need not be held first,
                # unless it leaves a full room (see _full_for).
                self._without(person, wait=how is H.leave or len(self.people) >= self.max)
                return REPLY_OK
            case H.who_is_in:
                return self._after_restore(request, from_, Reply((H.ok, self._listed())))
            case (H.set_max, max_people):
                if len(self.people) > max_people:
                    return Reply((H.error, (Atom("too_many_people"), len(self.people))))
                self.max = max_people
                self.changed()
                return REPLY_OK
            case (H.enter_merged, person):
                if _MOVED_WHILE_ASKING:
                    self._moved_while_asking(person)
                if person not in self.people:
                    self._add(person)
                    self.changed()
                return REPLY_OK
        return REPLY_UNKNOWN

    def answer_in_place(self, request: Any) -> Any:
        if _RESTORING and id(self) in _RESTORING:
            return NO_ANSWER  # its answers wait for the check
        # A dump asks every room at once: answered without a Reply each.
        if request == DUMP:
            return (H.ok, (self.key, self._listed()))
        return super().answer_in_place(request)

    def state_term(self) -> dict[Atom, Any]:
        # In the order they entered: a copy or a new owner takes them in any order.
        return {H.max: self.max, H.people: list(self.people)}

    def state_changes(self) -> StateChanges:
        # Those who came or went since the last put: dropped from the copy's list, then
        # those of them who are here added again, whatever they did in between.
        touched, self.touched = self.touched, ()
        here = [person for person in dict.fromkeys(touched) if person in self.people]
        return StateChanges(
            set={H.max: self.max}, delete={H.people: touched}, append={H.people: (here, None)}
        )

    def _listed(self) -> list[Atom]:
        return sorted(self.people, key=_atom_name)

    def _touch(self, person: Atom) -> None:
        if isinstance(self.touched, list):
            self.touched.append(person)
        elif self.replicated:  # else nobody asks for the changes
            self.touched = [person]

    def _add(self, person: Atom) -> None:
        self._touch(person)
        if isinstance(self.people, dict):
            self.people[person] = None
        else:
            self.people = {person: None}
        if _SEATS and id(self) in _SEATS:
            _SEATS[id(self)].discard(person)

    def _set_people(self, people: Iterable[Atom]) -> None:
        self.people = dict.fromkeys(people) or ()

    def _without(self, person: Atom, wait: bool = True) -> None:
        if isinstance(self.people, dict) and person in self.people:
            self._touch(person)
            del self.people[person]
            if not self.people:
                self.people = ()
            self.changed(wait)

    def end_handoff(self, state: Any) -> None:
        self.max = state[H.max]
        self._set_people(state[H.people])

    def resolve_conflict(self, state: Any) -> None:
        self.max = max(self.max, state[H.max])
        self._set_people([*self.people, *state[H.people]])
        run_outside_mailbox(self._reconcile((0.0, 2 * MERGE_SETTLE_S)), delay=MERGE_SETTLE_S)

    def restored_from_copy(self) -> None:
        # The copy may miss walks in and out (neither is held before it answers): the
        # people it lists and those whose copies link here are asked where they stand.
        _RESTORING[id(self)] = []
        run_outside_mailbox(self._restore())

    def _after_restore(self, request: Any, from_: tuple[Any, Any], answer: Reply) -> Any:
        parked = _RESTORING.get(id(self)) if _RESTORING else None
        if parked is None:
            return answer
        parked.append((request, from_))
        return NoReply()

    def _seat_or_refusal(self, person: Atom, request: Any, from_: tuple[Any, Any]) -> Any:
        # A seat holder's walk in waits until the list is settled: refused then, its walk
        # may have been an acknowledged one lost.
        if _SEATS and person in _SEATS.get(id(self), ()):
            _SEAT_WAITS.setdefault(id(self), []).append((request, from_))
            return NoReply()
        return self._after_restore(request, from_, REPLY_FULL)

    def _seat_waits_again(self) -> None:
        for request, from_ in _SEAT_WAITS.pop(id(self), ()):
            self.call_again(request, from_)

    def _full_for(self, person: Atom) -> bool:
        # A restored room keeps a seat for each person whose copy links to it and who has
        # not said where it stands, which nobody else takes. That person, whose walk in
        # may have been acknowledged, gets in while the room lists fewer than its max,
        # those who have gone and not said so yet included. Its walk in was not held only
        # if the room stayed below its max (a walk that fills a room, or leaves a full
        # one, is held): a copy is exact whenever its room was full, so the count is
        # never short, and a person whose walk a full room refused is not let in.
        seats = _SEATS.get(id(self)) if _SEATS else None
        if not seats or person in seats:
            return len(self.people) >= self.max
        return len(self.people) + len(seats) >= self.max

    async def _restore(self) -> None:
        # The calls it holds are taken again after the first round, whoever answered: a
        # person that cannot answer may be walking into this very room, its walk waiting
        # on an enter held here. Those are asked again until they answer, and the links
        # read again until they can be.
        seats = _SEATS[id(self)] = set()
        try:
            try:
                unanswered, linked = await self._reconcile(
                    (0.0,), within=RESTORE_FIRST_PASS_S, seats=seats, read_links=True
                )
            finally:
                for request, from_ in _RESTORING.pop(id(self), ()):
                    self.call_again(request, from_)
            if unanswered or not linked:
                unanswered, _ = await self._reconcile(
                    RESTORE_PAUSES, unanswered, seats=seats, read_links=not linked
                )
            if seats:
                log.warning("%s: %s never said where they stand", self.key, sorted(seats))
                seats.clear()
            self._seat_waits_again()
            # The old copy lives on until its Python node finds its sidecar silent, up to
            # a net tick time after the peers that restarted this one did (a paused
            # sidecar), and may meanwhile take a walk in or out through a pid hint: all
            # are asked once more then.
            await self._reconcile((self.node.net_ticktime,), seats=seats, read_links=True)
        finally:
            _SEATS.pop(id(self), None)
            self._seat_waits_again()

    def _moved_while_asking(self, person: Atom) -> None:
        for moved in _MOVED_WHILE_ASKING.get(id(self), ()):
            moved.add(person)

    async def _reconcile(
        self,
        pauses: tuple[float, ...],
        asking: list[Atom] | None = None,
        within: float | None = None,
        seats: set[Atom] | None = None,
        read_links: bool = False,
    ) -> tuple[list[Atom], bool]:
        """Asks people where they stand, all at once after each pause: every person it
        lists in every pass (after a merge, as a person's own merge may land after the
        first one), or ``asking`` until each answered; each given ``within`` seconds to
        answer, when set. Lets go of those who stand elsewhere and takes in those who
        stand here. With ``read_links``, a pass also asks those whose copies link here
        (a restored room), until the links could be read, each holding a seat in
        ``seats`` until it answers. Those who did not answer in the last pass, and
        whether the links were read."""
        moved: set[Atom] = set()
        checks = _MOVED_WHILE_ASKING.setdefault(id(self), [])
        checks.append(moved)
        unanswered: list[Atom] = []
        try:
            for pause in pauses:
                await asyncio.sleep(pause)
                if self.handed_off or not self.alive:
                    return [], True  # the live copy is elsewhere now
                people = list(self.people) if asking is None else list(asking)
                if read_links and seats is not None:
                    read_links = not await self._hold_seats(people, seats)
                moved.difference_update(people)
                wheres = await asyncio.gather(*(self._where(person, within) for person in people))
                unanswered = []
                for person, where in zip(people, wheres, strict=True):
                    if person in moved:
                        pass  # what it asked of this room since stands
                    elif where is None:
                        unanswered.append(person)
                        continue
                    elif where is self.key:
                        if person not in self.people:
                            self._add(person)
                            self.changed(wait=False)
                    elif where is not _NOWHERE:
                        self._without(person, wait=False)
                    if seats:
                        seats.discard(person)
                if _SEAT_WAITS:
                    self._seat_waits_again()
                if asking is not None:
                    asking = unanswered
                    if not asking and not read_links:
                        return [], True
            return unanswered, not read_links
        finally:
            checks[:] = [check for check in checks if check is not moved]
            if not checks:
                del _MOVED_WHILE_ASKING[id(self)]

    async def _hold_seats(self, people: list[Atom], seats: set[Atom]) -> bool:
        # Adds to people those whose copies link here and whom it does not list, each
        # holding a seat; whether the links could be read.
        try:
            linked = await self.linked_from()
        except Unavailable as exc:
            log.warning("%s: cannot learn who links to it yet: %s", self.key, exc)
            return False
        asked = set(people)
        for name in linked:
            match name:
                case (H.person, Atom() as person) if person not in asked:
                    asked.add(person)
                    people.append(person)
                    if person not in self.people:
                        seats.add(person)
        return True

    async def _where(self, person: Atom, within: float | None) -> Any:
        # Where the person says it stands (_NOWHERE for one registered nowhere); None
        # when it could not be asked, or could not say because a walk of its own is
        # still under way.
        try:
            where = await asyncio.wait_for(self.call_name((H.person, person), H.where_is), within)
            return where if isinstance(where, Atom) else None
        except UnknownName:
            return _NOWHERE
        except TimeoutError:
            return None
        except (ApiError, PyNodesError) as exc:
            log.warning("%s: cannot ask %s where it stands: %s", self.key, person, exc)
            return None


class PersonWorker(Worker):
    """A person (``self.key``): the room they stand in, their log of ``(micros, room)``,
    oldest first, and the walk under way, if any (its intent: ``(micros, room)``).

    Until the first walk the log is the empty tuple, which costs no object per person.
    It keeps the newest ``log_max`` walks, the oldest dropped: the pod sets ``log_max``
    from its ``HP_PERSON_LOG_MAX`` setting.

    Rooms and people agree after any crash: a walk has its intent held (replicated)
    before it enters the new room, and its put links the person to both rooms
    (``state_links``), so that a room restored from a copy that missed the walk in or out
    finds it and asks it. A person restarted with an intent finishes that walk (entering
    and leaving are idempotent, and the log entry is the intent's) or, when the room
    refuses it, stays where it was, in the room that still lists it. A refused walk has
    its intent dropped, held, before it answers.

    ``room_pid`` is the pid the API gave for the room it stands in when it walked in: a
    hint, tried first when it leaves that room, which spares a lookup. A copy that has
    moved on answers ``handed_off`` or is gone, and the room is then looked up by name;
    so is it when that copy answers anything but ``ok``. An orphan of a dead sidecar that
    still answers cannot mislead it: a leave that changes the orphan's state waits for a
    put its sidecar cannot hold, and one that does not change it leaves the name's live
    copy, restarted from that same state, as it is too. The hint is dropped whenever the
    person's room changes otherwise than by its own walk.
    """

    __slots__ = ("intent", "log", "logged", "room", "room_pid")

    kind = "person"
    log_max: ClassVar[int] = DEFAULT_PERSON_LOG_MAX

    key: Atom
    room: Atom | None
    room_pid: Pid | None
    log: list[tuple[int, Atom]] | tuple[()]
    intent: tuple[int, Atom] | None
    # How many walks were logged since the last put.
    logged: int

    def setup(self) -> None:
        self.room = None
        self.room_pid = None
        self.log = ()
        self.intent = None
        self.logged = 0

    def registry_key(self) -> tuple[Atom, Atom]:
        return (H.person, self.key)

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        match request:
            case (H.walk_into, room, Pid() as room_pid):
                # The API found the room a moment ago: its pid is tried before a lookup.
                return self._walk_into(room, room_pid)
            case (H.walk_into, room):
                return self._walk_into(room, None)
            case H.where_is if self.intent is None:
                return self._where()
            case H.room_log_micros if self.intent is None:
                return self._room_log_micros()
            case H.room_log if self.intent is None:
                return self._room_log()
            case H.where_is:
                return self._once_settled(self._where)
            case H.room_log_micros:
                return self._once_settled(self._room_log_micros)
            case H.room_log:
                return self._once_settled(self._room_log)
        return REPLY_UNKNOWN

    def _where(self) -> Reply:
        return Reply(self.room if self.room is not None else H.nil)

    def _room_log(self) -> Reply:
        return Reply([(datetime_term(us), room) for us, room in reversed(self.log)])

    def _room_log_micros(self) -> Reply:
        # The API's form: the sidecar makes the DateTimes, which the BEAM does faster.
        return Reply(list(reversed(self.log)))

    async def _once_settled(self, answer: Callable[[], Reply]) -> Reply:
        # A walk left under way by a restart, a handoff or a merge may have been
        # acknowledged: the person stands where it leads once it is finished, not before.
        if not await self._settle_intent():
            return Reply((H.error, (H.unavailable, H.walk_under_way)))
        return answer()

    async def _settle_intent(self) -> bool:
        """Finish the walk this copy took over under way, if any; whether none is left."""
        if self.intent is not None:
            await self._finish_walk()
        return self.intent is None

    async def _walk_into(self, room: Atom, room_pid: Pid | None) -> Reply:
        # The person runs its own move: enter the new room, leave the old one, log it.
        # Being async, the worker takes its next message only once the move is done, so
        # an intent met here was left by a restart, a handoff or a merge: finished first,
        # or a walk into the room it leads to would be taken as a walk into the old room.
        if not await self._settle_intent():
            return Reply((H.error, (H.unavailable, H.walk_under_way)))
        if room is self.room:
            return REPLY_OK
        self.intent = (_now_micros(), room)
        try:
            await self.replicate()
        except Unavailable as exc:
            self.intent = None
            return Reply((H.error, (H.unavailable, exc.reason)))
        try:
            entered = await self._walk_in(room, room_pid)
        except UnknownName:
            entered = (H.error, (H.unknown_room, room))
        except ApiError as exc:
            entered = (H.error, (H.unavailable, exc.reason))
        if entered is not H.ok:
            if _is_unavailable(entered):
                # The room may have taken the person in without saying so.
                await self._tell_room(room, H.leave)
            self.intent = None
            self.changed()
            return Reply(entered)
        await self._complete_walk(room_pid)
        return REPLY_OK

    async def _walk_in(self, room: Atom, room_pid: Pid | None) -> Any:
        # The room does not hold the walk in before it answers: the intent held already
        # links this person to it (state_links), and a room restored from a copy that
        # missed the walk in asks those who link to it.
        entered = await self.call_name((H.room, room), (H.walked_in, self.key), pid=room_pid)
        if entered == REPLY_UNKNOWN.value:
            # A room of an earlier release, in a rolling upgrade.
            entered = await self.call_name((H.room, room), (H.enter, self.key))
        return entered

    async def _complete_walk(self, room_pid: Pid | None = None) -> None:
        # Entered the intent's room (found at room_pid, when known): leave the old room
        # and log the move. Nothing more is held before the answer: the intent held
        # already makes a copy restarted from it finish this very walk (entering and
        # leaving are idempotent, and the log entry is the intent's), and the person's
        # next change carries the completed state.
        assert self.intent is not None
        micros, room = self.intent
        old = self.room
        if old is not None and old is not room:
            await self._tell_room(old, H.walked_out, self.room_pid)
        self.room = room
        self.room_pid = room_pid
        if isinstance(self.log, list):
            if not self._in_log((micros, room)):  # a walk finished again after a restart
                self.log.append((micros, room))
                self.logged += 1
                if len(self.log) > self.log_max:
                    del self.log[: len(self.log) - self.log_max]
        else:
            self.log = [(micros, room)]
            self.logged += 1
        self.intent = None
        self.changed(wait=False, within=WALKED_PUT_S)

    def _in_log(self, entry: tuple[int, Atom]) -> bool:
        # The log is in time order: only its entries from the entry's time on can match,
        # and those are at its end.
        assert isinstance(self.log, list)
        for logged in reversed(self.log):
            if logged == entry:
                return True
            if logged[0] < entry[0]:
                return False
        return False

    async def _finish_walk(self) -> None:
        # Restarted with a walk under way: finish it, or stay where the person was.
        if self.intent is None:
            return
        room = self.intent[1]
        try:
            entered = await self.call_name((H.room, room), (H.enter, self.key))
        except UnknownName:
            entered = H.error
        except ApiError as exc:
            log.warning("%s: cannot finish its walk into %s yet: %s", self.key, room, exc)
            run_outside_mailbox(self._finish_later(), delay=MERGE_SETTLE_S)
            return
        if entered is H.ok:
            await self._complete_walk()
        else:
            self.intent = None
            self.changed()

    async def _finish_later(self) -> None:
        self.send(self.pid, (H.finish_walk,))

    async def _tell_room(self, room: Atom, what: Atom, pid: Pid | None = None) -> None:
        # pid: a hint, believed only when it answers ok (see the class docstring).
        try:
            if (
                pid is not None
                and await self.call_name((H.room, room), (what, self.key), pid=pid) is H.ok
            ):
                return
            answer = await self.call_name((H.room, room), (what, self.key))
            if what is H.walked_out and answer == REPLY_UNKNOWN.value:
                # A room of an earlier release, in a rolling upgrade.
                await self.call_name((H.room, room), (H.leave, self.key))
        except UnknownName:
            pass
        except ApiError as exc:
            log.warning("%s: room %s did not take %s: %s", self.key, room, what, exc)

    def state_term(self) -> dict[Atom, Any]:
        if self.intent is None:
            return {H.log: list(self.log)}
        return {H.log: list(self.log), H.intent: self.intent}

    def state_links(self) -> list[tuple[Atom, Atom]]:
        # The room it stands in and the one it walks into: either may have taken it in
        # without holding that first.
        links = [] if self.room is None else [(H.room, self.room)]
        if self.intent is not None and self.intent[1] is not self.room:
            links.append((H.room, self.intent[1]))
        return links

    def state_changes(self) -> StateChanges | None:
        # The walks logged since the last put, and the walk under way.
        logged, self.logged = self.logged, 0
        if logged > self.log_max:
            return None
        append = {H.log: (self.log[-logged:], self.log_max)} if logged else {}
        if self.intent is None:
            return StateChanges(remove=(H.intent,), append=append)
        return StateChanges(set={H.intent: self.intent}, append=append)

    def end_handoff(self, state: Any) -> None:
        # A walk may reach the new copy before its state does: keep both.
        self._join_log((int(us), room) for us, room in state[H.log])
        intent = state.get(H.intent)
        if intent is not None and self.intent is None:
            self.intent = (int(intent[0]), intent[1])
            self.send(self.pid, (H.finish_walk,))

    def resolve_conflict(self, state: Any) -> None:
        theirs = sorted((int(us), room) for us, room in state[H.log])
        stood_in = {room for room in (self.room, theirs[-1][1] if theirs else None) if room}
        self._join_log(theirs)
        # A walk under way on either copy may have been acknowledged: the newest is
        # finished here if no logged move came after it; any other is logged where it
        # belongs in time, a later move having superseded it.
        pending = [self.intent, state.get(H.intent)]
        under_way = sorted({(int(p[0]), p[1]) for p in pending if p is not None} - set(self.log))
        self.intent = None
        if under_way and (not self.log or under_way[-1][0] > self.log[-1][0]):
            self.intent = under_way.pop()
            self.send(self.pid, (H.finish_walk,))
        if under_way:
            stood_in.update(room for _, room in under_way)
            self._join_log(under_way)
        run_outside_mailbox(self._settle_later(stood_in - {self.room}), delay=MERGE_SETTLE_S)

    async def _settle_later(self, stale: set[Atom]) -> None:
        # Settled in the mailbox, between walks: a walk running alongside could leave the
        # room this settling is about to list the person in.
        self.send(self.pid, (H.settle_rooms, stale))

    def _join_log(self, entries: Iterable[tuple[int, Atom]]) -> None:
        # The union of both logs in time order; the person stands in the newest room.
        joined = sorted(set(self.log) | set(entries), key=lambda e: (e[0], str(e[1])))
        self.log = joined[-self.log_max :]
        self.room = self.log[-1][1] if self.log else None
        self.room_pid = None

    def on_info(self, message: Any) -> Any:
        match message:
            case (H.settle_rooms, stale):
                # A copy that has moved on leaves the rooms to the live copy.
                return None if self.handed_off else self._settle_rooms(stale)
            case (H.finish_walk,):
                return None if self.handed_off else self._finish_walk()
        return super().on_info(message)

    async def _settle_rooms(self, stale: set[Atom]) -> None:
        # The merged log says where this person stands. The rooms either copy stood in
        # may still list it; that room's winning copy may not have seen the walk, and
        # lists the person even if that puts it over its max.
        for room in stale:
            if self.room is not room:
                await self._tell_room(room, H.leave)
        if self.room is not None:
            await self._tell_room(self.room, H.enter_merged)
