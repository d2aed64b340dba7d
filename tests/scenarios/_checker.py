"""What a user checks after a failure, from the walks a client made and what the house says.

A pure function over plain records, so that its own tests can feed it a lost walk, a
disagreeing room or an over-full room and see it report each. The records come from the
walkers of :mod:`tests.scenarios._durable`; the observation from the house once every name
answers again.

The rules, for each person, whose walks one walker makes one at a time:

- every walk answered ``ok`` is in the person's log, in order (a walk into the room one
  already stands in logs nothing, hence consecutive walks into one room count once);
- ``where_is`` names the room of the last walk answered ``ok``, or of a later walk whose
  answer the client never saw (an error, a timeout): that walk may have happened;
- the newest entry of the log is that room too;
- the person is listed in exactly the room ``where_is`` names, and in no other;

and for the rooms: every room exists, and none holds more than its ``max`` (outside a
healed netsplit, where both sides may have filled a room). Calls answered while an owner
could not be reached must not have said that something existing does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFINITE_REFUSALS",
    "Observation",
    "Problem",
    "Read",
    "Walk",
    "check_answers",
    "check_house",
]

# Answers that say the walk changed nothing. Every other answer but "ok" leaves the client
# not knowing: the walk may or may not have happened.
DEFINITE_REFUSALS = frozenset({"destination_full", "unknown_room"})


@dataclass(frozen=True)
class Walk:
    """One walk_into call: who, which room, the answer, and when (wall clock seconds)."""

    person: str
    room: str
    answer: str  # "ok", "destination_full", "unknown_room", "unavailable", "timeout", ...
    start: float
    end: float
    via: str = ""  # the client and sidecar, for the report

    @property
    def unseen(self) -> bool:
        """The client never learnt whether the walk happened."""
        return self.answer != "ok" and self.answer not in DEFINITE_REFUSALS


@dataclass(frozen=True)
class Read:
    """One read while the house was failing: ``what`` is "where_is", "log", "who_is_in"
    or "walk"; ``answer`` the value returned, or the error's kind as a str with
    ``error`` set."""

    what: str
    subject: str
    answer: object
    start: float
    end: float
    error: bool = False


@dataclass(frozen=True)
class Observation:
    """The house afterwards, as its API shows it."""

    dump: Mapping[str, Sequence[str]]  # room -> people listed
    where: Mapping[str, str | None]  # person -> where_is
    logs: Mapping[str, Sequence[str]]  # person -> rooms of the log, oldest first
    max: Mapping[str, int]  # room -> its max


@dataclass(frozen=True)
class Problem:
    kind: str  # lost_walk, where_is, log_newest, disagree, missing_room, over_max, absent
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.detail}"


def _by_person(walks: Iterable[Walk]) -> dict[str, list[Walk]]:
    out: dict[str, list[Walk]] = {}
    for walk in sorted(walks, key=lambda w: w.start):
        out.setdefault(walk.person, []).append(walk)
    return out


def _is_subsequence(wanted: Sequence[str], seq: Sequence[str]) -> int:
    """How many of ``wanted`` are found in ``seq`` in order (all of them: it is one)."""
    it = iter(seq)
    found = 0
    for item in wanted:
        if item not in it:
            break
        found += 1
    return found


def _ends(items: Sequence[object], n: int = 4) -> str:
    """The first and last few of a long list."""
    names = [item.room if isinstance(item, Walk) else str(item) for item in items]
    if len(names) <= 2 * n:
        return str(names)
    return f"[{', '.join(names[:n])}, ..., {', '.join(names[-n:])}]"


def _stamp(walk: Walk) -> str:
    return f"{walk.room} ({walk.answer}, {walk.start:.3f}..{walk.end:.3f}, {walk.via})"


def check_house(
    walks: Iterable[Walk],
    seen: Observation,
    rooms: Iterable[str],
    people: Iterable[str],
    *,
    healed_netsplit: bool = False,
) -> list[Problem]:
    """Every rule of the module's docstring that the observation breaks."""
    problems: list[Problem] = []
    rooms = list(rooms)
    by_person = _by_person(walks)
    for room in rooms:
        if room not in seen.dump:
            problems.append(Problem("missing_room", room, "not in dump()"))
    listed: dict[str, list[str]] = {}
    for room, inside in sorted(seen.dump.items()):
        for person in inside:
            listed.setdefault(person, []).append(room)
        limit = seen.max.get(room)
        if not healed_netsplit and limit is not None and len(inside) > limit:
            problems.append(
                Problem("over_max", room, f"lists {len(inside)} people, over its max {limit}")
            )
    for person in sorted(set(people) | set(by_person)):
        mine = by_person.get(person, [])
        log = list(seen.logs.get(person, []))
        where = seen.where.get(person)
        # 1. every ok walk in the log, in order
        ok_rooms: list[Walk] = []
        for walk in mine:
            if walk.answer == "ok" and not (ok_rooms and ok_rooms[-1].room == walk.room):
                ok_rooms.append(walk)
        found = _is_subsequence([w.room for w in ok_rooms], log)
        if found < len(ok_rooms):
            problems.append(
                Problem(
                    "lost_walk",
                    person,
                    f"walk answered ok into {_stamp(ok_rooms[found])} is not in the log "
                    f"(ok walk {found + 1} of {len(ok_rooms)}; the log holds {len(log)} "
                    f"entries, oldest first {_ends(log)}; the ok walks {_ends(ok_rooms)})",
                )
            )
        # 2. where_is: the last acknowledged room, or a later walk never answered
        last_ok = max((i for i, w in enumerate(mine) if w.answer == "ok"), default=None)
        allowed: set[str | None] = {None if last_ok is None else mine[last_ok].room}
        later = mine[(-1 if last_ok is None else last_ok) + 1 :]
        allowed |= {w.room for w in later if w.unseen}
        if where not in allowed:
            acked = "none" if last_ok is None else _stamp(mine[last_ok])
            problems.append(
                Problem(
                    "where_is",
                    person,
                    f"where_is says {where}; last walk answered ok: {acked}; later walks "
                    f"not answered: {[_stamp(w) for w in later if w.unseen]}",
                )
            )
        if (log[-1] if log else None) != where:
            problems.append(
                Problem(
                    "log_newest",
                    person,
                    f"newest log entry {log[-1] if log else None}, where_is {where}",
                )
            )
        # 3. people and rooms agree
        in_rooms = listed.get(person, [])
        if where is None and in_rooms:
            problems.append(
                Problem("disagree", person, f"where_is says nowhere, listed in {in_rooms}")
            )
        elif where is not None and in_rooms != [where]:
            problems.append(
                Problem("disagree", person, f"where_is says {where}, listed in {in_rooms}")
            )
    return problems


