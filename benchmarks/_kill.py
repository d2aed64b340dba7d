"""``houseparty bench kill``: a pod SIGKILLed while clients walk, with and without replicas.

First the walk rates: two fresh 3-pod clusters up at once, one with ``HP_REPLICA_COPIES=0``
(no replicas: a killed pod's workers restart empty) and one with the product's default
copies. An erl caller node walks the people of both through their sidecars 1 and 2, each
walker owning its people and walking them one walk at a time, the two clusters in turns
of two seconds: so both meet the same slow and fast moments of a shared machine, which
two runs one after the other do not. Reported: each cluster's rate over its turns, and
the rate with replicas against the rate without.

Then the kill, once per setting, each on a fresh cluster: the same walkers walk the people
and, halfway through, pod 3 is killed (SIGKILL to both of its nodes). Reported per run: the
walk rate before the kill, the seconds from the kill until every name answers again (every
room its ``who_is_in``, every person a room from ``where_is``), and the walks answered
``ok`` that are not in their person's log afterwards (acknowledged walks lost: 0 is the
goal).

Then, per size, the same kill on a cluster of that many rooms (and a tenth as many people,
30,000 at most, walked into the first thousand rooms), with the default copies, and the
kill of pod 3's Python node alone on another: how long until the survivors hold every
name again and until ``dump`` lists every room with every person it listed before,
sampled as the names come back.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks._cases import COPIES_SETTING, TURN_GAP_S, Reporter, fill_workers, run_loop
from benchmarks._harness import BenchCluster, DriverBuild, bench_cluster, percentile
from houseparty._client import ROOM_MAX_LIMIT, AsyncHouseParty
from houseparty.workers import DEFAULT_REPLICA_COPIES
from py_nodes import Atom

__all__ = ["RATE_TARGET", "bench_kill", "lost_walks", "turn_figures"]

RATE_TARGET = 0.7  # walks/s with replicas, at least this share of the rate without
KILLED_POD = 3
NAMES_BACK_WITHIN_S = 60.0
RESTART_WITHIN_S = 300.0
PEOPLE_PER_ROOM = 0.1
MAX_PEOPLE = 30_000
PEOPLE_ROOMS = 1_000  # the rooms the people walk into
ADD_BATCH = 20_000
# What the restart at scale kills of pod 3, each on a cluster of its own: the whole pod,
# then its Python node alone (an OOM-killed container), whose sidecar hands its names over
# from its copies.
RESTART_KILLS = {"pod": "pod", "python": "Python node"}
# The rates: how long each cluster walks while the other waits (then TURN_GAP_S's pause).
TURN_S = 2.0


@contextmanager
def _copies_setting(copies: int | None) -> Iterator[None]:
    """The pods started in the block get ``HP_REPLICA_COPIES=copies`` (None: unset, the
    product's default)."""
    before = os.environ.get(COPIES_SETTING)
    if copies is None:
        os.environ.pop(COPIES_SETTING, None)
    else:
        os.environ[COPIES_SETTING] = str(copies)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(COPIES_SETTING, None)
        else:
            os.environ[COPIES_SETTING] = before


def lost_walks(ok_rooms: dict[str, list[str]], logs: dict[str, list[str]]) -> int:
    """How many walks answered ok are missing from their person's log (oldest first).

    ``ok_rooms``: per person, the rooms of its walks answered ok, in order. Consecutive
    walks into one room count once (the second one logs nothing). The walks found are the
    longest run of them that the log holds in order; the others are lost.
    """
    lost = 0
    for person, rooms in ok_rooms.items():
        walks = [room for i, room in enumerate(rooms) if i == 0 or rooms[i - 1] != room]
        log = logs.get(person, [])
        # Longest common subsequence, one row at a time.
        row = [0] * (len(log) + 1)
        for room in walks:
            diagonal = 0
            for j, entry in enumerate(log, 1):
                above = row[j]
                row[j] = diagonal + 1 if entry == room else max(row[j], row[j - 1])
                diagonal = above
        lost += len(walks) - row[-1]
    return lost


async def _every_name_answers(
    hps: list[AsyncHouseParty], rooms: list[str], people: list[str]
) -> bool:
    gate = asyncio.Semaphore(32)

    async def room(i: int, name: str) -> bool:
        async with gate:
            try:
                await hps[i % len(hps)].who_is_in(name)
            except Exception:  # not answering, whatever the reason
                return False
            return True

    async def person(i: int, name: str) -> bool:
        async with gate:
            try:
                return await hps[i % len(hps)].where_is(name) is not None
            except Exception:  # not answering, whatever the reason
                return False

    answers = await asyncio.gather(
        *(room(i, r) for i, r in enumerate(rooms)), *(person(i, p) for i, p in enumerate(people))
    )
    return all(answers)


async def _names_back(
    nodes: list[str], cookie: str, rooms: list[str], people: list[str], t_kill: float
) -> float | None:
    """Seconds from ``t_kill`` (monotonic) until every name answers, or None."""
    hps = [AsyncHouseParty(node, cookie, timeout=10.0) for node in nodes]
    for hp in hps:
        await hp.connect()
    try:
        while time.monotonic() - t_kill < NAMES_BACK_WITHIN_S:
            if await _every_name_answers(hps, rooms, people):
                return time.monotonic() - t_kill
            await asyncio.sleep(0.1)
        return None
    finally:
        for hp in hps:
            await hp.close()


async def _read_house(
    node: str, cookie: str, people: list[str]
) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    """Every person's log (rooms, oldest first) and ``where_is``."""
    logs: dict[str, list[str]] = {}
    where: dict[str, str | None] = {}
    gate = asyncio.Semaphore(32)
    async with AsyncHouseParty(node, cookie, timeout=30.0) as hp:

        async def one(person: str) -> None:
            async with gate:
                for attempt in range(20):
                    try:
                        log = await hp.get_person_room_log(person)
                        where[person] = await hp.where_is(person)
                        break
                    except Exception:  # asked again: names may still be settling
                        if attempt == 19:
                            raise
                        await asyncio.sleep(0.5)
                logs[person] = [room for _t, room in reversed(log)]

        await asyncio.gather(*(one(p) for p in people))
    return logs, where


def _rates(
    workdir: Path,
    driver: DriverBuild,
    report: Reporter,
    people: int,
    rooms: int,
    concurrency: int,
    seconds: float,
    settle: bool,
) -> dict[str, Any]:
    """The walk rates without replicas and with the default copies, on two clusters up at
    once that walk in turns (``seconds`` of walking in all, two turns at least each)."""
    turns = max(2, round(seconds / (2 * TURN_S)))
    report.step(
        f"rates: {people:,} people, {rooms} rooms on two clusters, {COPIES_SETTING}=0 and "
        f"the default; {concurrency} walkers each, in {turns} turns of {TURN_S:.0f} s each"
    )
    with ExitStack() as stack:
        clusters = []
        for copies in (0, None):
            with _copies_setting(copies):
                clusters.append(
                    stack.enter_context(bench_cluster(workdir, driver, log=report.step))
                )
        room_names = [f"k{i}" for i in range(1, rooms + 1)]
        for cluster in clusters:
            if settle:
                cluster.wait_settled()
            cluster.hp.add_rooms(room_names, max=ROOM_MAX_LIMIT)
        without, with_ = clusters
        out = without.runner.run_dir / "paired_walks.out"
        without.caller_node(
            f'hp_bench_driver:paired_walks_main(["{out}", "{",".join(without.sidecars[:2])}", '
            f'"{",".join(with_.sidecars[:2])}", "{with_.cookie}", "{",".join(room_names)}", '
            f'"kw", "{people}", "{concurrency}", "{int(TURN_S * 1000)}", "{turns}", '
            f'"{int(TURN_GAP_S * 1000)}"]).',
            timeout=2 * turns * (TURN_S + TURN_GAP_S) + 300,
        )
        text = out.read_text()
    return {**turn_figures(text), "turn_gap_seconds": TURN_GAP_S}


def turn_figures(text: str) -> dict[str, Any]:
    """The rates of ``paired_walks_main``'s output: cluster a without replicas, b with."""
    turns: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    walks: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    for line in text.splitlines():
        match line.split():
            case ["turn", cluster, t0, t1]:
                turns[cluster].append((int(t0), int(t1)))
            case ["walk", cluster, _person, _room, "ok", t0, t1]:
                walks[cluster].append((int(t0), int(t1)))

    def rate(cluster: str, t0: int, t1: int) -> float:
        done = sum(1 for w0, _ in walks[cluster] if t0 <= w0 <= t1)
        return done / ((t1 - t0) / 1e6)

    figures: dict[str, Any] = {"turns": len(turns["a"]), "turn_seconds": TURN_S}
    for cluster, label in (("a", "without"), ("b", "with")):
        # A turn's walks are those it started: it ends once they are answered.
        lats = [
            float(w1 - w0)
            for w0, w1 in walks[cluster]
            if any(t0 <= w0 <= t1 for t0, t1 in turns[cluster])
        ]
        walked = sum(t1 - t0 for t0, t1 in turns[cluster]) / 1e6
        figures[label] = {
            "walks": len(lats),
            "walks_per_second": round(len(lats) / walked, 1) if walked else 0.0,
            "p50_us": round(percentile(lats, 50)),
            "p99_us": round(percentile(lats, 99)),
        }
    pairs = [(rate("a", *a), rate("b", *b)) for a, b in zip(turns["a"], turns["b"], strict=True)]
    figures["with_vs_without_per_turn"] = [round(rb / ra, 2) if ra else None for ra, rb in pairs]
    return figures


def _kill_run(
    workdir: Path,
    driver: DriverBuild,
    report: Reporter,
    copies: int | None,
    people: int,
    rooms: int,
    concurrency: int,
    seconds: float,
    settle: bool,
) -> dict[str, Any]:
    label = f"{DEFAULT_REPLICA_COPIES} (default)" if copies is None else str(copies)
    report.step(f"kill: {people:,} people, {rooms} rooms, {COPIES_SETTING}={label}")
    with _copies_setting(copies), bench_cluster(workdir, driver, log=report.step) as cluster:
        if settle:
            cluster.wait_settled()
        room_names = [f"k{i}" for i in range(1, rooms + 1)]
        person_names = [f"kw{i}" for i in range(1, people + 1)]
        cluster.hp.add_rooms(room_names, max=ROOM_MAX_LIMIT)
        out = cluster.runner.run_dir / "kill_walks.out"
        walking = cluster.sidecars[:2]
        error: list[BaseException] = []

        def walk() -> None:
            try:
                cluster.caller_node(
                    f'hp_bench_driver:kill_walks_main(["{out}", "{",".join(walking)}", '
                    f'"{",".join(room_names)}", "kw", "{people}", "{concurrency}", '
                    f'"{int(seconds * 1000)}"]).',
                    timeout=seconds + 300,
                )
            except BaseException as exc:  # reported by the main thread
                error.append(exc)

        report.step(
            f"kill: {concurrency} walkers through sidecars 1 and 2 for {seconds:.0f} s; "
            f"pod {KILLED_POD} killed after {seconds / 2:.0f} s"
        )
        walker = threading.Thread(target=walk)
        walker.start()
        time.sleep(seconds / 2)
        t_kill_wall, t_kill = time.time(), time.monotonic()
        cluster.runner.kill_pod(KILLED_POD)
        back_s = asyncio.run(_names_back(walking, cluster.cookie, room_names, person_names, t_kill))
        report.step(
            "kill: every name answers again after "
            + ("never" if back_s is None else f"{back_s:.2f} s")
        )
        walker.join()
        if error:
            raise error[0]
        walks = [_parse(line) for line in out.read_text().splitlines() if line.strip()]
        report.step("kill: reading every person's log")
        logs, where = asyncio.run(_read_house(walking[0], cluster.cookie, person_names))
    return _figures(label, walks, logs, where, t_kill_wall, seconds, back_s)


def _parse(line: str) -> tuple[str, str, str, float, float]:
    person, room, answer, t0, t1 = line.split()
    return person, room, answer, int(t0) / 1e6, int(t1) / 1e6


def _figures(
    label: str,
    walks: list[tuple[str, str, str, float, float]],
    logs: dict[str, list[str]],
    where: dict[str, str | None],
    t_kill: float,
    seconds: float,
    back_s: float | None,
) -> dict[str, Any]:
    # The rate before the kill, over its second half: the first walks of each walker
    # make its people exist.
    window = seconds / 4
    before = [w for w in walks if t_kill - window <= w[4] < t_kill and w[2] == "ok"]
    ok_rooms: dict[str, list[str]] = {}
    last: dict[str, tuple[str | None, set[str]]] = {}
    for person, room, answer, _t0, _t1 in sorted(walks, key=lambda w: w[3]):
        acked, unseen = last.get(person, (None, set()))
        if answer == "ok":
            ok_rooms.setdefault(person, []).append(room)
            last[person] = (room, set())
        elif answer not in ("destination_full", "unknown_room"):
            last[person] = (acked, unseen | {room})  # may have happened
    misplaced = sum(
        1
        for p, (acked, unseen) in last.items()
        if where.get(p) != acked and where.get(p) not in unseen
    )
    lats = [(w[4] - w[3]) * 1e6 for w in before]
    return {
        "replica_copies": label,
        "walks": len(walks),
        "walks_by_answer": dict(Counter(w[2] for w in walks)),
        "walks_per_second_before_kill": round(len(before) / window, 1),
        "p50_us_before_kill": round(percentile(lats, 50)),
        "p99_us_before_kill": round(percentile(lats, 99)),
        "every_name_answers_after_s": None if back_s is None else round(back_s, 2),
        "acknowledged_walks": sum(len(r) for r in ok_rooms.values()),
        "acknowledged_walks_lost": lost_walks(ok_rooms, logs),
        "people_not_where_last_acknowledged": misplaced,
    }


def _names_held(cluster: BenchCluster, sidecars: list[str]) -> int:
    return sum(
        int(cluster.on(sidecar, "hp_registry_store", "info", [])[Atom("names")])
        for sidecar in sidecars
    )


def _dumped(cluster: BenchCluster, sidecar: str) -> tuple[int, int]:
    """Rooms and people that ``dump`` lists; none while it answers unavailable."""
    dump = cluster.on(sidecar, "houseparty", "dump", [])
    if not isinstance(dump, dict):
        return 0, 0
    return len(dump), sum(len(people) for people in dump.values())


def _restart_run(
    workdir: Path, driver: DriverBuild, report: Reporter, rooms: int, kill: str, settle: bool
) -> dict[str, Any]:
    people = min(MAX_PEOPLE, int(rooms * PEOPLE_PER_ROOM))
    what = RESTART_KILLS[kill]
    victim = f"pod {KILLED_POD}" if kill == "pod" else f"the {what} of pod {KILLED_POD}"
    report.step(f"restart: {rooms:,} rooms, {people:,} people, {victim} killed")
    with bench_cluster(workdir, driver, log=report.step) as cluster:
        if settle:
            cluster.wait_settled()
        names = [f"r{i}" for i in range(1, rooms + 1)]
        bar = report.progress(f"adding {rooms:,} rooms", rooms)
        for i in range(0, rooms, ADD_BATCH):
            cluster.hp.add_rooms(names[i : i + ADD_BATCH], max=ROOM_MAX_LIMIT)
            bar(i + ADD_BATCH)
        fill_workers(cluster, report, "person", "w", people, base=rooms)
        report.step(f"restart: walking the people into {min(rooms, PEOPLE_ROOMS):,} rooms")
        run_loop(cluster, "python", "walk", names[:PEOPLE_ROOMS], people, 2 * people, 30)
        survivors = [s for i, s in enumerate(cluster.sidecars, 1) if i != KILLED_POD]
        killed = cluster.sidecars[KILLED_POD - 1]
        listed_before = _dumped(cluster, survivors[0])
        asked = time.monotonic()
        while listed_before[0] < rooms and time.monotonic() - asked < NAMES_BACK_WITHIN_S:
            time.sleep(0.25)  # every room answers before the kill
            listed_before = _dumped(cluster, survivors[0])
        on_killed = _names_held(cluster, [killed])
        total = _names_held(cluster, cluster.sidecars)
        t_kill = time.monotonic()
        if kill == "pod":
            cluster.runner.kill_pod(KILLED_POD)
        else:
            cluster.runner.kill_node(KILLED_POD, kill)
        bar = report.progress(f"names of pod {KILLED_POD} back", on_killed)
        samples: list[tuple[float, int]] = []
        names_back_s = None
        while time.monotonic() - t_kill < RESTART_WITHIN_S:
            held = _names_held(cluster, survivors)
            samples.append((round(time.monotonic() - t_kill, 2), held - (total - on_killed)))
            bar(samples[-1][1])
            if held >= total:
                names_back_s = samples[-1][0]
                break
            time.sleep(0.25)
        report.done()
        dump_back_s = None
        listed = (0, 0)
        while time.monotonic() - t_kill < RESTART_WITHIN_S:
            listed = _dumped(cluster, survivors[0])
            if listed[0] >= listed_before[0] and listed[1] >= listed_before[1]:
                dump_back_s = round(time.monotonic() - t_kill, 2)
                break
            time.sleep(0.25)
        held = _names_held(cluster, survivors)
    report.step(
        f"restart: {on_killed:,} names of pod {KILLED_POD} back after "
        + ("never" if names_back_s is None else f"{names_back_s:.2f} s")
    )
    return {
        "rooms": rooms,
        "people": people,
        "killed": what,
        "names_on_killed_pod": on_killed,
        "names_back_after_s": names_back_s,
        "names_per_second": round(on_killed / names_back_s) if names_back_s else None,
        "dump_lists_all_after_s": dump_back_s,
        "names_lost": total - held,
        "people_in_rooms_before": listed_before[1],
        "people_in_rooms_after": listed[1],
        "samples": samples,
    }


def bench_kill(
    workdir: Path,
    driver: DriverBuild,
    report: Reporter,
    people: int,
    rooms: int,
    concurrency: int,
    seconds: float,
    restart_sizes: list[int],
    settle: bool = True,
) -> dict[str, Any]:
    rates = _rates(workdir, driver, report, people, rooms, concurrency, seconds, settle)
    without, with_ = (rates[k]["walks_per_second"] for k in ("without", "with"))
    runs = [
        _kill_run(workdir, driver, report, copies, people, rooms, concurrency, seconds, settle)
        for copies in (0, None)
    ]
    return {
        "people": people,
        "rooms": rooms,
        "concurrency": concurrency,
        "seconds": seconds,
        "rates": rates,
        "runs": runs,
        "rate_with_replicas_vs_without": round(with_ / without, 2) if without else None,
        "restarts": [
            _restart_run(workdir, driver, report, n, kill, settle)
            for n in restart_sizes
            for kill in RESTART_KILLS
        ],
    }
