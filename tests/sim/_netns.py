"""Pods with their own IP addresses, as Linux network namespaces.

A :class:`PodCluster` of N pods builds, in the root namespace::

    bridge hp<run>br 10.213.X.1/24
      |-- veth hp<run>h0 <-> eth0 10.213.X.10/24 in namespace hp<run>-pod0
      |-- veth hp<run>h1 <-> eth0 10.213.X.11/24 in namespace hp<run>-pod1
      ...

``<run>`` is random per cluster and X is picked at random among the /24s no interface
uses yet, so parallel runs do not clash. Nothing routes out of 10.213.X.0/24: pods have no
default route and the root namespace does not forward, so all traffic stays between the
pods and the bridge address.

Each pod has its loopback up and its own epmd (port 4369 inside its namespace, started by
:meth:`PodCluster.run` when missing). Processes started with :meth:`PodCluster.run` are
tracked per pod: :meth:`stop` sends them SIGTERM and waits, :meth:`kill` SIGKILLs every
process of the namespace (a crashed pod, epmd included), :meth:`cut` and :meth:`heal`
take the pod's link down and up (a netsplit), and :meth:`teardown` removes every process,
namespace, link and the bridge. Teardown runs on ``with`` exit, from the pytest fixture,
at interpreter exit, and, for a run whose process died without any of those,
:func:`reap_orphans` (called by every new cluster) removes what it left.

Everything needs root and ``ip netns``; :func:`unavailable_reason` says why not.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "Pod",
    "PodCluster",
    "PodProcess",
    "namespaces",
    "reap_orphans",
    "unavailable_reason",
]

log = logging.getLogger(__name__)

STATE_DIR = Path(tempfile.gettempdir()) / "hp-netns-sim"
_PREFIX_NET = "10.213"
_IP = shutil.which("ip") or "/usr/sbin/ip"
_EPMD_PORT = 4369


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_IP, *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why pods cannot be simulated here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    probe = f"hpprobe{secrets.token_hex(3)}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"ip netns is not usable here: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def namespaces() -> set[str]:
    """Names of the network namespaces ``ip netns list`` shows."""
    out = _ip("netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> set[str]:
    out = _ip("-o", "link", "show").stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _namespace_pids(namespace: str) -> set[int]:
    done = _ip("netns", "pids", namespace, check=False)
    return {int(p) for p in done.stdout.split()} if done.returncode == 0 else set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _kill_all(pids: set[int], sig: int = signal.SIGKILL, wait_s: float = 10.0) -> set[int]:
    """Send ``sig`` to each pid; with SIGKILL wait until they are gone. Returns survivors."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + wait_s
    left = {p for p in pids if _alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if _alive(p)}
    return left


@dataclass(frozen=True)
class Pod:
    """One simulated pod: a namespace with one address on the cluster's bridge."""

    index: int
    namespace: str
    ip: str
    host_link: str  # the veth end on the bridge, in the root namespace

    def __str__(self) -> str:
        return f"pod{self.index}({self.ip})"


