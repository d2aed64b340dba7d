"""The benchmarks of ``houseparty bench``; each returns a JSON-able dict of its figures.

=========  ==============================================================================
scale      start and register N processes (half rooms, half people) from every sidecar at
           once: processes/s, RSS of every node, bytes per process on each kind of node
calls      gen_server:call from a separate erl node to a Python room versus a BEAM
           gen_server, sequential and concurrent; plain TCP and TLS distribution, one
           cluster each, up at once and called in turns
walks      walk_into: the Python workers beside a BEAM baseline (``hp_bench_house.erl``), callers
           looping on the sidecars; the reads beside it; the walk rate without replication;
           and walk_into from Python clients and from an Erlang client, over plain TCP and
           over TLS distribution; each comparison's sides in turns, on clusters up at once
handoff    graceful stop of one of three pods: time until every name is held again by a
           surviving pod, and how many rooms no longer answer
dump       dump() over 10k and 100k rooms
registry   hp_registry:register_name/2 against global:register_name/2, same run
=========  ==============================================================================
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import threading
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    BenchCluster,
    DriverBuild,
    bench_cluster,
    node_label,
    parse_erlang_term,
    percentile,
    timed,
)
from houseparty._client import ROOM_MAX_LIMIT, AsyncHouseParty
from houseparty._errors import ClusterError
from houseparty._house import WALKED_PUT_S
from houseparty.workers import DEFAULT_REPLICA_COPIES
from py_nodes._terms import Atom

__all__ = [
    "Loop",
    "Reporter",
    "bench_calls",
    "bench_dump",
    "bench_handoff",
    "bench_registry",
    "bench_scale",
    "bench_walks",
    "fill_workers",
    "in_turns",
    "run_loop",
]

CALLERS_PER_SIDECAR = 64
CPUS = os.cpu_count() or 1
COPIES_SETTING = "HP_REPLICA_COPIES"
# The sides of a comparison run in turns. A turn's walks on a cluster that replicates let
# changes go unheld, put up to WALKED_PUT_S later (a person's walk done): the next turn
# starts once they are, so that no side's turn pays for them.
TURNS = 4
TURN_GAP_S = WALKED_PUT_S + 0.5


class Reporter:
    """Where a benchmark says what it does: ``step`` lines and one progress bar at a time."""

    def step(self, text: str) -> None:
        pass

    def progress(self, label: str, total: int) -> Callable[[int], None]:
        """A bar of ``total``; call the returned function with the count done so far."""
        return lambda done: None

    def done(self) -> None:
        pass


def _start_everywhere(
    cluster: BenchCluster,
    kind: str,
    prefix: str,
    count: int,
    callers: int,
    tick: Callable[[], None] | None = None,
    offset: int = 0,
) -> tuple[float, int]:
    """``count`` workers of ``kind`` named <prefix><offset + 1>..., each sidecar starting
    a third; the seconds it took and how many failed."""
    per = -(-count // len(cluster.sidecars))
    calls = []
    for i, sidecar in enumerate(cluster.sidecars):
        first, last = offset + i * per + 1, offset + min(count, (i + 1) * per)
        if first <= last:
            calls.append(
                (
                    sidecar,
                    "hp_bench_driver",
                    "start_names",
                    [Atom(kind), prefix, first, last, callers],
                )
            )
    t0 = time.perf_counter()
    results = cluster.on_each(calls, tick)
    return time.perf_counter() - t0, sum(int(r[1]) for r in results)


def fill_workers(
    cluster: BenchCluster,
    report: Reporter,
    kind: str,
    prefix: str,
    count: int,
    base: int = 0,
    offset: int = 0,
) -> tuple[float, int]:
    """Starts workers with a progress bar; ``base`` names are in the registry already."""
    plural = "people" if kind == "person" else f"{kind}s"
    bar = report.progress(f"starting {count:,} {plural}", count)
    seconds, failed = _start_everywhere(
        cluster,
        kind,
        prefix,
        count,
        CALLERS_PER_SIDECAR,
        lambda: bar(max(0, cluster.names_held() - base)),
        offset,
    )
    bar(count)
    return seconds, failed


# -- 1. scale ---------------------------------------------------------------------------------


def _settle(cluster: BenchCluster, report: Reporter, settle: bool) -> None:
    if settle:
        report.step("waiting until the registries have settled the new ring")
        waited = cluster.wait_settled()
        report.step(f"settled after {waited:.1f} s")
    else:
        time.sleep(1.0)


def bench_scale(
    workdir: Path, driver: DriverBuild, report: Reporter, sizes: list[int], settle: bool = True
) -> dict[str, Any]:
    rows = []
    for size in sizes:
        report.step(f"scale: {size:,} processes on a fresh 3-pod cluster")
        with bench_cluster(workdir, driver, log=report.step) as cluster:
            _settle(cluster, report, settle)
            before = cluster.rss()
            cpu_before = cluster.cpu_seconds()
            rooms = size // 2
            people = size - rooms
            room_s, room_failed = fill_workers(cluster, report, "room", "r", rooms)
            person_s, person_failed = fill_workers(cluster, report, "person", "p", people, rooms)
            after = cluster.rss()
            cpu_after = cluster.cpu_seconds()
            held = cluster.names_held()
            hosted = cluster.python_processes()
            total_s = room_s + person_s
            py_delta = sum(after[n] - before.get(n, 0) for n in cluster.python_nodes)
            beam_delta = sum(after[n] - before.get(n, 0) for n in cluster.sidecars)
            py_cpu = sum(cpu_after[n] - cpu_before.get(n, 0) for n in cluster.python_nodes)
            beam_cpu = sum(cpu_after[n] - cpu_before.get(n, 0) for n in cluster.sidecars)
            row: dict[str, Any] = {
                "processes": size,
                "nodes": cluster.sidecars + cluster.python_nodes,
                "registered": held,
                "failed": room_failed + person_failed,
                "seconds": round(total_s, 2),
                "per_second": round(size / total_s, 1),
                "rooms_per_second": round(rooms / room_s, 1) if rooms else None,
                "people_per_second": round(people / person_s, 1) if people else None,
                "python_processes": {node_label(k): v for k, v in hosted.items()},
                "rss_before": {node_label(k): v for k, v in before.items()},
                "rss_after": {node_label(k): v for k, v in after.items()},
                "python_bytes_per_process": round(py_delta / size, 1),
                "sidecar_bytes_per_process": round(beam_delta / size, 1),
                # CPU of the cluster's own processes: what one start costs whatever else
                # runs on the machine at the same time.
                "python_cpu_us_per_process": round(py_cpu / size * 1e6, 1),
                "sidecar_cpu_us_per_process": round(beam_cpu / size * 1e6, 1),
                "cluster_cpu_share": round((py_cpu + beam_cpu) / total_s / CPUS, 3),
            }
            if size == sizes[0]:
                report.step("scale: where the time of one registration goes")
                row["stages_us"] = _stages(cluster, min(3000, max(300, size)))
            rows.append(row)
    return {"sizes": rows}


def _stages(cluster: BenchCluster, count: int) -> dict[str, dict[str, float]]:
    """Where a registration's time and CPU go.

    ``callers_1``/``callers_64``: mean microseconds of wall time per step, steps in turn.
    ``cpu_us``: CPU microseconds (all six nodes together) per operation of each step run
    alone ``count`` times from 64 callers on one sidecar, and the whole registration.
    """
    out: dict[str, dict[str, float]] = {}
    for callers, n in ((1, max(30, count // 10)), (CALLERS_PER_SIDECAR, count)):
        stages = cluster.on(
            cluster.sidecars[0], "hp_bench_driver", "stages", [f"stage{callers}_", 1, n, callers]
        )
        out[f"callers_{callers}"] = {k.name: round(float(v), 1) for k, v in stages.items()}
    cpu: dict[str, float] = {}
    for step in ("lookup_miss", "python_start", "register_beam", "register_join", "full"):
        before = sum(cluster.cpu_seconds().values())
        if step == "full":
            cluster.on(
                cluster.sidecars[0],
                "hp_bench_driver",
                "start_names",
                [Atom("room"), "cpufull", 1, count, CALLERS_PER_SIDECAR],
            )
        else:
            cluster.on(
                cluster.sidecars[0],
                "hp_bench_driver",
                "stage_ops",
                [Atom(step), f"cpu{step}", 1, count, CALLERS_PER_SIDECAR],
            )
        cpu[step] = (sum(cluster.cpu_seconds().values()) - before) / count * 1e6
    cpu["join"] = cpu.pop("register_join") - cpu["register_beam"]
    out["cpu_us"] = {k: round(v, 1) for k, v in cpu.items()}
    return out


# -- 2. calls ---------------------------------------------------------------------------------


def bench_calls(
    workdir: Path,
    driver: DriverBuild,
    report: Reporter,
    count: int,
    concurrency: int,
    turns: int = TURNS,
) -> dict[str, Any]:
    """The plain figures at the top level, the TLS ones under ``tls``, and TLS's rate over
    plain's under ``tls_vs_plain``: two clusters up at once, called in turns."""
    with ExitStack() as stack:
        targets = {tls: _calls_target(stack, workdir, driver, report, tls) for tls in (False, True)}
        report.step(
            f"calls: {count:,} sequential, then {count:,} from {concurrency} callers, to each "
            f"worker, plain and TLS in {turns} turns"
        )
        totals: dict[tuple[bool, str, str], Loop] = {}
        for share in _shares(count, concurrency, turns):
            for tls, (cluster, sidecar) in targets.items():
                out = cluster.runner.run_dir / "calls.out"
                cluster.caller_node(
                    f'hp_bench_driver:calls_main(["{out}", "{sidecar}", "bench_room", '
                    f'"{share}", "{concurrency}"]).',
                    timeout=1200,
                )
                (py_seq, py_conc), (beam_seq, beam_conc) = parse_erlang_term(out.read_text())
                for key, (n, micros, lats) in {
                    (tls, "python", "sequential"): py_seq,
                    (tls, "python", "concurrent"): py_conc,
                    (tls, "beam", "sequential"): beam_seq,
                    (tls, "beam", "concurrent"): beam_conc,
                }.items():
                    totals.setdefault(key, Loop()).add(
                        Loop(done=n, seconds=micros / 1e6, lats=[float(x) for x in lats])
                    )
    plain, tls_figures = (_calls_figures(totals, tls, concurrency) for tls in (False, True))
    return {
        **plain,
        "turns": turns,
        "tls": tls_figures,
        "tls_vs_plain": {
            f"{side}_{mode}": round(
                tls_figures[side][mode]["calls_per_second"] / plain[side][mode]["calls_per_second"],
                2,
            )
            for side in ("python", "beam")
            for mode in ("sequential", "concurrent")
        },
    }


