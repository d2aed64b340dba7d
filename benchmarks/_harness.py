"""``houseparty bench``: the harness that the benchmarks of :mod:`benchmarks._cases` share.

A :class:`BenchCluster` is a local cluster of real pods started for one benchmark: its own
temporary run folder, free ports and a random node-name suffix, so that it never meets a
cluster anyone else runs on the machine, and it is always stopped (also on Ctrl-C).
The Erlang half of the benchmarks, ``hp_bench_driver.erl`` and ``hp_bench_house.erl`` (the
walks' BEAM baseline) beside this module, is compiled with ``erlc`` once per run and loaded
into every sidecar over rpc; the calls and walks benchmarks also run the driver on a separate
``erl -noshell -eval`` caller node.
"""

from __future__ import annotations

import ast
import concurrent.futures
import os
import platform
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from houseparty._client import HouseParty, from_term
from houseparty._errors import ClusterError, PortInUse
from houseparty.cli._localcluster import CLIENT_CERTIFICATE, LocalCluster, PodSpec
from py_nodes._terms import Atom

__all__ = [
    "BenchCluster",
    "DriverBuild",
    "bench_cluster",
    "machine_info",
    "parse_erlang_term",
    "percentile",
]

DRIVER = "hp_bench_driver"
# Every module of the Erlang half, loaded into every sidecar.
MODULES = (DRIVER, "hp_bench_house")
LONG_TIMEOUT_S = 3600.0


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100.0 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2**20
    except OSError:
        pass
    otp = subprocess.run(
        [
            "erl",
            "-noshell",
            "-eval",
            'io:format("~s/~s", [erlang:system_info(otp_release), erlang:system_info(version)]),'
            " halt().",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_gib, 1),
        "otp_erts": otp,
        "python": platform.python_version(),
        "load_average_at_start": [float(x) for x in load],
        "commit": commit or None,
    }


def parse_erlang_term(text: str) -> Any:
    """The ``{Count, Micros, [Lat]}`` tuples and lists the caller node writes with ``~w``
    (``~p`` would print a list of latencies that are all printable codes as a string)."""
    body = text.strip().rstrip(".")
    return ast.literal_eval(body.replace("{", "(").replace("}", ")"))