@dataclass
class PodProcess:
    """A process started in a pod (or, with ``pod`` None, in the root namespace)."""

    pod: Pod | None
    argv: tuple[str, ...]
    popen: subprocess.Popen[str]
    log_path: Path
    infrastructure: bool = False  # the pod's epmd: left alone by stop()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the process, as the kubelet signals a container's main process; SIGKILL
        goes to the whole process group (erl's children included). A SIGTERM to the group
        would also reach erl_child_setup and inet_gethost, and the BEAM then sometimes
        never finishes its own orderly stop."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.killpg(self.popen.pid, sig)
                else:
                    os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def output(self) -> str:
        """What the process wrote to stderr (and stdout unless piped) so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class _Run:
    """What a run created, persisted so that a later run can reap it if this one dies."""

    run_id: str
    bridge: str
    namespaces: list[str]
    links: list[str] = field(default_factory=list)  # root-namespace veth ends
    owner_pid: int = field(default_factory=os.getpid)
    owner_start: str | None = field(default_factory=lambda: _start_time(os.getpid()))

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.run_id}.json"

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.__dict__))

    def owner_alive(self) -> bool:
        return _alive(self.owner_pid) and _start_time(self.owner_pid) == self.owner_start


def _destroy(run: _Run) -> list[str]:
    """Remove what ``run`` created: processes, veth pairs, namespaces, bridge."""
    problems: list[str] = []
    present = namespaces()
    # Links go first and explicitly: a namespace outlives `ip netns del` while sockets
    # of its killed processes still retransmit over a cut link, and its veth with it.
    links = _links()
    for link in run.links:
        if link in links:
            done = _ip("link", "del", link, check=False)
            if done.returncode != 0:
                problems.append(f"ip link del {link}: {done.stderr.strip()}")
    for ns in run.namespaces:
        if ns not in present:
            continue
        survivors = _kill_all(_namespace_pids(ns))
        if survivors:
            problems.append(f"{ns}: processes {sorted(survivors)} survived SIGKILL")
        done = _ip("netns", "del", ns, check=False)
        if done.returncode != 0:
            problems.append(f"ip netns del {ns}: {done.stderr.strip()}")
    if run.bridge in _links():
        done = _ip("link", "del", run.bridge, check=False)
        if done.returncode != 0:
            problems.append(f"ip link del {run.bridge}: {done.stderr.strip()}")
    if not problems:
        run.path.unlink(missing_ok=True)
    return problems


def reap_orphans() -> list[str]:
    """Tear down the runs whose owning process is gone. Returns their run ids."""
    reaped: list[str] = []
    if not STATE_DIR.is_dir():
        return reaped
    for path in STATE_DIR.glob("*.json"):
        try:
            run = _Run(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if run.owner_alive():
            continue
        problems = _destroy(run)
        if problems:
            log.warning("could not reap run %s: %s", run.run_id, "; ".join(problems))
        else:
            reaped.append(run.run_id)
    return reaped


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Serialises subnet choice and bridge creation between concurrent runs."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "allocate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_third_octet() -> int:
    used = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    choices = [x for x in range(1, 255) if f"{_PREFIX_NET}.{x}." not in used]
    if not choices:
        raise RuntimeError(f"no free /24 left in {_PREFIX_NET}.0.0/16")
    return random.choice(choices)


class PodCluster:
    """N pods on one bridge. Use as a context manager, or call :meth:`teardown`."""

    def __init__(self, pods: int = 3, *, log_dir: Path | None = None) -> None:
        if not 1 <= pods <= 200:
            raise ValueError(f"pods must be within 1..200, got {pods}")
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"cannot simulate pods: {reason}")
        self.run_id = secrets.token_hex(3)
        self.bridge = f"hp{self.run_id}br"
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"hp-netns-{self.run_id}-"))
        self.pods: list[Pod] = []
        self.bridge_ip = ""
        self.prefix_len = 24
        self._processes: list[PodProcess] = []
        self._torn_down = False
        self._run = _Run(self.run_id, self.bridge, [])
        reap_orphans()
        atexit.register(self._teardown_at_exit)
        try:
            self._build(pods)
        except BaseException:
            self.teardown()
            raise

    # -- building -----------------------------------------------------------------------

    def _build(self, count: int) -> None:
        with _allocation_lock():
            x = _free_third_octet()
            self.subnet = f"{_PREFIX_NET}.{x}.0/24"
            self.bridge_ip = f"{_PREFIX_NET}.{x}.1"
            self._run.save()  # before the first link exists, so a crash can be reaped
            _ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
            _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        for i in range(count):
            pod = Pod(
                i, f"hp{self.run_id}-pod{i}", f"{_PREFIX_NET}.{x}.{10 + i}", f"hp{self.run_id}h{i}"
            )
            self._run.namespaces.append(pod.namespace)
            self._run.links.append(pod.host_link)
            self._run.save()
            inner = f"hp{self.run_id}p{i}"
            _ip("netns", "add", pod.namespace)
            _ip("link", "add", pod.host_link, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", pod.namespace)
            _ip("link", "set", pod.host_link, "master", self.bridge, "up")
            ns = ("-n", pod.namespace)
            _ip(*ns, "link", "set", "lo", "up")
            _ip(*ns, "link", "set", inner, "name", "eth0")
            _ip(*ns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
            _ip(*ns, "link", "set", "eth0", "up")
            self.pods.append(pod)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def pod(self, which: int | Pod) -> Pod:
        return which if isinstance(which, Pod) else self.pods[which]

    # -- processes ----------------------------------------------------------------------

    def _spawn(
        self,
        pod: Pod | None,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        *,
        pipe: bool,
        infrastructure: bool = False,
    ) -> PodProcess:
        if self._torn_down:
            raise RuntimeError("the cluster was torn down")
        name = Path(argv[0]).name
        where = f"pod{pod.index}" if pod else "host"
        log_path = self.log_dir / f"{where}-{name}-{len(self._processes)}.log"
        full = [_IP, "netns", "exec", pod.namespace, *argv] if pod else list(argv)
        logf: IO[str] = open(log_path, "w")  # noqa: SIM115 - handed to the child
        try:
            popen = subprocess.Popen(
                full,
                env={**os.environ, **(env or {})},
                stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe else logf,
                stderr=logf,
                text=True,
                bufsize=1 if pipe else -1,
                start_new_session=True,
            )
        finally:
            logf.close()
        proc = PodProcess(pod, tuple(argv), popen, log_path, infrastructure)
        self._processes.append(proc)
        if pod is not None:
            self._await_entry(pod, popen)
        return proc

    @staticmethod
    def _await_entry(pod: Pod, popen: subprocess.Popen[str], timeout: float = 10.0) -> None:
        # `ip netns exec` enters the namespace only after the fork: until then the new
        # process is still in the root namespace, and a caller that looks for it in the
        # pod (or cuts the pod off) would miss it.
        deadline = time.monotonic() + timeout
        while popen.pid not in _namespace_pids(pod.namespace) and popen.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pod}: pid {popen.pid} did not enter the namespace")
            time.sleep(0.01)

    def ensure_epmd(self, which: int | Pod, timeout: float = 10.0) -> None:
        """Start the pod's own epmd unless one answers in its namespace."""
        pod = self.pod(which)
        if self._epmd_answers(pod):
            return
        self._spawn(pod, ["epmd", "-port", str(_EPMD_PORT)], None, pipe=False, infrastructure=True)
        deadline = time.monotonic() + timeout
        while not self._epmd_answers(pod):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pod}: epmd did not start")
            time.sleep(0.05)

    def _epmd_answers(self, pod: Pod) -> bool:
        done = subprocess.run(
            [_IP, "netns", "exec", pod.namespace, "epmd", "-names"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.returncode == 0

    def run(
        self,
        which: int | Pod,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        pipe: bool = False,
    ) -> PodProcess:
        """Start ``argv`` inside the pod's namespace (its epmd first, when missing).

        ``env`` is added to this process's environment. With ``pipe`` the process's
        stdin and stdout are text pipes (``proc.popen.stdin``/``stdout``); stderr, and
        stdout otherwise, go to ``proc.log_path``.
        """
        pod = self.pod(which)
        self.ensure_epmd(pod)
        return self._spawn(pod, argv, env, pipe=pipe)

    def run_host(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, *, pipe: bool = False
    ) -> PodProcess:
        """Start ``argv`` in the root namespace, tracked like a pod's processes.

        A node started here must listen on :attr:`bridge_ip` only (erl:
        ``-kernel inet_dist_use_interface``) so that nothing listens beyond the cluster.
        """
        return self._spawn(None, argv, env, pipe=pipe)

    def exec(
        self, which: int | Pod, argv: Sequence[str], timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command in the pod and wait for it (``ip addr``, ``epmd -names``)."""
        pod = self.pod(which)
        return subprocess.run(
            [_IP, "netns", "exec", pod.namespace, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def processes(self, which: int | Pod | None = None) -> list[PodProcess]:
        """The live processes started in a pod (in the root namespace with None)."""
        pod = None if which is None else self.pod(which)
        return [p for p in self._processes if p.pod == pod and p.alive()]

    def namespace_pids(self, which: int | Pod) -> set[int]:
        """Every process in the pod's namespace, tracked or not (``ip netns pids``)."""
        return _namespace_pids(self.pod(which).namespace)

    def stop(self, which: int | Pod, timeout: float = 30.0) -> dict[int, int]:
        """SIGTERM the pod's processes (not its epmd) and wait for them; SIGKILL those
        still running after ``timeout``. Returns pid -> exit status."""
        procs = [p for p in self.processes(which) if not p.infrastructure]
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        status: dict[int, int] = {}
        for p in procs:
            try:
                status[p.pid] = p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s: %s ignored SIGTERM for %.0f s; its output ends with:\n%s",
                    p.pod,
                    p.argv[0],
                    timeout,
                    p.output()[-2000:],
                )
                p.signal(signal.SIGKILL)
                status[p.pid] = p.wait(10)
        return status

    def kill(self, which: int | Pod) -> None:
        """SIGKILL every process in the pod's namespace, epmd included: the pod crashed.
        :meth:`run` starts a fresh epmd."""
        pod = self.pod(which)
        for p in self.processes(pod):
            p.signal(signal.SIGKILL)
        left = _kill_all(self.namespace_pids(pod))
        for p in self._processes:
            if p.pod == pod:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
        if left:
            raise RuntimeError(f"{pod}: processes {sorted(left)} survived SIGKILL")

    # -- network ------------------------------------------------------------------------

    def cut(self, which: int | Pod) -> None:
        """Take the pod's link to the bridge down: it neither sends nor receives."""
        _ip("link", "set", self.pod(which).host_link, "down")

    def heal(self, which: int | Pod) -> None:
        """Bring the pod's link back up."""
        _ip("link", "set", self.pod(which).host_link, "up")

    # -- teardown -----------------------------------------------------------------------

    def teardown(self) -> None:
        """Kill every process, delete every namespace, link and the bridge. Idempotent.
        Raises RuntimeError, after doing all it can, if something could not be removed."""
        if self._torn_down:
            return
        self._torn_down = True
        atexit.unregister(self._teardown_at_exit)
        for p in self._processes:
            p.signal(signal.SIGKILL)
        for p in self._processes:
            for stream in (p.popen.stdin, p.popen.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
        problems = _destroy(self._run)
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        if problems:
            raise RuntimeError("teardown left things behind: " + "; ".join(problems))

    def _teardown_at_exit(self) -> None:
        try:
            self.teardown()
        except Exception as e:  # nothing to raise to at exit
            log.error("pod cluster %s: %s", self.run_id, e)