def _calls_target(
    stack: ExitStack, workdir: Path, driver: DriverBuild, report: Reporter, tls: bool
) -> tuple[BenchCluster, str]:
    """A cluster with a Python room and, on the sidecar of the room's own pod, a BEAM
    gen_server, so that both calls cross one distribution hop of the same kind; and that
    sidecar."""
    report.step(
        f"calls ({'TLS' if tls else 'plain'}): a Python room and a BEAM gen_server, called "
        "from a separate erl node"
    )
    cluster = stack.enter_context(bench_cluster(workdir, driver, log=report.step, tls=tls))
    cluster.hp.add_rooms(["bench_room"])
    pid = cluster.hp.rpc("hp_registry", "whereis_name", [(Atom("room"), Atom("bench_room"))])
    sidecar = cluster.sidecars[cluster.python_nodes.index(pid.node.name)]
    cluster.on(sidecar, "hp_bench_driver", "start_echo", [])
    return cluster, sidecar


def _calls_figures(
    totals: dict[tuple[bool, str, str], Loop], tls: bool, concurrency: int
) -> dict[str, Any]:
    result: dict[str, Any] = {"concurrency": concurrency}
    for side in ("python", "beam"):
        result[side] = {}
        for mode in ("sequential", "concurrent"):
            loop = totals[(tls, side, mode)].figures()
            result[side][mode] = {
                "calls": loop["operations"],
                "calls_per_second": loop["per_second"],
                "p50_us": loop["p50_us"],
                "p99_us": loop["p99_us"],
            }
    for mode in ("sequential", "concurrent"):
        result[f"ratio_{mode}"] = round(
            result["beam"][mode]["calls_per_second"] / result["python"][mode]["calls_per_second"],
            2,
        )
    return result


