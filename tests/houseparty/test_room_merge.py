"""A room that asks its people where they stand after a merge keeps one who walked in
while it asked: the answer it acts on may be older than the walk.

The room runs on a real Python node; the person's answers come from the test, so that
the answer and the walk in reach the room in the order a person on another node can
send them (both in one read: the walk handled as it arrives, the answer at the check's
next turn)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from houseparty import _house
from houseparty._house import RoomWorker
from houseparty.workers import bind_sidecar
from py_nodes import Node, Process
from py_nodes._terms import Atom
from tests.py_nodes.conftest import running_node

KID = Atom("kid")
KITCHEN = Atom("kitchen")
HALL = Atom("hall")


class AskingRoom(RoomWorker):
    """A room whose questions to people are answered by the test, in its order."""

    __slots__ = ()

    answers: asyncio.Queue[asyncio.Future[Any]]

    async def call_name(
        self, name: Any, request: Any, timeout: float = 5.0, pid: Any = None
    ) -> Any:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await AskingRoom.answers.put(answer)
        return await answer


class Sink(Process):
    """Takes the room's answers to the test's own requests, which nobody reads."""

    __slots__ = ()

    def handle_message(self, message: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def no_settling_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_house, "MERGE_SETTLE_S", 0.0)


async def listed(node: Node, pid: Any) -> list[Atom]:
    answer = await node.call(pid, Atom("who_is_in"))
    assert answer[0] == Atom("ok")
    return list(answer[1])


async def merge_then_walk_in_while_asked(walk_in: bool) -> list[Atom]:
    """The room takes a merge listing the kid, who stands in the hall; asked where it
    stands, the kid answers the hall and, when ``walk_in``, walks in right after. The
    people the room lists once its passes are done."""
    AskingRoom.answers = asyncio.Queue()
    async with running_node("hp_" + secrets.token_hex(8)) as node:
        bind_sidecar(node, Atom("no_sidecar@nowhere"), copies=0)
        pid = node.spawn(AskingRoom, KITCHEN, 5)
        merged = {_house.H.max: 5, _house.H.people: [KID]}
        node.cast(pid, (Atom("swarm"), Atom("resolve_conflict"), merged))
        assert await listed(node, pid) == [KID]
        first = await asyncio.wait_for(AskingRoom.answers.get(), 5)
        first.set_result(HALL)
        if walk_in:
            # The walk in comes with the answer, and the room handles it as it arrives,
            # before the check takes the answer; asked again, the kid stands here.
            sink = node.spawn(Sink)
            node.send(pid, (Atom("$gen_call"), (sink, node.make_ref()), (_house.H.enter, KID)))
            second = await asyncio.wait_for(AskingRoom.answers.get(), 5)
            second.set_result(KITCHEN)
        await asyncio.sleep(0.05)
        return await listed(node, pid)


def test_a_person_who_walks_in_while_asked_stays_listed() -> None:
    assert asyncio.run(merge_then_walk_in_while_asked(walk_in=True)) == [KID]


def test_a_person_standing_elsewhere_is_dropped() -> None:
    assert asyncio.run(merge_then_walk_in_while_asked(walk_in=False)) == []
