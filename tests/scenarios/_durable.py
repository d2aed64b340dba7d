"""A house walked by Python clients and erl clients at once while a pod fails, every walk
recorded, and the house checked afterwards by :mod:`tests.scenarios._checker`.

:class:`DurableHouse` adds the rooms, walks every person once (so that every pod holds
people with a log), then runs :class:`PyWalker` tasks (``AsyncHouseParty``, one per home
sidecar) and erl walker processes (``hp_scenario_walker.erl`` on an erl node in the root
namespace, or in a pod) side by side. Each walker owns its people and walks them one
walk at a time, so the order of a person's walks is the order of their start times. Every
call is one record: who, which room, the answer, and when; nothing is retried, a walker
that cannot reach its sidecar turns to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from houseparty import AsyncHouseParty, DestinationFull, Timeout, Unavailable, UnknownRoom
from houseparty._errors import ApiError, ConnectError
from py_nodes._terms import Atom
from tests.scenarios._checker import Observation, Problem, Read, Walk, check_answers, check_house
from tests.scenarios._house import HouseCluster, RepeatInBackground, report, results_dir
from tests.sim import PodProcess, erl_argv

__all__ = [
    "MAX",
    "PEOPLE",
    "ROOMS",
    "DurableHouse",
    "ErlWalkers",
    "PyWalker",
    "Readers",
    "answer_of",
]

ROOMS = [f"room_{i}" for i in range(30)]
PEOPLE = [f"guest_{i}" for i in range(300)]
MAX = 14  # 420 places for 300 people: rooms fill up, and people still move
CALL_TIMEOUT_S = 20.0
WALKER_SOURCE = Path(__file__).resolve().parent / "hp_scenario_walker.erl"


def answer_of(exc: BaseException) -> str:
    """The kind of answer an exception of the client stands for."""
    if isinstance(exc, DestinationFull):
        return "destination_full"
    if isinstance(exc, UnknownRoom):
        return "unknown_room"
    if isinstance(exc, Unavailable):
        return "unavailable"
    if isinstance(exc, ApiError):
        reason = exc.reason
        if type(reason) is tuple and reason and isinstance(reason[0], Atom):
            return str(reason[0].name)
        return f"error:{reason!r}"[:80]
    if isinstance(exc, Timeout):
        return "timeout"
    if isinstance(exc, ConnectError):
        return "connect"  # no answer: the sidecar went away
    return f"exception:{type(exc).__name__}"


class PyWalker(RepeatInBackground):
    """Random walks of its own ``people`` through ``clients[0]``, turning to the next
    client when one cannot be reached."""

    def __init__(
        self,
        name: str,
        clients: list[AsyncHouseParty],
        people: list[str],
        rooms: list[str],
        seed: int,
    ) -> None:
        self.name = name
        self.clients = list(clients)
        self.people = people
        self.rooms = rooms
        self.rng = random.Random(seed)
        self.walks: list[Walk] = []
        super().__init__()

    async def step(self) -> None:
        answer = await self.walk(self.rng.choice(self.people), self.rng.choice(self.rooms))
        if answer == "connect":
            self.clients.append(self.clients.pop(0))
        if answer not in ("ok", "destination_full"):
            await asyncio.sleep(0.1)

    async def walk(self, person: str, room: str) -> str:
        hp = self.clients[0]
        start = time.time()
        try:
            await hp.walk_into(room, person)
            answer = "ok"
        except Exception as exc:  # every answer is a record
            answer = answer_of(exc)
        self.walks.append(
            Walk(person, room, answer, start, time.time(), f"{self.name}@{hp.sidecar}")
        )
        return answer


@functools.cache
def _walker_ebin() -> Path:
    out = Path(tempfile.mkdtemp(prefix="hp-scenario-walker-"))
    subprocess.run(
        ["erlc", "-o", str(out), str(WALKER_SOURCE)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out


class ErlWalkers:
    """Walker processes on an erl node of their own, in the root namespace (``pod``
    None) or inside a pod; their walks stream in as they are made."""

    def __init__(
        self,
        cluster: HouseCluster,
        walkers: list[tuple[list[str], list[str]]],
        rooms: list[str],
        seed: int,
        pod: int | None = None,
    ) -> None:
        """``walkers``: per walker, its sidecars (the first is its own) and its people."""
        self.walks: list[Walk] = []
        workdir = Path(tempfile.mkdtemp(prefix="hp-walkers-", dir=cluster.sim.log_dir))
        config = workdir / "walkers.config"
        entries = ",".join(
            f"{{{i},[{','.join(repr(s) for s in sidecars)}],[{','.join(people)}],{seed + i}}}"
            for i, (sidecars, people) in enumerate(walkers)
        )
        config.write_text(
            f"{{rooms, [{','.join(rooms)}]}}.\n"
            f"{{timeout, {int(CALL_TIMEOUT_S * 1000)}}}.\n"
            f"{{walkers, [{entries}]}}.\n"
        )
        host = cluster.sim.bridge_ip if pod is None else cluster.pods[pod].ip
        argv = erl_argv(
            f"hpwalk{secrets.token_hex(3)}@{host}",
            cluster.cookie,
            listen_ip=cluster.sim.bridge_ip if pod is None else None,
            net_ticktime=cluster.tick,
            extra=(
                "-hidden",
                "-pa",
                str(_walker_ebin()),
                "-eval",
                f'hp_scenario_walker:main("{config}")',
            ),
        )
        self.proc: PodProcess = (
            cluster.sim.run_host(argv, pipe=True)
            if pod is None
            else cluster.sim.run(pod, argv, pipe=True)
        )
        self._ready = threading.Event()
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"the erl walkers did not start:\n{self.proc.output()[-3000:]}")

    def _read(self) -> None:
        stdout = self.proc.popen.stdout
        assert stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for line in stdout:
                match line.split():
                    case ["W", wid, person, room, answer, t0, t1, sidecar]:
                        self.walks.append(
                            Walk(
                                person,
                                room,
                                answer,
                                int(t0) / 1e6,
                                int(t1) / 1e6,
                                f"erl{wid}@{sidecar}",
                            )
                        )
                    case ["READY"]:
                        self._ready.set()
                    case ["DONE"]:
                        self._done.set()
        self._ready.set()
        self._done.set()

    def stop(self, timeout: float = CALL_TIMEOUT_S + 10) -> None:
        """Stop the walkers after their current walk, and wait for their last lines."""
        stdin = self.proc.popen.stdin
        assert stdin is not None
        with contextlib.suppress(OSError, ValueError):
            stdin.write("stop\n")
            stdin.flush()
        if not self._done.wait(timeout):
            raise RuntimeError(f"the erl walkers did not stop:\n{self.proc.output()[-3000:]}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


class Readers:
    """Python tasks asking ``where_is``, the log and ``who_is_in`` of random existing
    names, over ``clients`` in turn, recording every answer."""

    def __init__(
        self,
        clients: list[AsyncHouseParty],
        people: list[str],
        rooms: list[str],
        tasks: int = 4,
        seed: int = 99,
    ) -> None:
        self.clients = clients
        self.people = people
        self.rooms = rooms
        self.rng = random.Random(seed)
        self.reads: list[Read] = []
        self._count = tasks
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(i)) for i in range(self._count)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _run(self, i: int) -> None:
        hp = self.clients[i % len(self.clients)]
        while not self._stop.is_set():
            person = self.rng.choice(self.people)
            await self._read("where_is", person, hp.where_is(person))
            person = self.rng.choice(self.people)
            await self._read("log", person, hp.get_person_room_log(person))
            room = self.rng.choice(self.rooms)
            await self._read("who_is_in", room, hp.who_is_in(room))

    async def _read(self, what: str, subject: str, call: Any) -> None:
        start = time.time()
        try:
            answer, error = await call, False
        except Exception as exc:  # every answer is a record
            answer, error = answer_of(exc), True
            await asyncio.sleep(0.05)
        self.reads.append(Read(what, subject, answer, start, time.time(), error))


@dataclass
class Outcome:
    """What a scenario saw, for its report and its assertions."""

    walks: list[Walk]
    seen: Observation
    problems: list[Problem]
    figures: dict[str, Any] = field(default_factory=dict)


class DurableHouse:
    """Three pods' house: a Python client per sidecar, the rooms, every person walked
    once, and walkers to start and stop around a failure."""

    def __init__(
        self,
        cluster: HouseCluster,
        people: list[str] = PEOPLE,
        rooms: list[str] = ROOMS,
        max_people: int = MAX,
    ) -> None:
        self.cluster = cluster
        self.people = people
        self.rooms = rooms
        self.max = max_people
        self.clients = [cluster.client(i, timeout=CALL_TIMEOUT_S) for i in range(len(cluster.pods))]
        self.walks: list[Walk] = []
        self.py_walkers: list[PyWalker] = []
        self.erl_walkers: list[ErlWalkers] = []
        self.figures: dict[str, Any] = {}

    async def __aenter__(self) -> DurableHouse:
        for hp in self.clients:
            await hp.connect()
        await self.clients[0].add_rooms(self.rooms, max=self.max)
        await self._everyone_somewhere()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for walker in self.py_walkers:
            with contextlib.suppress(Exception):
                await walker.stop()
        for erl in self.erl_walkers:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(erl.stop)
        for hp in self.clients:
            with contextlib.suppress(Exception):
                await hp.close()

    async def _everyone_somewhere(self) -> None:
        """Walk every person once (into a room with space), recorded like any walk."""
        rng = random.Random(7)
        todo = list(self.people)

        async def one(k: int) -> None:
            walker = PyWalker(
                f"warmup{k}", self.clients[k % 3 :] + self.clients[: k % 3], [], self.rooms, k
            )
            while todo:
                person = todo.pop()
                for _ in range(20):
                    if await walker.walk(person, rng.choice(self.rooms)) == "ok":
                        break
            self.walks += walker.walks

        await asyncio.gather(*(one(k) for k in range(8)))
        missing = {p for p in self.people} - {w.person for w in self.walks if w.answer == "ok"}
        if missing:
            raise RuntimeError(f"people never walked before the failure: {sorted(missing)}")

    def shares(self, parts: int) -> list[list[str]]:
        return [self.people[i::parts] for i in range(parts)]

    def start_walking(
        self,
        py_homes: list[int],
        erl_homes: list[int],
        sidecars: list[int] | None = None,
        people: list[str] | None = None,
        erl_pod: int | None = None,
    ) -> None:
        """A Python walker per entry of ``py_homes`` and an erl walker per entry of
        ``erl_homes`` (the index of its own sidecar), each with its own share of
        ``people``, failing over among ``sidecars`` (default: every pod)."""
        pool = list(range(len(self.clients))) if sidecars is None else sidecars
        shares = [
            (people or self.people)[i :: len(py_homes) + len(erl_homes)]
            for i in range(len(py_homes) + len(erl_homes))
        ]
        seed = 1000 * (len(self.py_walkers) + len(self.erl_walkers) + 1)
        for n, home in enumerate(py_homes):
            order = pool[pool.index(home) :] + pool[: pool.index(home)]
            walker = PyWalker(
                f"py{len(self.py_walkers)}",
                [self.clients[i] for i in order],
                shares[n],
                self.rooms,
                seed + n,
            )
            walker.start()
            self.py_walkers.append(walker)
        if erl_homes:
            specs = []
            for n, home in enumerate(erl_homes):
                order = pool[pool.index(home) :] + pool[: pool.index(home)]
                specs.append(([self.cluster.sidecars[i] for i in order], shares[len(py_homes) + n]))
            self.erl_walkers.append(
                ErlWalkers(self.cluster, specs, self.rooms, seed + 100, pod=erl_pod)
            )

    async def stop_walking(self) -> None:
        for walker in self.py_walkers:
            await walker.stop()
            self.walks += walker.walks
        for erl in self.erl_walkers:
            await asyncio.to_thread(erl.stop)
            self.walks += erl.walks
        self.py_walkers, self.erl_walkers = [], []

    def live_clients(self) -> list[AsyncHouseParty]:
        return [
            hp
            for hp, pod in zip(self.clients, self.cluster.pods, strict=True)
            if pod.sidecar is not None
        ]

    async def every_name_answers(self, clients: list[AsyncHouseParty] | None = None) -> bool:
        """Every room answers ``who_is_in`` and every person ``where_is`` with a room."""
        clients = clients or self.live_clients()
        gate = asyncio.Semaphore(24)

        async def answers(call: Awaitable[object]) -> bool:
            async with gate:
                try:
                    await call
                except Exception:
                    return False
                return True

        async def stands_somewhere(hp: AsyncHouseParty, person: str) -> None:
            # Every person was walked into a room before the failure: a person that
            # answers nowhere has not come back with its state.
            if await hp.where_is(person) is None:
                raise LookupError(person)

        calls: list[Awaitable[object]] = [
            clients[i % len(clients)].who_is_in(r) for i, r in enumerate(self.rooms)
        ]
        calls += [stands_somewhere(clients[i % len(clients)], p) for i, p in enumerate(self.people)]
        results = await asyncio.gather(*(answers(c) for c in calls))
        return all(results)

    async def wait_every_name_answers(
        self,
        within: float,
        clients: list[AsyncHouseParty] | None = None,
    ) -> float | None:
        start = time.monotonic()
        while time.monotonic() - start < within:
            if await self.every_name_answers(clients):
                return time.monotonic() - start
            await asyncio.sleep(0.2)
        return None

    async def wait_settled(self, within: float = 30.0) -> float | None:
        """Until no live sidecar's registry is settling a ring change."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            unsettled = []
            for hp in self.live_clients():
                try:
                    unsettled.append(await hp.rpc("hp_registry_server", "unsettled", []))
                except ConnectError:
                    unsettled.append(True)
            if not any(u in (True, Atom("true")) for u in unsettled):
                return time.monotonic() - start
            await asyncio.sleep(0.3)
        return None

    async def _ask(self, call: Any, tries: int = 10) -> tuple[Any, str | None]:
        """A read of the check, asked again while it errs (names may still be moving)."""
        error = None
        for _ in range(tries):
            try:
                return await call(), None
            except Exception as exc:
                error = answer_of(exc)
                await asyncio.sleep(0.3)
        return None, error

    async def observe(self) -> Observation:
        clients = self.live_clients()
        hp = clients[0]
        dump, error = await self._ask(hp.dump)
        if error is not None:
            raise RuntimeError(f"dump() failed after the failure: {error}")
        where: dict[str, str | None] = {}
        logs: dict[str, list[str]] = {}
        gate = asyncio.Semaphore(16)

        async def person(i: int, p: str) -> None:
            c = clients[i % len(clients)]
            async with gate:
                w, err = await self._ask(functools.partial(c.where_is, p))
                where[p] = f"<{err}>" if err else w
                log, err = await self._ask(functools.partial(c.get_person_room_log, p))
                logs[p] = [f"<{err}>"] if err else [room for _t, room in reversed(log)]

        await asyncio.gather(*(person(i, p) for i, p in enumerate(self.people)))
        return Observation(dump, where, logs, {r: self.max for r in self.rooms})

    async def wait_clean(self, within: float, *, healed_netsplit: bool = False) -> float | None:
        """Until the house passes :func:`check_house`; the seconds it took, or None."""
        start = time.monotonic()
        while True:
            seen = await self.observe()
            if not check_house(
                self.walks, seen, self.rooms, self.people, healed_netsplit=healed_netsplit
            ):
                return time.monotonic() - start
            if time.monotonic() - start > within:
                return None
            await asyncio.sleep(1.0)

    async def check(
        self,
        name: str,
        *,
        healed_netsplit: bool = False,
        reads: list[Read] | None = None,
        window: tuple[float, float] | None = None,
    ) -> Outcome:
        """Observe the house, check it against every recorded walk, write the report."""
        seen = await self.observe()
        problems = check_house(
            self.walks, seen, self.rooms, self.people, healed_netsplit=healed_netsplit
        )
        absent = check_answers(reads or [], self.walks, self.rooms, window)
        if reads is not None or window is not None:
            problems += absent
        answers = Counter(w.answer for w in self.walks)
        by_kind = Counter(p.kind for p in problems)
        figures = {
            **self.figures,
            "walks": len(self.walks),
            "walks_by_answer": dict(answers),
            "walks_by_source": dict(Counter(w.via.split("@")[0][:3] for w in self.walks)),
            "people_with_unanswered_walks": len({w.person for w in self.walks if w.unseen}),
            "unknown_room_answers_any_time": sum(
                1 for p in check_answers([], self.walks, self.rooms)
            ),
            "problems": len(problems),
            "problems_by_kind": dict(by_kind),
            "problems_first_of_each_kind": {
                kind: next(str(p) for p in problems if p.kind == kind)[:600] for kind in by_kind
            },
        }
        if reads is not None:
            figures["reads"] = len(reads)
            figures["reads_by_answer"] = dict(
                Counter(
                    f"{r.what}:{'error:' + str(r.answer) if r.error else 'answered'}" for r in reads
                )
            )
        report(name, figures)
        # Every walk, for a closer look at a failure: person, room, answer, start, end, via.
        with (results_dir() / f"{name}.walks.tsv").open("w") as out:
            for w in sorted(self.walks, key=lambda w: w.start):
                out.write(
                    f"{w.person}\t{w.room}\t{w.answer}\t{w.start:.6f}\t{w.end:.6f}\t{w.via}\n"
                )
        with (results_dir() / f"{name}.problems.txt").open("w") as out:
            out.writelines(f"{p}\n" for p in problems)
        return Outcome(self.walks, seen, problems, figures)