# -- 3. walks ---------------------------------------------------------------------------------


async def _python_walks(
    node: str,
    cookie: str,
    tls: Path | None,
    rooms: list[str],
    people: int,
    count: int,
    concurrency: int,
) -> tuple[float, list[float]]:
    lats: list[float] = []
    counter = iter(range(count))

    async def walker(hp: AsyncHouseParty, seed: int) -> None:
        for i in counter:
            room = rooms[(i * 7 + seed) % len(rooms)]
            t0 = time.perf_counter()
            await hp.walk_into(room, f"w{1 + i % people}")
            lats.append((time.perf_counter() - t0) * 1e6)

    # A few clients (each one distribution connection), the walkers shared among them.
    clients = [AsyncHouseParty(node, cookie, tls=tls) for _ in range(min(4, concurrency))]
    for hp in clients:
        await hp.connect()
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(walker(clients[k % len(clients)], k) for k in range(concurrency)))
        return time.perf_counter() - t0, lats
    finally:
        for hp in clients:
            await hp.close()


# Callers looping on the sidecars (spread over them) in the side-by-side walks and reads.
SIDECAR_CALLERS = (3, 30)
# The reads beside the BEAM baseline, by the name of their request in hp_bench_house:run/7.
READS = {"who_is_in": "who_is_in", "where_is": "where_is", "get_person_room_log": "room_log"}
# The people (w1..) whose logs grow in the walks as logs grow, and how many steps they take:
# few enough that their logs reach thousands of walks (the default keeps 10,000).
LOG_PEOPLE = 30
LOG_STEPS = 4


