"""Worker classes of the tests' own, which the test clusters' pods load by import path
(``HOUSEPARTY_WORKERS``)."""

from __future__ import annotations

from typing import Any

from houseparty._house import datetime_term
from houseparty.workers import HandoffAnswer, Restart, StateChanges, Worker
from py_nodes import Reply, Stop
from py_nodes._terms import Atom

__all__ = ["Broken", "Counter", "Fresh", "Journal", "OlderPerson", "Stubborn", "Tally"]

SETTING = (
    "counter=tests.houseparty.worker_classes:Counter tests.houseparty.worker_classes:Broken,"
    "tests.houseparty.worker_classes:Fresh tests.houseparty.worker_classes:OlderPerson "
    "tests.houseparty.worker_classes:Stubborn tests.houseparty.worker_classes:Journal "
    "tests.houseparty.worker_classes:Tally tests.houseparty.worker_classes:Member"
)


class Counter(Worker):
    """A number: ``b"incr"`` and ``(b"add", N)`` (calls or casts), ``b"get"``; a message
    ``(b"add", N)`` adds too; ``b"crash"`` raises; ``b"stop"`` stops it as asked. It
    keeps the larger of two copies after a netsplit."""

    n: int

    def setup(self, start: int = 0) -> None:
        self.n = start

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        match request:
            case b"get":
                return Reply(self.n)
            case b"incr" | (b"add", int()):
                self._add(request)
                return Reply(self.n)
            case b"crash":
                raise RuntimeError(f"asked to crash at {self.n}")
            case b"stop":
                return Stop(reply=Atom("ok"))
        return Reply((Atom("error"), Atom("unknown_request")))

    def on_cast(self, request: Any) -> None:
        self._add(request)

    def on_info(self, message: Any) -> None:
        self._add(message)

    def _add(self, request: Any) -> None:
        match request:
            case b"incr":
                self.n += 1
                self.changed()
            case (b"add", int(amount)):
                self.n += amount
                self.changed()

    def state_term(self) -> int:
        return self.n

    def end_handoff(self, state: Any) -> None:
        self.n = state

    def resolve_conflict(self, state: Any) -> None:
        self.n = max(self.n, state)


class Broken(Worker):
    """A worker that refuses to start (kind ``broken``, from its class name)."""

    def setup(self, *args: Any) -> None:
        raise ValueError("no setup today")


class Fresh(Counter):
    """A counter that starts afresh from its args when it moves (kind ``fresh``)."""

    kind = "fresh"

    def begin_handoff(self) -> HandoffAnswer:
        return Restart()


class Stubborn(Counter):
    """A counter whose ``begin_handoff`` raises (kind ``stubborn``): asked to move, it
    crashes instead of giving its state."""

    kind = "stubborn"

    def begin_handoff(self) -> HandoffAnswer:
        raise RuntimeError(f"will not move from {self.n}")


class Journal(Worker):
    """The newest ``keep`` lines written to it (kind ``journal``): ``(b"write", Line)``
    answers how many lines were ever written, ``b"read"`` the lines kept. Its puts carry
    only the lines written since the last one."""

    kind = "journal"

    keep: int
    lines: list[bytes]
    written: int
    unput: int

    def setup(self, keep: int = 50) -> None:
        self.keep = keep
        self.lines = []
        self.written = 0
        self.unput = 0

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        match request:
            case (b"write", bytes(line)):
                self.lines = [*self.lines, line][-self.keep :]
                self.written += 1
                self.unput += 1
                self.changed()
                return Reply(self.written)
            case b"read":
                return Reply(self.lines)
        return Reply((Atom("error"), Atom("unknown_request")))

    def state_term(self) -> Any:
        return {b"keep": self.keep, b"lines": self.lines, b"written": self.written}

    def state_changes(self) -> StateChanges | None:
        new, self.unput = self.unput, 0
        return StateChanges(
            set={b"written": self.written},
            append={b"lines": (self.lines[len(self.lines) - min(new, self.keep) :], self.keep)},
        )

    def end_handoff(self, state: Any) -> None:
        self.keep, self.lines, self.written = state[b"keep"], state[b"lines"], state[b"written"]


class Tally(Worker):
    """Two counts (kind ``tally``): ``b"incr"`` adds to the held one, ``b"note"`` to the
    one it lets go unheld (``changed(wait=False)``); ``b"get"`` answers both and how many
    times it was restored from a copy; ``b"crash"`` raises."""

    kind = "tally"

    held: int
    unheld: int
    restored: int

    def setup(self) -> None:
        self.held = self.unheld = self.restored = 0

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        match request:
            case b"incr":
                self.held += 1
                self.changed()
            case b"note":
                self.unheld += 1
                self.changed(wait=False)
            case b"crash":
                raise RuntimeError("asked to crash")
        return Reply((self.held, self.unheld, self.restored))

    def state_term(self) -> Any:
        return (self.held, self.unheld, self.restored)

    def end_handoff(self, state: Any) -> None:
        self.held, self.unheld, self.restored = state

    def restored_from_copy(self) -> None:
        self.restored += 1


class Member(Worker):
    """A member of the group named at registration (kind ``member``): ``b"join"`` and
    ``b"leave"`` make its state link to the group's name or not (held changes);
    ``b"linked"`` answers the names whose copies link to this one, sorted; ``b"crash"``
    raises. It takes only its own state back, without the links its puts carried."""

    kind = "member"

    group: bytes
    joined: bool

    def setup(self, group: bytes = b"") -> None:
        self.group = group
        self.joined = False

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        match request:
            case b"join" | b"leave":
                self.joined = request == b"join"
                self.changed()
            case b"linked":
                return self._linked()
            case b"crash":
                raise RuntimeError("asked to crash")
        return Reply(self.joined)

    async def _linked(self) -> Reply:
        return Reply(sorted(await self.linked_from()))

    def state_links(self) -> list[bytes]:
        return [self.group] if self.joined else []

    def state_term(self) -> Any:
        return {b"joined": self.joined}

    def end_handoff(self, state: Any) -> None:
        if set(state) != {b"joined"}:
            raise ValueError(f"not a member's own state: {state!r}")
        self.joined = state[b"joined"]


class OlderPerson(Worker):
    """A person of an earlier version (kind ``older_person``): it knows ``where_is`` and
    ``room_log`` (one entry, in the kitchen) but not ``room_log_micros``."""

    kind = "older_person"

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Any:
        if request == Atom("where_is"):
            return Reply(Atom("kitchen"))
        if request == Atom("room_log"):
            return Reply([(datetime_term(1_796_000_000_000_000), Atom("kitchen"))])
        return Reply((Atom("error"), Atom("unknown_request")))
