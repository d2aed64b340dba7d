"""Rooms and people killed one process at a time (``exit(Pid, kill)``, a crash as a
handler that raises would be) while Python clients and erl clients walk people: each
starts again from its last acknowledged state, and afterwards no walk answered ok is
lost, ``where_is`` is the last acknowledged room, rooms and people agree, no room is over
its max."""

from __future__ import annotations

import asyncio
import random

from py_nodes._terms import Atom, Pid
from tests.scenarios._durable import DurableHouse, Outcome
from tests.scenarios._house import HouseCluster
from tests.scenarios._kills import ERL_HOMES, NAMES_BACK_WITHIN_S, PY_HOMES, assert_no_problems

CRASHES = 90
# Within a name's restart limit (3 in 10 s): a name is crashed twice at most.
PER_NAME = 2


def test_workers_killed_under_walks_lose_no_acknowledged_walk(house: HouseCluster) -> None:
    async def scenario() -> tuple[int, Outcome]:
        async with DurableHouse(house) as h:
            h.start_walking(PY_HOMES, ERL_HOMES)
            await asyncio.sleep(2.0)
            rng = random.Random(5)
            names = [("room", r) for r in h.rooms] + [("person", p) for p in h.people]
            victims = rng.sample(names * PER_NAME, CRASHES)
            client = h.clients[0]
            killed = 0
            for kind, name in victims:
                key = (Atom(kind), Atom(name))
                pid = await client.rpc("hp_registry", "whereis_name", [key])
                if isinstance(pid, Pid):
                    await client.rpc("erlang", "exit", [pid, Atom("kill")])
                    killed += 1
                await asyncio.sleep(rng.uniform(0.0, 0.08))
            await asyncio.sleep(2.0)
            await h.stop_walking()
            assert await h.wait_every_name_answers(NAMES_BACK_WITHIN_S) is not None
            await h.wait_settled()
            h.figures["killed"] = killed
            return killed, await h.check("durable_worker_crashes")

    killed, outcome = asyncio.run(scenario())
    assert killed >= CRASHES * 9 // 10, f"only {killed} of {CRASHES} workers were found to kill"
    assert_no_problems(outcome)