@dataclass
class Loop:
    """What callers looping on a cluster did, over one run or added up over turns."""

    done: int = 0
    seconds: float = 0.0
    errors: int = 0
    lats: list[float] = field(default_factory=list)
    # The CPU seconds the sidecars and the Python nodes used, when they were measured.
    cpu: dict[str, float] | None = None

    def add(self, other: Loop) -> None:
        self.done += other.done
        self.seconds += other.seconds
        self.errors += other.errors
        self.lats += other.lats
        if other.cpu is not None:
            mine = self.cpu or dict.fromkeys(other.cpu, 0.0)
            self.cpu = {key: mine[key] + used for key, used in other.cpu.items()}

    def figures(self) -> dict[str, Any]:
        """The rate, the latencies and the errors; with the CPU time per operation, the
        callers' own on the sidecars included, when it was measured."""
        figures: dict[str, Any] = {
            "operations": self.done,
            "per_second": round(self.done / self.seconds, 1) if self.seconds else 0.0,
            "p50_us": percentile(self.lats, 50),
            "p99_us": percentile(self.lats, 99),
            "errors": self.errors,
        }
        if self.cpu is not None:
            figures["cpu_us"] = {
                key: round(used / max(self.done, 1) * 1e6, 1) for key, used in self.cpu.items()
            }
        return figures


