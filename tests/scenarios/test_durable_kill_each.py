"""All three pods killed one after another (SIGKILL to everything in the pod), each once
the one before has come back and the ring has settled, while Python clients and erl
clients walk people: afterwards no walk answered ok is lost, ``where_is`` is the last
acknowledged room, rooms and people agree, no room is over its max."""

from __future__ import annotations

import asyncio

from tests.scenarios._house import HouseCluster
from tests.scenarios._kills import assert_no_problems, kill_scenario


def test_every_pod_killed_in_turn_loses_no_acknowledged_walk(house: HouseCluster) -> None:
    outcome = asyncio.run(
        kill_scenario(
            house, "durable_kill_each", [(pod, house.kill, house.start, 0.0) for pod in (0, 1, 2)]
        )
    )
    assert_no_problems(outcome)
