"""A sidecar paused with SIGSTOP for 9 s, shorter than the cluster's tick time (its peers
do not take it for dead), then resumed with SIGCONT, while Python clients and erl clients
walk people and Python clients read through every sidecar. During the pause no call
says that an existing room or person does not exist (no "unknown room", no ``nil``
from ``where_is``, no ``[]`` log): each answers, or says "unavailable". Afterwards no
walk answered ok is lost, ``where_is`` is the last acknowledged room, rooms and people
agree, no room is over its max."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from tests.scenarios._durable import DurableHouse, Readers
from tests.scenarios._house import HouseCluster, sidecar_ebin
from tests.sim import PodCluster

PAUSED = 2
PAUSE_S = 9.0
TICK = 24  # a silent peer is down after 18..30 s: the pause stays shorter than that


@pytest.fixture
def slow_tick_house(pod_cluster: Callable[[int], PodCluster]) -> Iterator[HouseCluster]:
    if not (sidecar_ebin() / "houseparty_sidecar.app").exists():
        pytest.skip(f"the sidecar is not compiled ({sidecar_ebin()}): run `rebar3 compile`")
    cluster = HouseCluster(pod_cluster(3), tick=TICK)
    cluster.start_all()
    yield cluster


async def scenario(cluster: HouseCluster) -> list[str]:
    async with DurableHouse(cluster) as house:
        house.start_walking([0, 1, 2, 1], [0, 1, 2, 0])
        readers = Readers(house.clients, house.people, house.rooms, tasks=6)
        await asyncio.sleep(2.0)
        readers.start()
        await asyncio.sleep(1.0)
        t_stop = time.time()
        await asyncio.to_thread(cluster.pause_sidecar, PAUSED)
        try:
            await asyncio.sleep(PAUSE_S)
        finally:
            await asyncio.to_thread(cluster.resume_sidecar, PAUSED)
        t_cont = time.time()
        await asyncio.sleep(3.0)
        await readers.stop()
        await house.stop_walking()
        back_s = await house.wait_every_name_answers(15.0)
        await house.wait_settled()
        house.figures["paused_at"] = round(t_stop, 3)
        house.figures["resumed_at"] = round(t_cont, 3)
        house.figures["every_name_answers_after_resume_s"] = (
            None if back_s is None else round(back_s, 2)
        )
        outcome = await house.check("durable_pause", reads=readers.reads, window=(t_stop, t_cont))
    return [str(p) for p in outcome.problems]


def test_a_paused_sidecar_never_makes_existing_names_absent(slow_tick_house: HouseCluster) -> None:
    problems = asyncio.run(scenario(slow_tick_house))
    assert problems == [], f"{len(problems)} problems; first ones:\n" + "\n".join(problems[:8])
