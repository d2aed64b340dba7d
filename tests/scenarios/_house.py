"""HouseParty pods in network namespaces, clients walking people, and what to check after.

:class:`HouseCluster` runs real pods on a :class:`tests.sim.PodCluster`: in each pod's
namespace a sidecar ``erl`` (``sidecar@<pod ip>``) and a Python node ``python -m
houseparty.pod`` (``py@<pod ip>``), configured only by the environment contract of
``deploy/README.md`` (with a short ``HP_NET_TICKTIME``), each on its pod's own epmd.
Clients live in the root namespace as ``hpclient_<hex>@<bridge ip>`` and register with
the root namespace's epmd.

:class:`Walker` walks its own share of the people into random rooms through one sidecar,
retrying transient refusals (sidecar unreachable, name between pods) for a bounded time,
and keeps what a user would need to check the outcome: every walk that returned ok, in
order per person, and every error and retry with its duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from houseparty import AsyncHouseParty, DestinationFull, UnknownRoom
from houseparty._errors import ApiError, ConnectError
from py_nodes._terms import Atom
from tests.sim import ErlShell, Pod, PodCluster, PodProcess, erl_argv

__all__ = [
    "MAX_PEOPLE",
    "PEOPLE",
    "ROOMS",
    "TICK",
    "House",
    "HouseCluster",
    "RepeatInBackground",
    "Snapshot",
    "Walker",
    "WalkerStats",
    "check_invariants",
    "check_walks",
    "local_names",
    "lost_log_entries",
    "placement",
    "report",
    "results_dir",
    "snapshot",
    "total",
    "wait_for",
]

TICK = 4  # net_ticktime of every erl node here: a silent peer is down after 4..5 s
SIDECAR_PORT = 9100
PYTHON_PORT = 9101
HEALTH_PORT = 8080
REPO = Path(__file__).resolve().parents[2]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Log = list[tuple[datetime, str]]


def sidecar_ebin() -> Path:
    env = os.environ.get("HP_SIDECAR_EBIN")
    return Path(env) if env else REPO / "_build" / "default" / "lib" / "houseparty_sidecar" / "ebin"


@dataclass
class HousePod:
    pod: Pod
    sidecar: PodProcess | None = None
    python: PodProcess | None = None

    @property
    def ip(self) -> str:
        return self.pod.ip

    @property
    def sidecar_node(self) -> str:
        return f"sidecar@{self.pod.ip}"

    @property
    def python_node(self) -> str:
        return f"py@{self.pod.ip}"


class HouseCluster:
    """HouseParty pods on a pod simulator cluster; every process goes with its teardown."""

    def __init__(self, sim: PodCluster, tick: int = TICK) -> None:
        self.sim = sim
        self.tick = tick  # net_ticktime of every node of this cluster, clients included
        self.cookie = "hp_" + secrets.token_hex(8)
        self.pods = [HousePod(p) for p in sim.pods]
        self._probes: dict[int, ErlShell] = {}

    @property
    def sidecars(self) -> list[str]:
        return [p.sidecar_node for p in self.pods]

    def env(self, i: int) -> dict[str, str]:
        pod = self.pods[i]
        return {
            "HOUSEPARTY_COOKIE": self.cookie,
            "POD_IP": pod.ip,
            "HP_SIDECAR_NODE": pod.sidecar_node,
            "HP_PYTHON_NODE": pod.python_node,
            "HP_SIDECAR_DIST_PORT": str(SIDECAR_PORT),
            "HP_PYTHON_DIST_PORT": str(PYTHON_PORT),
            "HP_HEALTH_PORT": str(HEALTH_PORT),
            "HP_CLUSTER_STRATEGY": "epmd",
            "HP_CLUSTER_HOSTS": ",".join(self.sidecars),
            "HP_POLL_INTERVAL_MS": "1000",
            "HP_NET_TICKTIME": str(self.tick),
            # The cookie stays out of argv.
            "ERL_FLAGS": f"-setcookie {self.cookie}",
            "PYTHONPATH": str(REPO),
        }

    def start(self, i: int, timeout: float = 30.0) -> None:
        """Start pod ``i`` in the order the kubelet keeps with a native sidecar: the
        sidecar, and once its startup probe (``/healthz``) answers, the Python node.
        Returns without waiting for the pod to be ready."""
        self.start_sidecar(i, timeout)
        self.start_python(i)

    def start_sidecar(self, i: int, timeout: float = 30.0) -> None:
        """Start pod ``i``'s sidecar and wait for its ``/healthz``."""
        pod = self.pods[i]
        sidecar = [
            "erl",
            "-name",
            pod.sidecar_node,
            "-noshell",
            "-noinput",
            "+t",
            "5000000",
            "-kernel",
            "inet_dist_listen_min",
            str(SIDECAR_PORT),
            "inet_dist_listen_max",
            str(SIDECAR_PORT),
            # as the release's vm.args has it
            "-kernel",
            "prevent_overlapping_partitions",
            "false",
            "-pa",
            str(sidecar_ebin()),
            "-eval",
            "{ok, _} = application:ensure_all_started(houseparty_sidecar)",
        ]
        pod.sidecar = self.sim.run(pod.pod, sidecar, self.env(i))
        deadline = time.monotonic() + timeout
        while not self._probe(i, "healthz"):
            if not pod.sidecar.alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"pod {i}: the sidecar did not come up:\n" + pod.sidecar.output()[-3000:]
                )
            time.sleep(0.1)

    def start_python(self, i: int) -> None:
        """Start pod ``i``'s Python node; returns without waiting for it."""
        pod = self.pods[i]
        pod.python = self.sim.run(pod.pod, [sys.executable, "-m", "houseparty.pod"], self.env(i))

    def ready(self, i: int) -> bool:
        """The sidecar's ``/readyz``: joined, and its Python node connected."""
        return self._probe(i, "readyz")

    def _probe(self, i: int, path: str) -> bool:
        url = f"http://{self.pods[i].ip}:{HEALTH_PORT}/{path}"
        try:
            with _NO_PROXY.open(url, timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, indices: list[int], timeout: float = 60.0) -> float:
        """Wait until every pod of ``indices`` is ready; returns the seconds it took."""
        start = time.monotonic()
        pending = set(indices)
        while pending:
            for i in list(pending):
                pod = self.pods[i]
                for proc in (pod.sidecar, pod.python):
                    if proc is not None and not proc.alive():
                        raise RuntimeError(
                            f"pod {i}: {proc.argv[0]} exited:\n" + proc.output()[-3000:]
                        )
                if self.ready(i):
                    pending.discard(i)
            if pending:
                if time.monotonic() - start > timeout:
                    raise TimeoutError(
                        f"pods {sorted(pending)} not ready after {timeout} s:\n"
                        + self.logs(min(pending))
                    )
                time.sleep(0.2)
        return time.monotonic() - start

    def start_all(self) -> None:
        for i in range(len(self.pods)):
            self.start(i)
        self.wait_ready(list(range(len(self.pods))), timeout=90)

    def stop(self, i: int, timeout: float = 60.0) -> float:
        """Stop pod ``i`` as Kubernetes does: SIGTERM to the Python node, which drains
        through its sidecar, then SIGTERM to the sidecar. Returns the seconds it took."""
        pod = self.pods[i]
        start = time.monotonic()
        for proc in (pod.python, pod.sidecar):
            if proc is None:
                continue
            proc.signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.signal(signal.SIGKILL)
                proc.wait(10)
                raise RuntimeError(
                    f"pod {i}: {proc.argv[0]} ignored SIGTERM for {timeout} s:\n"
                    + proc.output()[-3000:]
                ) from None
            if status != 0:
                raise RuntimeError(
                    f"pod {i}: {proc.argv[0]} exited with {status}:\n" + proc.output()[-3000:]
                )
        pod.python = pod.sidecar = None
        return time.monotonic() - start

    def kill(self, i: int) -> None:
        """SIGKILL everything in pod ``i``, its epmd included."""
        self.sim.kill(i)
        self.pods[i].python = self.pods[i].sidecar = None
        self._probes.pop(i, None)

    def kill_sidecar(self, i: int) -> None:
        """SIGKILL pod ``i``'s sidecar alone (its process group); the Python node and the
        pod's epmd live on."""
        self._kill_one(i, "sidecar")

    def kill_python(self, i: int) -> None:
        """SIGKILL pod ``i``'s Python node alone, as an OOM kill of its container."""
        self._kill_one(i, "python")

    def _kill_one(self, i: int, which: str) -> None:
        pod = self.pods[i]
        proc = pod.sidecar if which == "sidecar" else pod.python
        if proc is None:
            raise RuntimeError(f"pod {i} runs no {which}")
        proc.signal(signal.SIGKILL)
        proc.wait(10)
        setattr(pod, which, None)

    def pause_sidecar(self, i: int) -> None:
        """SIGSTOP pod ``i``'s sidecar (its process group): alive, and silent."""
        self._signal_group(i, signal.SIGSTOP)

    def resume_sidecar(self, i: int) -> None:
        self._signal_group(i, signal.SIGCONT)

    def _signal_group(self, i: int, sig: int) -> None:
        proc = self.pods[i].sidecar
        if proc is None or not proc.alive():
            raise RuntimeError(f"pod {i} runs no sidecar")
        os.killpg(proc.pid, sig)

    def cut(self, i: int) -> None:
        self.sim.cut(i)

    def heal(self, i: int) -> None:
        self.sim.heal(i)

    def logs(self, i: int) -> str:
        pod = self.pods[i]
        parts = []
        for what, proc in (("sidecar", pod.sidecar), ("python", pod.python)):
            if proc is not None:
                parts.append(f"--- pod {i} {what} ({proc.log_path}) ---\n{proc.output()[-3000:]}")
        return "\n".join(parts)

    def client(self, i: int, timeout: float = 30.0) -> AsyncHouseParty:
        hp = AsyncHouseParty(
            self.sidecars[i], self.cookie, timeout=timeout, client_host=self.sim.bridge_ip
        )
        # The client notices a silent sidecar as fast as the sidecars notice each other.
        hp._node.net_ticktime = self.tick
        return hp

    def probe(self, i: int) -> ErlShell:
        """An erl node inside pod ``i``'s namespace (it sees its pod when the pod is cut)."""
        if i not in self._probes:
            pod = self.pods[i]
            argv = erl_argv(
                f"probe{secrets.token_hex(3)}@{pod.ip}",
                self.cookie,
                net_ticktime=self.tick,
                shell=True,
            )
            shell = ErlShell(self.sim.run(pod.pod, argv, pipe=True))
            shell.wait_started()
            self._probes[i] = shell
        return self._probes[i]

    def probe_registered(self, i: int) -> dict[str, str]:
        """``hp_registry:registered()`` as pod ``i``'s sidecar sees it: name -> node of
        the pid, asked from inside the pod."""
        text = self.probe(i).eval(
            "[{K, node(P)} || {K, P} <- rpc:call('"
            + self.sidecars[i]
            + "', hp_registry, registered, [])]"
        )
        return _parse_placement(text)

    def probe_walk(
        self, i: int, people: list[str], rooms: list[str], seconds: float, seed: int
    ) -> ProbeWalks:
        """Random walks through pod ``i``'s sidecar from inside the pod, for ``seconds``
        (blocking: run it in a thread)."""
        expr = (
            f"S = '{self.sidecars[i]}', People = [{','.join(people)}], "
            f"Rooms = [{','.join(rooms)}], rand:seed(exsss, {{{seed}, 7, 11}}), "
            f"End = erlang:monotonic_time(millisecond) + {int(seconds * 1000)}, "
            "Pick = fun(L) -> lists:nth(rand:uniform(length(L)), L) end, "
            "Kind = fun(ok) -> ok; ({error, {E, _}}) -> E; ({error, E}) -> E; "
            "({badrpc, _}) -> badrpc; (_) -> other end, "
            "Walk = fun W(Acc) -> case erlang:monotonic_time(millisecond) > End of "
            "true -> lists:reverse(Acc); false -> P = Pick(People), R = Pick(Rooms), "
            "Res = rpc:call(S, houseparty, walk_into, [R, P], 20000), "
            "W([{P, R, Kind(Res)} | Acc]) end end, Walk([])"
        )
        text = self.probe(i).eval(expr, timeout=seconds + 60)
        walks = ProbeWalks()
        for person, room, outcome in re.findall(r"\{(\w+),(\w+),(\w+)\}", text):
            walks.outcomes[outcome] += 1
            if outcome == "ok":
                walks.ok_walks.setdefault(person, []).append(room)
        return walks


