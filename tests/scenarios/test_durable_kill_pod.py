"""A pod killed outright (SIGKILL to its sidecar, its Python node and its epmd) while
Python clients and erl clients walk people through every sidecar: no walk answered ok is
lost, ``where_is`` is the last acknowledged room, rooms and people agree, no room is over
its max; then the pod starts again and catches up."""

from __future__ import annotations

import asyncio

from tests.scenarios._house import HouseCluster
from tests.scenarios._kills import KILLED, assert_no_problems, kill_scenario


def test_a_killed_pod_loses_no_acknowledged_walk(house: HouseCluster) -> None:
    outcome = asyncio.run(
        kill_scenario(house, "durable_kill_pod", [(KILLED, house.kill, house.start, 0.0)])
    )
    assert_no_problems(outcome)
