"""Half a pod killed while Python clients and erl clients walk people through every
sidecar: its Python node alone (as an OOM kill), then restarted after a few seconds; or
its sidecar alone, then restarted, the pod becoming ready again by itself. No walk
answered ok is lost, ``where_is`` is the last acknowledged room, rooms and people agree,
no room is over its max."""

from __future__ import annotations

import asyncio

from tests.scenarios._house import HouseCluster
from tests.scenarios._kills import KILLED, assert_no_problems, kill_scenario

DOWN_S = 5.0  # as the kubelet restarts a crashed container after a back-off


def test_a_killed_python_node_loses_no_acknowledged_walk(house: HouseCluster) -> None:
    outcome = asyncio.run(
        kill_scenario(
            house, "durable_kill_python", [(KILLED, house.kill_python, house.start_python, DOWN_S)]
        )
    )
    assert_no_problems(outcome)


def test_a_killed_sidecar_loses_no_acknowledged_walk(house: HouseCluster) -> None:
    outcome = asyncio.run(
        kill_scenario(
            house,
            "durable_kill_sidecar",
            [(KILLED, house.kill_sidecar, house.start_sidecar, DOWN_S)],
        )
    )
    assert_no_problems(outcome)