@dataclass
class ProbeWalks:
    """What walks from inside a pod gave: outcome counts, and the ok walks in order."""

    outcomes: Counter[str] = field(default_factory=Counter)
    ok_walks: dict[str, list[str]] = field(default_factory=dict)


def _parse_placement(text: str) -> dict[str, str]:
    found = re.findall(r"\{\{(\w+),(\w+)\},'([^']+)'\}", text)
    return {f"{kind}:{name}": node for kind, name, node in found}


# -- walking -------------------------------------------------------------------------------


def _transient(exc: Exception) -> str | None:
    """The kind of a refusal worth retrying (the cluster is moving names), else None."""
    if isinstance(exc, ConnectError):
        return "connect"
    if isinstance(exc, UnknownRoom):
        return "unknown_room"  # every room exists: its name is between pods
    if isinstance(exc, ApiError):
        reason = exc.reason
        if type(reason) is tuple and reason and reason[0] == Atom("unavailable"):
            return "unavailable"
    return None


@dataclass
class WalkerStats:
    """What one walker saw. Times are seconds."""

    walks: int = 0
    ok: int = 0
    refused: int = 0  # destination_full
    gave_up: int = 0  # still failing after the retry deadline
    errors: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    retried_walks: int = 0
    retry_times: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def merge(self, other: WalkerStats) -> None:
        self.walks += other.walks
        self.ok += other.ok
        self.refused += other.refused
        self.gave_up += other.gave_up
        self.errors.update(other.errors)
        self.retries += other.retries
        self.retried_walks += other.retried_walks
        self.retry_times += other.retry_times
        self.unexpected += other.unexpected

    def figures(self) -> dict[str, Any]:
        return {
            "walks": self.walks,
            "ok": self.ok,
            "destination_full": self.refused,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "retries": self.retries,
            "retried_walks": self.retried_walks,
            "max_retry_s": round(max(self.retry_times, default=0.0), 2),
            "gave_up": self.gave_up,
            "unexpected_errors": len(self.unexpected),
        }