def run_loop(
    cluster: BenchCluster,
    impl: str,
    op: str,
    rooms: list[str],
    people: int,
    count: int,
    callers: int,
) -> Loop:
    """``count`` operations ``op`` through ``impl`` (beam: the baseline, python: the
    houseparty API), from ``callers`` processes spread over the sidecars, on random rooms
    and people w1..w<people>."""
    sidecars = cluster.sidecars
    calls = []
    for i, sidecar in enumerate(sidecars):
        mine = callers // len(sidecars) + (1 if i < callers % len(sidecars) else 0)
        if mine:
            args = [Atom(impl), Atom(op), [Atom(r) for r in rooms], "w", people]
            calls.append(
                (sidecar, "hp_bench_house", "run", [*args, max(1, count * mine // callers), mine])
            )
    cpu_before = cluster.cpu_seconds()
    answers = cluster.on_each(calls)
    cpu_after = cluster.cpu_seconds()

    def used(nodes: list[str]) -> float:
        return sum(
            cpu_after[n] - cpu_before[n] for n in nodes if n in cpu_before and n in cpu_after
        )

    return Loop(
        done=sum(int(a[0]) for a in answers),
        # The callers of every sidecar start together; the slowest sidecar's time is the run's.
        seconds=max(int(a[1]) for a in answers) / 1e6,
        errors=sum(int(a[3]) for a in answers),
        lats=[float(x) for a in answers for x in a[2]],
        cpu={"sidecars": used(cluster.sidecars), "python": used(cluster.python_nodes)},
    )


def _shares(count: int, callers: int, turns: int) -> list[int]:
    """``count`` operations from ``callers`` in ``turns`` shares (fewer when there are
    fewer operations per caller), each a whole number of operations per caller."""
    per_caller = count // callers
    turns = max(1, min(turns, per_caller))
    return [
        (per_caller // turns + (1 if turn < per_caller % turns else 0)) * callers
        for turn in range(turns)
    ]


def in_turns(
    sides: dict[str, Callable[[int], Loop]],
    count: int,
    callers: int,
    turns: int,
    pause_after: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """``count`` operations of each side, run in ``turns`` turns of a share of them each:
    in each turn every side runs its share while the others wait, so that all sides meet
    the same slow and fast moments of a shared machine, which runs one after the other
    do not. A share is a whole number of operations per caller. After a turn of a side
    in ``pause_after`` (a cluster that puts changes it let go unheld) the next waits
    TURN_GAP_S, so that no side's turn pays for another's. Each side's figures over all
    of its turns."""
    totals = {side: Loop() for side in sides}
    for share in _shares(count, callers, turns):
        for side, run in sides.items():
            totals[side].add(run(share))
            if side in pause_after:
                time.sleep(TURN_GAP_S)
    return {side: loop.figures() for side, loop in totals.items()}


@dataclass(frozen=True)
class _WalksRun:
    """The clusters of one run of the walks benchmark, up at once, and its sizes."""

    with_: BenchCluster  # the default replication
    without: BenchCluster  # no replication
    tls: BenchCluster  # the default replication, over TLS
    report: Reporter
    rooms: list[str]
    people: int
    count: int  # of each kind of walk and read
    concurrency: int  # of the clients
    turns: int


def _growing_logs(run: _WalksRun) -> list[dict[str, Any]]:
    """Walks of the first LOG_PEOPLE people at 30 callers, with replication and without,
    measured as their logs grow: at each step their mean log length, then ``count // 2``
    walks on each cluster in turns; ``count * 4`` more walks between steps."""
    report, rooms, count = run.report, run.rooms, run.count
    callers = SIDECAR_CALLERS[-1]
    people = min(run.people, LOG_PEOPLE)
    clusters = {"with": run.with_, "without": run.without}
    rows = []
    for step in range(LOG_STEPS):
        if step:
            report.step(f"walks: {count * 4:,} more walks of {people} people, logs growing")
            for cluster in clusters.values():
                run_loop(cluster, "python", "walk", rooms, people, count * 4, callers)
            time.sleep(TURN_GAP_S)
        lengths = {
            side: statistics.mean(
                len(cluster.hp.get_person_room_log(f"w{i}")) for i in range(1, people + 1)
            )
            for side, cluster in clusters.items()
        }
        report.step(
            f"walks: {count // 2:,} walks of people with logs of {lengths['with']:,.0f} walks, "
            f"with replication and without, in turns"
        )
        figures = in_turns(
            {
                side: functools.partial(
                    run_loop, cluster, "python", "walk", rooms, people, callers=callers
                )
                for side, cluster in clusters.items()
            },
            count // 2,
            callers,
            run.turns,
            pause_after=("with",),
        )
        rows.append(
            _with_without(
                *({"log_length": round(lengths[side]), **figures[side]} for side in clusters)
            )
        )
    return rows


def _beside(python: dict[str, Any], beam: dict[str, Any]) -> dict[str, float]:
    """The Python workers' rate and p99 as a multiple of the baseline's."""
    return {
        "ratio": round(python["per_second"] / beam["per_second"], 2),
        "p99_ratio": round(python["p99_us"] / beam["p99_us"], 2) if beam["p99_us"] else 0.0,
    }


def _start_baseline(cluster: BenchCluster, rooms: list[str], people: int) -> None:
    """The BEAM baseline's rooms and people, with the Python workers' names and sizes."""
    answers = [
        cluster.on(
            cluster.sidecars[0],
            "hp_bench_house",
            "add_rooms",
            [[Atom(r) for r in rooms], ROOM_MAX_LIMIT],
        )
    ]
    per = -(-people // len(cluster.sidecars))
    answers += cluster.on_each(
        [
            (sc, "hp_bench_house", "add_people", ["w", 1 + i * per, min(people, (i + 1) * per)])
            for i, sc in enumerate(cluster.sidecars)
            if 1 + i * per <= people
        ]
    )
    for answer in answers:
        if answer != Atom("ok"):
            raise ClusterError(f"the BEAM baseline's rooms and people did not start: {answer!r}")


def _beam_side_by_side(run: _WalksRun) -> dict[str, Any]:
    """At each number of callers, in turns: the walks of the BEAM baseline, of the Python
    workers and of the Python workers of the cluster without replication; then the reads
    of the baseline and of the Python workers."""
    report, rooms, people, count, turns = run.report, run.rooms, run.people, run.count, run.turns
    with_ = run.with_
    report.step(f"walks: the BEAM baseline's {len(rooms)} rooms and {people:,} people")
    _start_baseline(with_, rooms, people)
    walks, replication = [], []
    for callers in SIDECAR_CALLERS:
        report.step(
            f"walks: {count:,} walks on the sidecars, {callers} callers, BEAM, Python and "
            f"Python without replication, in {turns} turns"
        )
        sides = {
            "beam": (with_, "beam"),
            "python": (with_, "python"),
            "without": (run.without, "python"),
        }
        figures = in_turns(
            {
                side: functools.partial(
                    run_loop, cluster, impl, "walk", rooms, people, callers=callers
                )
                for side, (cluster, impl) in sides.items()
            },
            count,
            callers,
            turns,
            pause_after=("python",),
        )
        beam, python = figures["beam"], figures["python"]
        walks.append({"callers": callers, "beam": beam, "python": python, **_beside(python, beam)})
        replication.append({"callers": callers, **_with_without(python, figures["without"])})
    reads = []
    for callers in SIDECAR_CALLERS:
        report.step(f"walks: {count:,} of each read on the sidecars, {callers} callers, in turns")
        for read, op in READS.items():
            figures = in_turns(
                {
                    impl: functools.partial(
                        run_loop, with_, impl, op, rooms, people, callers=callers
                    )
                    for impl in ("beam", "python")
                },
                count,
                callers,
                turns,
            )
            beam, python = figures["beam"], figures["python"]
            reads.append(
                {"read": read, "callers": callers, "beam": beam, "python": python}
                | _beside(python, beam)
            )
    return {"sidecar_walks": walks, "reads": reads, "replication": replication}


def _with_without(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    return {"with": on, "without": off, "ratio": round(on["per_second"] / off["per_second"], 2)}


def _python_clients_loop(
    cluster: BenchCluster, rooms: list[str], people: int, concurrency: int, count: int
) -> Loop:
    """``count`` walk_into from Python clients (``AsyncHouseParty``), ``concurrency`` at
    once, through the cluster's first sidecar."""
    seconds, lats = asyncio.run(
        _python_walks(
            cluster.sidecars[0], cluster.cookie, cluster.tls_dir, rooms, people, count, concurrency
        )
    )
    return Loop(done=len(lats), seconds=seconds, lats=lats)


def _erlang_client_loop(
    cluster: BenchCluster, rooms: list[str], people: int, concurrency: int, count: int
) -> Loop:
    """``count`` walk_into from an erl node with ``rpc:call``, ``concurrency`` at once,
    through the cluster's first sidecar."""
    out = cluster.runner.run_dir / "walks.out"
    cluster.caller_node(
        f'hp_bench_driver:walks_main(["{out}", "{cluster.sidecars[0]}", '
        f'"{",".join(rooms)}", "w", "{people}", "{count}", "{concurrency}"]).',
        timeout=1200,
    )
    n, micros, lats = parse_erlang_term(out.read_text())
    return Loop(done=n, seconds=micros / 1e6, lats=[float(x) for x in lats])


def _client_walks(run: _WalksRun) -> dict[str, dict[str, dict[str, Any]]]:
    """walk_into from Python clients and from an erl client (rpc), ``concurrency`` at once,
    on plain distribution and over TLS in turns; per transport, per client."""
    count, concurrency, turns = run.count, run.concurrency, run.turns
    clients = {
        "python": ("Python clients", _python_clients_loop),
        "erlang": ("an erl client (rpc)", _erlang_client_loop),
    }
    result: dict[str, dict[str, dict[str, Any]]] = {"plain": {}, "tls": {}}
    for client, (label, loop) in clients.items():
        run.report.step(
            f"walks: {count:,} walk_into from {label}, {concurrency} at once, "
            f"plain and TLS in {turns} turns"
        )
        figures = in_turns(
            {
                transport: functools.partial(loop, cluster, run.rooms, run.people, concurrency)
                for transport, cluster in (("plain", run.with_), ("tls", run.tls))
            },
            count,
            concurrency,
            turns,
            pause_after=("plain", "tls"),
        )
        for transport, walked in figures.items():
            result[transport][client] = {
                "walks": walked["operations"],
                **{key: walked[key] for key in ("per_second", "p50_us", "p99_us")},
            }
    return result


def bench_walks(
    workdir: Path,
    driver: DriverBuild,
    report: Reporter,
    people: int,
    count: int,
    concurrency: int,
    settle: bool = True,
    turns: int = TURNS,
) -> dict[str, Any]:
    """Three clusters of the same people, up at once: the default replication on plain
    distribution, none, and the default over TLS. The Python workers beside the BEAM
    baseline and their reads, the walk rate without replication, the walks of clients and
    those over TLS (under ``tls``, TLS's rate over plain's under ``tls_vs_plain``), each
    comparison in turns."""
    rooms = [f"hall{i}" for i in range(1, 101)]
    with ExitStack() as stack:

        def cluster(copies: int, tls: bool, label: str) -> BenchCluster:
            report.step(f"walks: a cluster holding {people:,} people, {label}")
            started = stack.enter_context(
                bench_cluster(workdir, driver, log=report.step, replica_copies=copies, tls=tls)
            )
            _settle(started, report, settle)
            started.hp.add_rooms(rooms, max=ROOM_MAX_LIMIT)
            fill_workers(started, report, "person", "w", people, len(rooms))
            return started

        run = _WalksRun(
            with_=cluster(
                DEFAULT_REPLICA_COPIES, False, f"{COPIES_SETTING}={DEFAULT_REPLICA_COPIES}"
            ),
            without=cluster(0, False, f"{COPIES_SETTING}=0"),
            tls=cluster(DEFAULT_REPLICA_COPIES, True, "over TLS"),
            report=report,
            rooms=rooms,
            people=people,
            count=count,
            concurrency=concurrency,
            turns=turns,
        )
        # The reads come before the client walks, so that both sides' people have walked
        # as often when their logs are read; the growing logs last, as they leave some
        # people with long logs.
        side_by_side = _beam_side_by_side(run)
        clients = _client_walks(run)
        growing = _growing_logs(run)
    sizes = {"people": people, "rooms": len(rooms), "concurrency": concurrency}
    return {
        **sizes,
        "turns": turns,
        "sidecar_walks": side_by_side["sidecar_walks"],
        "reads": side_by_side["reads"],
        **clients["plain"],
        "replication": {
            "copies": DEFAULT_REPLICA_COPIES,
            "rows": side_by_side["replication"],
            "growing_logs": {
                "people": min(people, LOG_PEOPLE),
                "callers": SIDECAR_CALLERS[-1],
                "rows": growing,
            },
        },
        "tls": {**sizes, **clients["tls"]},
        "tls_vs_plain": {
            client: round(
                clients["tls"][client]["per_second"] / clients["plain"][client]["per_second"], 2
            )
            for client in ("python", "erlang")
        },
    }


# -- 4. handoff -------------------------------------------------------------------------------


def bench_handoff(
    workdir: Path, driver: DriverBuild, report: Reporter, size: int, settle: bool = True
) -> dict[str, Any]:
    report.step(f"handoff: {size:,} rooms on 3 pods, then pod 3 stops gracefully")
    with bench_cluster(workdir, driver, log=report.step) as cluster:
        _settle(cluster, report, settle)
        fill_s, failed = fill_workers(cluster, report, "room", "h", size)
        dead_python = Atom(cluster.python_nodes[2])
        _, on_pod3 = cluster.on(
            cluster.sidecars[0], "hp_bench_driver", "count_names", [dead_python]
        )
        stop_error: list[BaseException] = []

        def stop() -> None:
            try:
                cluster.runner.stop_pod(3, timeout=600)
            except BaseException as exc:  # reported by the main thread
                stop_error.append(exc)

        bar = report.progress(f"moving the {on_pod3:,} rooms of pod 3", int(on_pod3))
        timeline: list[tuple[float, int]] = []
        stopper = threading.Thread(target=stop)
        cpu_before = cluster.cpu_seconds()
        t0 = time.perf_counter()
        stopper.start()
        moved_s = None
        deadline = t0 + 600
        leaving = Atom(cluster.sidecars[2])
        # Each node's CPU as last read: pod 3's processes may exit before the last name
        # is seen moved, and their CPU is then counted up to the last poll.
        seen = dict(cpu_before)
        while time.perf_counter() < deadline:
            seen.update(cluster.cpu_seconds())
            # Table sizes only: pod 3's registry holds exactly the names not moved yet,
            # for it drops each one once its new owner has committed it.
            total, still_there = cluster.on(
                cluster.sidecars[0], "hp_bench_driver", "count_held", [leaving]
            )
            now = time.perf_counter() - t0
            timeline.append((round(now, 2), int(on_pod3) - int(still_there)))
            bar(int(on_pod3) - int(still_there))
            if still_there == 0 and total >= size - failed:
                moved_s = now
                cpu_after = {**seen, **cluster.cpu_seconds()}
                break
            time.sleep(0.25)
        stopper.join(600)
        stopped_s = time.perf_counter() - t0
        if moved_s is None:
            cpu_after = {**seen, **cluster.cpu_seconds()}
        leaving_nodes = {cluster.sidecars[2], cluster.python_nodes[2]}
        used = {n: cpu_after[n] - cpu_before[n] for n in cpu_after if n in cpu_before}
        cpu_survivors = sum(v for n, v in used.items() if n not in leaving_nodes)
        cpu_leaving = sum(used[n] for n in leaving_nodes) if leaving_nodes <= used.keys() else None

        def per_room_us(cpu_s: float) -> float:
            return round(cpu_s / max(1, int(on_pod3)) * 1e6, 1)

        if stop_error:
            raise stop_error[0]
        report.step("handoff: looking every room up from the surviving pods")
        # Every name, from both survivors at once: registered, on a live process, and
        # not on the stopped pod. (dump() would undercount at this size: its multi_call
        # leaves out the rooms that answer after its 5 s.)
        survivors = cluster.sidecars[:2]
        half = -(-size // 2)
        checks = cluster.on_each(
            [
                (
                    sc,
                    "hp_bench_driver",
                    "check_names",
                    [
                        Atom("room"),
                        "h",
                        1 + i * half,
                        min(size, (i + 1) * half),
                        dead_python,
                        CALLERS_PER_SIDECAR,
                    ],
                )
                for i, sc in enumerate(survivors)
            ]
        )
        answering = sum(int(c[0]) for c in checks)
    return {
        "rooms": size,
        "fill_seconds": round(fill_s, 2),
        "rooms_on_stopped_pod": int(on_pod3),
        "seconds_until_all_held_elsewhere": round(moved_s, 2) if moved_s is not None else None,
        "seconds_until_pod_exited": round(stopped_s, 2),
        "moved_per_second": round(int(on_pod3) / moved_s, 1) if moved_s else None,
        "surviving_pods_cpu_us_per_moved_room": per_room_us(cpu_survivors),
        "stopped_pod_cpu_us_per_moved_room": (
            per_room_us(cpu_leaving) if cpu_leaving is not None else None
        ),
        "rooms_answering_after": answering,
        "rooms_missing_after": sum(int(c[1]) for c in checks),
        "rooms_on_stopped_pod_after": sum(int(c[2]) for c in checks),
        "lost": size - failed - answering,
        "timeline": timeline,
    }


# -- 5. dump ----------------------------------------------------------------------------------


def bench_dump(
    workdir: Path, driver: DriverBuild, report: Reporter, sizes: list[int], settle: bool = True
) -> dict[str, Any]:
    rows = []
    with bench_cluster(workdir, driver, log=report.step) as cluster:
        _settle(cluster, report, settle)
        held = 0
        for size in sizes:
            report.step(f"dump: {size:,} rooms")
            # Rooms d1..d<size>; the earlier sizes' rooms are kept.
            fill_workers(cluster, report, "room", "d", size - held, base=held, offset=held)
            held = size
            python_s = []
            rooms = 0
            for _ in range(3):
                seconds, dumped = timed(cluster.hp.dump)
                python_s.append(seconds)
                rooms = len(dumped)
            cpu_before = cluster.cpu_seconds()
            sidecar_s = [
                float(
                    cluster.on(
                        cluster.sidecars[0], "timer", "tc", [Atom("houseparty"), Atom("dump"), []]
                    )[0]
                )
                / 1e6
                for _ in range(3)
            ]
            cpu_after = cluster.cpu_seconds()
            # Where one dump's work is done: CPU seconds per node (mean of the three).
            cpu_by_node = {
                node_label(n): round((cpu_after[n] - cpu_before[n]) / 3, 2) for n in cpu_after
            }
            rows.append(
                {
                    "rooms": size,
                    "rooms_in_dump": rooms,
                    "python_client_seconds": round(statistics.median(python_s), 3),
                    "on_sidecar_seconds": round(statistics.median(sidecar_s), 3),
                    "cpu_seconds_per_dump": cpu_by_node,
                }
            )
    return {"sizes": rows}


# -- 6. registry ------------------------------------------------------------------------------


def bench_registry(
    workdir: Path, driver: DriverBuild, report: Reporter, names: int, global_names: int
) -> dict[str, Any]:
    report.step(
        f"registry: {names:,} hp_registry and {global_names:,} :global registrations,"
        " from the 3 sidecars at once, 32 callers each"
    )
    with bench_cluster(workdir, driver, log=report.step) as cluster:
        out: dict[str, Any] = {}
        for impl, count in (("hp_registry", names), ("global", global_names)):
            per = count // 3
            tag = Atom("hp" if impl == "hp_registry" else "global")
            micros = cluster.on_each(
                [
                    (sc, "hp_bench_driver", "registry_rate", [tag, f"n{i}_", per, 32])
                    for i, sc in enumerate(cluster.sidecars)
                ]
            )
            seconds = max(int(m) for m in micros) / 1e6
            out[impl] = {
                "names": per * 3,
                "seconds": round(seconds, 2),
                "per_second": round(per * 3 / seconds, 1),
            }
        out["ratio"] = round(out["hp_registry"]["per_second"] / out["global"]["per_second"], 1)
    return out