@dataclass(frozen=True)
class DriverBuild:
    """The compiled Erlang half: ``ebin`` to put on a code path, ``beams`` (by module) to
    load."""

    ebin: Path
    beams: dict[str, bytes]

    @classmethod
    def compile(cls, workdir: Path) -> DriverBuild:
        ebin = workdir / "ebin"
        ebin.mkdir(parents=True, exist_ok=True)
        beams = {}
        for module in MODULES:
            source = Path(__file__).resolve().parent / f"{module}.erl"
            done = subprocess.run(
                ["erlc", "-o", str(ebin), str(source)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise ClusterError(f"erlc {source} failed: {done.stdout}{done.stderr}")
            beams[module] = (ebin / f"{module}.beam").read_bytes()
        return cls(ebin, beams)


class BenchCluster:
    """A running benchmark cluster: its pods, a client on pod 1, and rpc to any sidecar."""

    def __init__(self, runner: LocalCluster, cookie: str, driver: DriverBuild) -> None:
        self.runner = runner
        self.cookie = cookie
        self.driver = driver
        self.specs: list[PodSpec] = [spec for spec, _ in runner.pods()]
        #: The client certificate's folder when the cluster runs TLS distribution.
        self.tls_dir = runner.tls_dir(CLIENT_CERTIFICATE) if runner.state().tls else None
        self.hp = HouseParty(
            self.specs[0].sidecar_node, cookie, timeout=LONG_TIMEOUT_S, tls=self.tls_dir
        )
        for spec in self.specs:
            self.load_driver(spec.sidecar_node)

    @property
    def sidecars(self) -> list[str]:
        return [s.sidecar_node for s in self.specs]

    @property
    def python_nodes(self) -> list[str]:
        return [s.python_node for s in self.specs]

    def load_driver(self, sidecar: str) -> None:
        for module, beam in self.driver.beams.items():
            filename = [ord(c) for c in f"{module}.beam"]
            self.on(sidecar, "code", "load_binary", [Atom(module), filename, beam])

    def on(self, sidecar: str, module: str, function: str, args: list[Any]) -> Any:
        """``erpc:call(Sidecar, M, F, A)`` through the client's sidecar, no time limit."""
        return self.hp.rpc(
            "erpc", "call", [Atom(sidecar), Atom(module), Atom(function), args, Atom("infinity")]
        )

    def on_each(
        self,
        calls: list[tuple[str, str, str, list[Any]]],
        progress: Callable[[], None] | None = None,
    ) -> list[Any]:
        """The calls at the same time (one thread each); ``progress`` runs every 0.5 s."""
        pool = concurrent.futures.ThreadPoolExecutor(len(calls))
        try:
            futures = [pool.submit(self.on, *call) for call in calls]
            while not all(f.done() for f in futures):
                if progress is not None:
                    progress()
                concurrent.futures.wait(futures, timeout=0.5)
            return [f.result() for f in futures]
        finally:
            # On Ctrl-C the calls are still running: leave them, the cluster goes down next.
            pool.shutdown(wait=False, cancel_futures=True)

    def wait_settled(self, timeout: float = 45.0) -> float:
        """Waits until no sidecar's registry is settling a ring change; the seconds waited.

        For a while after its ring changed (the cluster just formed), a registry answers a
        lookup that misses by asking every node, which makes each new name cost more CPU;
        the benchmarks that create names measure the steady state."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not any(
                self.on(sc, "hp_registry_server", "unsettled", []) in (True, Atom("true"))
                for sc in self.sidecars
            ):
                break
            time.sleep(0.5)
        return time.monotonic() - t0

    def names_held(self) -> int:
        """Names in the registry over every sidecar that answers."""
        total = 0
        for sidecar in self.sidecars:
            try:
                info = self.on(sidecar, "hp_registry_server", "info", [])
            except Exception:  # a stopped pod holds nothing
                continue
            total += int(info[Atom("names")])
        return total

    def rss(self) -> dict[str, int]:
        """RSS in bytes of every live node's OS process, by node name."""
        out: dict[str, int] = {}
        for spec, pod in self.runner.pods():
            for node, pid in (
                (spec.sidecar_node, pod.sidecar_pid),
                (spec.python_node, pod.python_pid),
            ):
                if pid is not None:
                    rss = _rss_of(pid)
                    if rss is not None:
                        out[node] = rss
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) every live node's OS process has used so far."""
        out: dict[str, float] = {}
        for spec, pod in self.runner.pods():
            for node, pid in (
                (spec.sidecar_node, pod.sidecar_pid),
                (spec.python_node, pod.python_pid),
            ):
                if pid is not None:
                    cpu = _cpu_of(pid)
                    if cpu is not None:
                        out[node] = cpu
        return out

    def python_processes(self) -> dict[str, int]:
        """Processes each live Python node hosts, as its ``hp_workers`` counts them."""
        out: dict[str, int] = {}
        for sidecar, python in zip(self.sidecars, self.python_nodes, strict=True):
            try:
                server = (Atom("hp_workers"), Atom(python))
                mem = self.on(sidecar, "gen_server", "call", [server, Atom("memory"), 10000])
            except Exception:  # a stopped pod hosts nothing
                continue
            out[python] = int(from_term(mem)["processes"])
        return out

    def caller_node(self, eval_expr: str, timeout: float) -> None:
        """Runs ``eval_expr`` on a fresh hidden ``erl`` node that has the driver loaded."""
        name = f"hpbenchcaller_{secrets.token_hex(4)}@127.0.0.1"
        env = dict(os.environ, HOME=str(self.runner.run_dir / "home"))  # the cookie lives there
        tls: list[str] = []
        if self.tls_dir is not None:
            tls = ["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(self.tls_dir / "dist.conf")]
        done = subprocess.run(
            [
                "erl",
                "-noshell",
                "-noinput",
                "-hidden",
                *tls,
                "-name",
                name,
                "-pa",
                str(self.driver.ebin),
                "-eval",
                eval_expr,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"the erl caller node failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
            )

    def close(self) -> None:
        self.hp.close()


def _rss_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cpu_of(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_base(pods: int) -> int:
    # Below the kernel's ephemeral ports (32768+): a readiness probe of a port nobody
    # listens on yet could otherwise connect to itself.
    return random.randrange(20000, 32000, 3 * pods + 5)


@contextmanager
def bench_cluster(
    workdir: Path,
    driver: DriverBuild,
    pods: int = 3,
    log: Callable[[str], None] | None = None,
    replica_copies: int | None = None,
    tls: bool = False,
) -> Iterator[BenchCluster]:
    """A fresh cluster of ``pods`` pods for one benchmark, stopped however the block ends;
    ``replica_copies`` sets its ``HP_REPLICA_COPIES`` (None: the product's default); with
    ``tls``, its distribution runs over TLS (``houseparty up --tls``)."""
    run_dir = Path(tempfile.mkdtemp(prefix="cluster-", dir=workdir))
    runner = LocalCluster(run_dir)
    cookie = "bench_" + secrets.token_hex(8)
    tag = "_b" + secrets.token_hex(3)
    for attempt in range(5):
        try:
            runner.up(
                pods=pods,
                cookie=cookie,
                base_port=_free_base(pods),
                tag=tag,
                timeout=120,
                replica_copies=replica_copies,
                tls=tls,
            )
            break
        except PortInUse:
            if attempt == 4:
                raise
    cluster: BenchCluster | None = None
    try:
        cluster = BenchCluster(runner, cookie, driver)
        yield cluster
    finally:
        if log is not None:
            log("stopping the benchmark cluster")
        # Killed rather than drained: a graceful stop of the last pods would hand every
        # name around once more, which measures nothing and can take minutes.
        for spec in [s for s, _ in _pods_or_none(runner)]:
            with suppress(ClusterError):
                runner.kill_pod(spec.index)
        with suppress(ClusterError):
            runner.down(timeout=60)
        if cluster is not None:
            # Its peers are gone; nothing of it can fail that matters now.
            with suppress(Exception):
                cluster.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def _pods_or_none(runner: LocalCluster) -> list[tuple[PodSpec, object]]:
    try:
        return list(runner.pods())
    except ClusterError:
        return []


def node_label(node: str) -> str:
    """``sidecar1_b1a2b3c@127.0.0.1`` -> ``sidecar1``."""
    return re.sub(r"_b[0-9a-f]{6}$", "", node.split("@")[0])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result