class RepeatInBackground:
    """Runs :meth:`step` over and over on the event loop, from :meth:`start` until
    :meth:`stop` (which waits for the step under way)."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.step()

    async def step(self) -> None:
        raise NotImplementedError


class Walker(RepeatInBackground):
    """Random walks of ``people`` (this walker's own) over ``rooms``.

    ``clients[0]`` is the walker's own sidecar; when a sidecar cannot be reached the walker
    turns to the next client, as a client behind a Service would. ``ok_walks[person]``
    lists the rooms of the walks that returned ok, in order; a person with a walk whose
    outcome is unknown (it gave up, or failed unexpectedly) is in ``uncertain``.
    """

    def __init__(
        self,
        clients: list[AsyncHouseParty],
        people: list[str],
        rooms: list[str],
        seed: int,
        retry_for: float = 30.0,
    ) -> None:
        self.clients = clients
        self.people = people
        self.rooms = rooms
        self.rng = random.Random(seed)
        self.retry_for = retry_for
        self.stats = WalkerStats()
        self.ok_walks: dict[str, list[str]] = {p: [] for p in people}
        self.uncertain: set[str] = set()
        self._current = 0
        super().__init__()

    async def step(self) -> None:
        await self.walk_once(self.rng.choice(self.rooms), self.rng.choice(self.people))

    async def walk_once(self, room: str, person: str) -> None:
        stats = self.stats
        stats.walks += 1
        first_failure: float | None = None
        while True:
            try:
                await self.clients[self._current].walk_into(room, person)
            except DestinationFull:
                stats.refused += 1
                break
            except Exception as exc:  # every error is counted; only transient ones retried
                kind = _transient(exc)
                stats.errors[kind or type(exc).__name__] += 1
                if kind is None:
                    stats.unexpected.append(f"{person} -> {room}: {exc!r}")
                    self.uncertain.add(person)
                    break
                if kind == "connect":
                    self._current = (self._current + 1) % len(self.clients)
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                    stats.retried_walks += 1
                if now - first_failure > self.retry_for or self._stop.is_set():
                    stats.gave_up += 1
                    self.uncertain.add(person)
                    break
                stats.retries += 1
                await asyncio.sleep(0.1)
            else:
                stats.ok += 1
                self.ok_walks[person].append(room)
                break
        if first_failure is not None:
            stats.retry_times.append(time.monotonic() - first_failure)


def total(walkers: list[Walker]) -> WalkerStats:
    stats = WalkerStats()
    for w in walkers:
        stats.merge(w.stats)
    return stats


# -- checking ------------------------------------------------------------------------------


@dataclass
class Snapshot:
    dump: dict[str, list[str]]
    logs: dict[str, Log]

    def where(self) -> dict[str, str]:
        """Where each person stands by the rooms' lists."""
        return {p: room for room, inside in self.dump.items() for p in inside}

    def stands(self) -> dict[str, str]:
        """Where each person stands by its own log (the newest entry): what the person
        itself goes by, also while a room is between pods and missing from the dump."""
        return {p: log[0][1] for p, log in self.logs.items() if log}


async def snapshot(hp: AsyncHouseParty, people: list[str]) -> Snapshot:
    dump = await hp.dump()
    logs = {p: await hp.get_person_room_log(p) for p in people}
    return Snapshot(dump, logs)


async def check_invariants(
    hp: AsyncHouseParty, rooms: list[str], people: list[str], max_people: int
) -> list[str]:
    """The seed's rules on the whole house; returns what breaks them (empty: they hold)."""
    problems: list[str] = []
    dump = await hp.dump()
    if sorted(dump) != sorted(rooms):
        problems.append(f"dump has rooms {sorted(dump)}, not {sorted(rooms)}")
    listed: dict[str, str] = {}
    for room, inside in sorted(dump.items()):
        if len(inside) > max_people:
            problems.append(f"{room} holds {len(inside)} people, over its max {max_people}")
        for person in inside:
            if person in listed:
                problems.append(f"{person} is listed in {listed[person]} and in {room}")
            else:
                listed[person] = room
    for person in people:
        where = await hp.where_is(person)
        log = await hp.get_person_room_log(person)
        if where != listed.get(person):
            problems.append(
                f"{person}: where_is says {where}, the rooms list it in {listed.get(person)}"
            )
        newest = log[0][1] if log else None
        if newest != where:
            problems.append(f"{person}: newest log entry {newest}, where_is {where}")
    return problems


def lost_log_entries(before: dict[str, Log], after: dict[str, Log]) -> dict[str, int]:
    """Per person, how many of the entries it had before are not where they were (the
    oldest ones first) afterwards: a log only grows at its newest end."""
    lost: dict[str, int] = {}
    for person, old in before.items():
        new = after.get(person, [])
        tail = new[len(new) - len(old) :] if len(new) >= len(old) else []
        if tail != old:
            kept = sum(1 for a, b in zip(reversed(old), reversed(new), strict=False) if a == b)
            lost[person] = len(old) - kept
    return lost


def check_walks(
    walkers: list[Walker],
    before: Snapshot,
    after: Snapshot,
) -> list[str]:
    """Every walk that returned ok is in the person's log, in order, after what the log
    held before; exactly those walks when no walk of that person had an unknown outcome."""
    problems: list[str] = []
    start_room = before.stands()
    for walker in walkers:
        for person, rooms in walker.ok_walks.items():
            expected: list[str] = []
            current = start_room.get(person)
            for room in rooms:
                if room != current:  # walking into one's own room logs nothing
                    expected.append(room)
                    current = room
            old = before.logs.get(person, [])
            new = after.logs.get(person, [])
            added = [room for _t, room in reversed(new[: len(new) - len(old)])]
            if person in walker.uncertain:
                it = iter(added)
                if not all(room in it for room in expected):
                    problems.append(f"{person}: ok walks {expected} not all in log {added}")
            elif added != expected:
                problems.append(f"{person}: log added {added}, ok walks were {expected}")
    return problems


def results_dir() -> Path:
    env = os.environ.get("HP_SCENARIO_RESULTS")
    path = Path(env) if env else Path(tempfile.gettempdir()) / "hp-scenarios"
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(name: str, figures: dict[str, Any]) -> Path:
    """Print the scenario's figures and write them to ``<results dir>/<name>.json``."""
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str))
    print(f"\n== {name} ==\n{json.dumps(figures, indent=2, sort_keys=True, default=str)}")
    print(f"(written to {path})")
    return path


