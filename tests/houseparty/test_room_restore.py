"""A room restored from a copy that may predate walks into and out of it asks the people
it lists, and those whose copies link to it, where they stand, and holds what a user
reads from it (who is in, and whether it is full) until they have answered, or for a
bounded time when one cannot.

The room runs on a real Python node; the people's answers, and the links, come from the
test."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, ClassVar

import pytest

from houseparty import _house
from houseparty._house import RoomWorker
from houseparty.workers import bind_sidecar
from py_nodes import Node
from py_nodes._terms import Atom
from tests.py_nodes.conftest import running_node

KID, GHOST, NEWCOMER = Atom("kid"), Atom("ghost"), Atom("newcomer")
ANN, SUE, TOM, OLD = Atom("ann"), Atom("sue"), Atom("tom"), Atom("old")
KITCHEN, HALL = Atom("kitchen"), Atom("hall")
OK = Atom("ok")


class RestoredRoom(RoomWorker):
    """A room whose questions to people are answered by the test: each question is put
    on ``asked`` as (person, future of the answer); the people whose copies link to it
    are ``linking``."""

    __slots__ = ()

    asked: asyncio.Queue[tuple[Atom, asyncio.Future[Any]]]
    linking: ClassVar[list[Atom]] = []

    async def linked_from(self) -> list[Any]:
        return [(Atom("person"), person) for person in RestoredRoom.linking]

    async def call_name(
        self, name: Any, request: Any, timeout: float = 5.0, pid: Any = None
    ) -> Any:
        assert request == Atom("where_is")
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await RestoredRoom.asked.put((name[1], answer))
        return await answer


@pytest.fixture(autouse=True)
def short_first_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_house, "RESTORE_FIRST_PASS_S", 0.3)
    monkeypatch.setattr(_house, "RESTORE_PAUSES", (0.1,))


async def questions(count: int) -> dict[Atom, asyncio.Future[Any]]:
    asked = {}
    for _ in range(count):
        person, answer = await asyncio.wait_for(RestoredRoom.asked.get(), 5)
        asked[person] = answer
    return asked


async def restore(node: Node, people: list[Atom], max_people: int) -> Any:
    """A room started as the registry restarts one from a copy listing ``people``."""
    pid = node.spawn(RestoredRoom, KITCHEN, max_people)
    room = node.process(pid)
    assert isinstance(room, RestoredRoom)
    room.end_handoff({_house.H.max: max_people, _house.H.people: people})
    room.restored_from_copy()
    return pid


async def restored_room_reads() -> None:
    RestoredRoom.asked = asyncio.Queue()
    RestoredRoom.linking = [KID]
    async with running_node("hp_" + secrets.token_hex(8)) as node:
        bind_sidecar(node, Atom("no_sidecar@nowhere"), copies=0)
        pid = await restore(node, [KID, GHOST], 2)
        first = await questions(2)
        # Asked while the people have not answered: the reads wait.
        who = asyncio.ensure_future(node.call(pid, Atom("who_is_in")))
        enter = asyncio.ensure_future(node.call(pid, (Atom("enter"), NEWCOMER)))
        await asyncio.sleep(0.1)
        assert not who.done() and not enter.done()
        # The kid walked out since the copy was put; the ghost does not answer in time.
        first[KID].set_result(HALL)
        # Once the first pass is over, the room answers, in the order it was asked: it
        # let the kid go and still lists the ghost, which it asks again; then it is not
        # full any more.
        assert await asyncio.wait_for(who, 5) == (OK, [GHOST])
        assert await asyncio.wait_for(enter, 5) == OK
        again = await questions(1)
        again[GHOST].set_result(HALL)
        await asyncio.sleep(0.1)
        assert await node.call(pid, Atom("who_is_in")) == (OK, [NEWCOMER])


def test_a_restored_room_lets_go_of_who_walked_out_before_it_answers() -> None:
    asyncio.run(restored_room_reads())


async def handed_over_room_reads() -> None:
    RestoredRoom.asked = asyncio.Queue()
    RestoredRoom.linking = [NEWCOMER]
    async with running_node("hp_" + secrets.token_hex(8)) as node:
        bind_sidecar(node, Atom("no_sidecar@nowhere"), copies=0)
        pid = node.spawn(RestoredRoom, KITCHEN, 2)
        room = node.process(pid)
        assert isinstance(room, RestoredRoom)
        room.end_handoff({_house.H.max: 2, _house.H.people: [KID, GHOST]})
        # A live copy's state, handed over in a drain: nobody is asked, nothing waits.
        assert await node.call(pid, Atom("who_is_in")) == (OK, [GHOST, KID])
        assert RestoredRoom.asked.empty()


def test_a_room_handed_over_by_its_live_copy_asks_nobody() -> None:
    asyncio.run(handed_over_room_reads())


async def orphan_round_reads() -> None:
    RestoredRoom.asked = asyncio.Queue()
    RestoredRoom.linking = []
    async with running_node("hp_" + secrets.token_hex(8), net_ticktime=1.0) as node:
        bind_sidecar(node, Atom("no_sidecar@nowhere"), copies=0)
        pid = await restore(node, [KID], 2)
        # The first round: the kid stands here, and stays.
        (await questions(1))[KID].set_result(KITCHEN)
        await asyncio.sleep(0.1)
        assert await node.call(pid, Atom("who_is_in")) == (OK, [KID])
        # The kid walks out through the old copy, an orphan of a paused sidecar that took
        # its walked_out: this room is not told. It asks again a net tick time later.
        assert RestoredRoom.asked.empty()
        loop = asyncio.get_running_loop()
        started = loop.time()
        again = await questions(1)
        assert loop.time() - started >= 0.8
        again[KID].set_result(HALL)
        await asyncio.sleep(0.1)
        assert await node.call(pid, Atom("who_is_in")) == (OK, [])
        # Nobody is asked after that round.
        await asyncio.sleep(1.5)
        assert RestoredRoom.asked.empty()


def test_a_restored_room_asks_once_more_a_net_tick_time_later() -> None:
    asyncio.run(orphan_round_reads())


async def linked_room_reads() -> None:
    RestoredRoom.asked = asyncio.Queue()
    # The copy lists ann, and the ghost, who has walked out since; it missed the walks in
    # of sue, the kid and tom, whose copies link here; old's copy still links here from
    # a walk it has finished elsewhere since.
    RestoredRoom.linking = [KID, SUE, TOM, OLD]
    async with running_node("hp_" + secrets.token_hex(8)) as node:
        bind_sidecar(node, Atom("no_sidecar@nowhere"), copies=0)
        pid = await restore(node, [ANN, GHOST], 4)
        first = await questions(6)
        who = asyncio.ensure_future(node.call(pid, Atom("who_is_in")))
        await asyncio.sleep(0.1)
        assert not who.done()
        for person, where in ((ANN, KITCHEN), (SUE, KITCHEN), (OLD, HALL)):
            first[person].set_result(where)
        # The ghost, the kid and tom do not answer in time: the kid and tom hold a seat
        # each, so the room of 4 is full to anyone else, but not to them.
        assert await asyncio.wait_for(who, 5) == (OK, [ANN, GHOST, SUE])
        full = (Atom("error"), Atom("destination_full"))
        assert await node.call(pid, (Atom("walked_in"), NEWCOMER)) == full
        assert await node.call(pid, (Atom("walked_in"), KID)) == OK
        # Tom's walk in does not fit the list, which still counts the ghost: it waits
        # for the next round rather than lose a walk that may have been acknowledged.
        tom = asyncio.ensure_future(node.call(pid, (Atom("walked_in"), TOM)))
        again = await questions(3)
        assert not tom.done()
        # Asked again, the ghost says it stands elsewhere; tom, walking, cannot say.
        again[GHOST].set_result(HALL)
        again[KID].set_result(KITCHEN)
        again[TOM].set_result(None)
        assert await asyncio.wait_for(tom, 5) == OK
        assert await node.call(pid, Atom("who_is_in")) == (OK, [ANN, KID, SUE, TOM])


def test_a_restored_room_takes_in_who_walked_in_and_links_to_it() -> None:
    asyncio.run(linked_room_reads())