def check_answers(
    reads: Iterable[Read],
    walks: Iterable[Walk],
    rooms: Iterable[str],
    window: tuple[float, float] | None = None,
) -> list[Problem]:
    """Calls that said something existing does not exist: a walk or ``who_is_in``
    answered "unknown room" for a room that exists, ``where_is`` answered ``nil`` or the
    log ``[]`` for a person with a walk answered ok before the call began. "Unavailable"
    is allowed. With ``window``, only the calls that overlap it count."""
    rooms = set(rooms)
    walks = list(walks)
    known_since: dict[str, float] = {}
    for walk in walks:
        if walk.answer == "ok":
            known_since[walk.person] = min(known_since.get(walk.person, walk.end), walk.end)
    calls = [
        *reads,
        *(Read("walk", w.room, w.answer, w.start, w.end, error=w.answer != "ok") for w in walks),
    ]
    problems: list[Problem] = []
    for call in sorted(calls, key=lambda c: c.start):
        if window is not None and (call.end < window[0] or call.start > window[1]):
            continue
        if call.what in ("who_is_in", "walk"):
            absent = call.subject in rooms and call.error and call.answer == "unknown_room"
        else:
            exists = known_since.get(call.subject, float("inf")) < call.start
            empty: object = None if call.what == "where_is" else []
            absent = exists and not call.error and call.answer == empty
        if absent:
            problems.append(
                Problem(
                    "absent",
                    call.subject,
                    f"{call.what} answered {call.answer!r} at {call.start:.3f}..{call.end:.3f}",
                )
            )
    return problems