def partition(people: list[str], parts: int) -> list[list[str]]:
    return [people[i::parts] for i in range(parts)]


async def placement(hp: AsyncHouseParty) -> dict[str, str]:
    """``hp_registry:registered()`` through ``hp``'s sidecar: name -> node of its pid."""
    registered = await hp.rpc("hp_registry", "registered", [])
    return {f"{kind}:{name}": str(pid.node) for (kind, name), pid in registered}


async def local_names(hp: AsyncHouseParty) -> dict[str, Any]:
    """The names ``hp``'s sidecar itself holds: name -> pid."""
    held = await hp.rpc("hp_registry", "local_registered", [])
    return {f"{kind}:{name}": pid for (kind, name), pid in held}


async def wait_for(predicate: Any, within: float, every: float = 0.2) -> float | None:
    """Await ``predicate()`` until true; the seconds it took, or None when it never was."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(ConnectError, ApiError):
            if await predicate():
                return time.monotonic() - start
        if time.monotonic() - start > within:
            return None
        await asyncio.sleep(every)


ROOMS = [f"room_{i}" for i in range(10)]
PEOPLE = [f"guest_{i}" for i in range(60)]
MAX_PEOPLE = 8  # 80 places for 60 people: rooms fill up, and people still move


class House:
    """One client per sidecar, the rooms added, and a walker per client with its own
    third of the people."""

    def __init__(self, cluster: HouseCluster) -> None:
        self.cluster = cluster
        self.clients = [cluster.client(i) for i in range(len(cluster.pods))]
        self.shares = partition(PEOPLE, len(self.clients))
        self._seeds = itertools.count(1)

    async def __aenter__(self) -> House:
        for hp in self.clients:
            await hp.connect()
        await self.clients[0].add_rooms(ROOMS, max=MAX_PEOPLE)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for hp in self.clients:
            await hp.close()

    def walkers(self, homes: list[int] | None = None) -> list[Walker]:
        """A walker per home pod (default: every pod), each failing over to the others."""
        homes = list(range(len(self.clients))) if homes is None else homes
        out = []
        for i in homes:
            order = self.clients[i:] + self.clients[:i]
            out.append(Walker(order, self.shares[i], ROOMS, seed=next(self._seeds)))
        return out

    async def walk_for(self, seconds: float) -> list[Walker]:
        walkers = self.walkers()
        for w in walkers:
            w.start()
        await asyncio.sleep(seconds)
        for w in walkers:
            await w.stop()
        return walkers

    async def invariants(self, via: int) -> list[str]:
        return await check_invariants(self.clients[via], ROOMS, PEOPLE, MAX_PEOPLE)

    async def snapshot(self, via: int) -> Snapshot:
        return await snapshot(self.clients[via], PEOPLE)
