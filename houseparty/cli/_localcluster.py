"""A local cluster: N pods on 127.0.0.1, each a sidecar ``sidecar<i>`` and a Python node ``py<i>``.

The run folder holds ``cluster.json`` (what runs, with OS pids) and one log file per node, so
that ``up``, ``down``, ``pod stop|kill|start`` and ``status`` can be separate invocations;
each change to it holds the run folder's lock. Graceful stops send SIGTERM, as Kubernetes
does: first to the Python node, which asks its sidecar to drain every process to the other
pods, then to the sidecar. A supervisor process (``houseparty.cli._supervisor``), when
``up`` starts one, restarts a node that died on its own, as Kubernetes restarts a container.

With ``tls``, the run folder's ``tls/`` holds a throwaway CA's certificates, one folder per
node and one for clients (``tls/client``), in cert-manager's layout
(:mod:`houseparty._certs`): the sidecars run ``-proto_dist inet_tls`` with an
``-ssl_dist_optfile`` beside their certificate, the Python nodes read ``HP_TLS_DIR``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from houseparty._certs import dist_optfile, make_certificates
from houseparty._client import HouseParty
from houseparty._errors import (
    AlreadyRunning,
    BadArgument,
    ClusterError,
    ErlangMissing,
    HousePartyError,
    NotRunning,
    PortInUse,
)
from houseparty._logsetup import LEVELS, LOG_FORMATS
from houseparty.pod import DrainSummary
from houseparty.workers import worker_table

__all__ = [
    "CLIENT_CERTIFICATE",
    "DEFAULT_BASE_PORT",
    "ELIXIR_APPS",
    "LocalCluster",
    "PodSpec",
    "SidecarRuntime",
    "default_run_dir",
    "elixir_ebins",
    "port_free",
    "resolve_cookie",
    "sidecar_ebin",
]

DEFAULT_BASE_PORT = 9100
HOST = "127.0.0.1"
_STATE_FILE = "cluster.json"
_TLS_FOLDER = "tls"
# The certificate every client of a local cluster (the CLI, HouseParty(...)) presents.
CLIENT_CERTIFICATE = "client"


def default_run_dir() -> Path:
    env = os.environ.get("HOUSEPARTY_RUN_DIR")
    return Path(env) if env else Path.home() / ".houseparty" / "local"


def resolve_cookie(explicit: str | None) -> str:
    """``--cookie``, else ``HOUSEPARTY_COOKIE``, else ``~/.erlang.cookie`` (created as erl does)."""
    if explicit:
        return explicit
    env = os.environ.get("HOUSEPARTY_COOKIE")
    if env:
        return env
    path = Path.home() / ".erlang.cookie"
    if not path.exists():
        # erl makes 20 upper-case letters, readable by the owner only.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        path.write_text("".join(secrets.choice(alphabet) for _ in range(20)))
        path.chmod(0o400)
    return path.read_text().strip()


# Where a wheel ships the compiled sidecar (setup.py builds it there).
_SHIPPED_EBIN = Path(__file__).resolve().parents[1] / "_sidecar" / "ebin"
_CHECKOUT_EBIN = (
    Path(__file__).resolve().parents[2]
    / "_build"
    / "default"
    / "lib"
    / "houseparty_sidecar"
    / "ebin"
)


def sidecar_ebin() -> Path:
    """The compiled sidecar: ``HP_SIDECAR_EBIN``, else the one shipped in the installed
    package, else the checkout's rebar3 build."""
    env = os.environ.get("HP_SIDECAR_EBIN")
    if env:
        return Path(env)
    if _SHIPPED_EBIN.is_dir():
        return _SHIPPED_EBIN
    return _CHECKOUT_EBIN


#: The Elixir applications a sidecar loads, so that ``iex --remsh`` into it works.
ELIXIR_APPS = ("elixir", "iex", "logger")


def elixir_ebins() -> list[Path]:
    """Elixir's own code, which a sidecar needs on its path for ``iex --remsh`` into it."""
    elixir = shutil.which("elixir")
    if elixir is None:
        return []
    lib = Path(os.path.realpath(elixir)).parent.parent / "lib"
    return [lib / app / "ebin" for app in ELIXIR_APPS if (lib / app).is_dir()]


@dataclass(frozen=True)
class PodSpec:
    """Names and ports of pod ``index`` (1-based) of a local cluster."""

    index: int
    base_port: int = DEFAULT_BASE_PORT
    # Appended to node names so that several clusters can share one epmd (tests).
    tag: str = ""

    @property
    def sidecar_node(self) -> str:
        return f"sidecar{self.index}{self.tag}@{HOST}"

    @property
    def python_node(self) -> str:
        return f"py{self.index}{self.tag}@{HOST}"

    @property
    def sidecar_port(self) -> int:
        return self.base_port + 3 * (self.index - 1)

    @property
    def python_port(self) -> int:
        return self.sidecar_port + 1

    @property
    def health_port(self) -> int:
        return self.sidecar_port + 2


@dataclass(frozen=True)
class SidecarRuntime:
    """The Erlang a pod's sidecar runs on: the ``erl`` command and the code path it loads.
    The default is ``erl`` on PATH with the checkout's build and Elixir on PATH; another
    Erlang (a newer OTP, for a mixed cluster or a rolling upgrade) brings its own build of the
    sidecar and its own Elixir."""

    erl: str = "erl"
    # Empty: sidecar_ebin() and elixir_ebins().
    code_path: tuple[str, ...] = ()

    def command_prefix(self) -> list[str]:
        paths = self.code_path or (str(sidecar_ebin()), *(str(p) for p in elixir_ebins()))
        return [self.erl, "-pa", *paths]


def _schedulers(pods: int) -> list[str]:
    """The sidecar's scheduler threads: the pods of a local cluster share one machine's
    CPUs, so each sidecar gets its share of them (one at least), as a pod would on a
    node of its own. Idle schedulers of several VMs on the same CPUs spend more waking
    one another than they bring."""
    share = max(1, len(os.sched_getaffinity(0)) // max(1, pods))
    return ["+S", f"{share}:{share}"]


@dataclass
class _PodState:
    index: int
    sidecar_pid: int | None = None
    python_pid: int | None = None
    erl: str = "erl"
    code_path: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> SidecarRuntime:
        return SidecarRuntime(self.erl, tuple(self.code_path))


@dataclass
class _ClusterState:
    pods: int
    cookie: str
    base_port: int
    started_at: float
    tag: str = ""
    pod_states: dict[int, _PodState] = field(default_factory=dict)
    # HOUSEPARTY_WORKERS for the pods, and the folder their classes are imported from.
    workers: str = ""
    workers_path: str = ""
    # HP_REPLICA_COPIES for the pods; None leaves the environment's.
    replica_copies: int | None = None
    # HP_LOG_FORMAT and HP_LOG_LEVEL for both nodes of each pod; None leaves the environment's.
    log_format: str | None = None
    log_level: str | None = None
    # The process that restarts nodes that died on their own, when there is one.
    supervisor_pid: int | None = None
    # TLS distribution, with the certificates in the run folder's tls/.
    tls: bool = False


def _check_worker_classes(setting: str, folder: str) -> None:
    """Import each worker class of ``setting`` as the pods will, from ``folder`` first."""
    sys.path.insert(0, folder)
    try:
        worker_table({}, setting)
    finally:
        sys.path.remove(folder)


def _check_log_settings(log_format: str | None, log_level: str | None) -> None:
    if log_format is not None and log_format not in LOG_FORMATS:
        raise BadArgument(log_format, f"a log format is one of {', '.join(LOG_FORMATS)}")
    if log_level is not None and log_level not in LEVELS:
        raise BadArgument(log_level, f"a log level is one of {', '.join(LEVELS)}")


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it so it reads as gone.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _proc_state(pid) not in ("Z", None)
    return done == 0


def _proc_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[0]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


class LocalCluster:
    """Starts, stops and inspects the pods of one run folder."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir or default_run_dir()
        self._lock_depth = 0
        self._lock_fd: int | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the run folder's lock (re-entrant within this object): the CLI's commands
        and the supervisor change the cluster's state one at a time, so that a node one of
        them stops on purpose never reads to another as one that died on its own."""
        if self._lock_depth == 0:
            self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.run_dir / "cluster.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                os.close(self._lock_fd)  # closing releases the lock
                self._lock_fd = None

    # -- state -----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.run_dir / _STATE_FILE

    def tls_dir(self, name: str) -> Path:
        """The certificate folder of node ``name`` (its part before @) or of clients."""
        return self.run_dir / _TLS_FOLDER / name

    def log_path(self, node: str) -> Path:
        return self.run_dir / "logs" / f"{node.split('@')[0]}.log"

    def _load(self) -> _ClusterState | None:
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        try:
            pods = {int(k): _PodState(**v) for k, v in raw.pop("pod_states").items()}
            return _ClusterState(**raw, pod_states=pods)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ClusterError(
                f"{self.state_path} is not a cluster state this version understands ({exc}); "
                "stop its nodes by hand and remove the run folder"
            ) from exc

    def _save(self, state: _ClusterState) -> None:
        # The state holds the cookie: the run folder is the user's alone (0700), and so
        # is every file in it (0600).
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        data = asdict(state)
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data, indent=2))
        tmp.replace(self.state_path)

    def state(self) -> _ClusterState:
        """The running cluster's state; NotRunning when there is none."""
        state = self._load()
        if state is None or not any(self._pod_alive(p) for p in state.pod_states.values()):
            raise NotRunning(f"no local cluster is running (run folder {self.run_dir})")
        return state

    def _pod_alive(self, pod: _PodState) -> bool:
        return _alive(pod.sidecar_pid) or _alive(pod.python_pid)

    @staticmethod
    def condition(pod: _PodState) -> str:
        """``up``, ``down``, or ``broken: ...`` naming the half that died on its own (a
        sidecar stopped from a remote shell, a Python node that crashed) while the other
        runs on; ``pod start`` restarts a broken pod."""
        match _alive(pod.sidecar_pid), _alive(pod.python_pid):
            case True, True:
                return "up"
            case False, True:
                return "broken: sidecar down, python node up"
            case True, False:
                return "broken: python node down, sidecar up"
        return "down"

    def is_running(self) -> bool:
        try:
            self.state()
        except NotRunning:
            return False
        return True

    # -- start -----------------------------------------------------------------------------

    @staticmethod
    def check_erlang() -> None:
        missing = [tool for tool in ("erl", "epmd") if shutil.which(tool) is None]
        if missing:
            raise ErlangMissing(
                f"{' and '.join(missing)} not found on PATH: install Erlang/OTP "
                "(scripts/setup.sh does it: apt-get install erlang-nox erlang-dev)"
            )
        ebin = sidecar_ebin()
        if not (ebin / "houseparty_sidecar.app").exists():
            raise ErlangMissing(
                f"no compiled sidecar: {ebin} has no houseparty_sidecar.app. This "
                "installation was built without Erlang/OTP; install Erlang/OTP 25 or newer "
                "and reinstall houseparty, set HP_SIDECAR_EBIN to a compiled sidecar's ebin, "
                "or, in a checkout, run scripts/setup.sh"
            )

    def up(
        self,
        pods: int = 3,
        cookie: str | None = None,
        base_port: int = DEFAULT_BASE_PORT,
        progress: Callable[[str], None] | None = None,
        timeout: float = 60.0,
        tag: str = "",
        workers: Sequence[str] = (),
        runtimes: Mapping[int, SidecarRuntime] | None = None,
        replica_copies: int | None = None,
        log_format: str | None = None,
        log_level: str | None = None,
        supervise: bool = False,
        tls: bool = False,
    ) -> _ClusterState:
        """Start ``pods`` pods and wait until each is ready; AlreadyRunning if one runs.
        ``workers`` are ``[kind=]module:Class`` worker classes for the pods, imported from
        the current folder (or the Python path); BadArgument if one cannot be.
        ``runtimes`` gives the sidecar of a pod (by index) another Erlang than ``erl``;
        ``replica_copies`` sets the pods' ``HP_REPLICA_COPIES`` (else the environment's,
        else its default, 1); ``log_format`` (text or json) and ``log_level`` (debug, info,
        notice, warning or error) their ``HP_LOG_FORMAT`` and ``HP_LOG_LEVEL``; BadArgument
        for a value neither node knows. ``supervise`` starts the supervisor, which restarts
        a node that died on its own (see :meth:`restart_node`). ``tls`` makes a throwaway CA
        and a certificate for each node and for clients, and runs distribution over TLS."""
        self.check_erlang()
        setting = " ".join(workers)
        _check_worker_classes(setting, os.getcwd())
        _check_log_settings(log_format, log_level)
        if not re.fullmatch(r"[A-Za-z0-9_-]*", tag):
            raise ClusterError(
                f"a node name suffix takes letters, digits, _ and - only, not {tag!r}"
            )
        existing = self._load()
        if existing is not None:
            if any(self._pod_alive(p) for p in existing.pod_states.values()):
                raise AlreadyRunning(
                    f"a local cluster is already running (run folder {self.run_dir}); "
                    "`houseparty down` stops it"
                )
            # A stale run folder: its processes are gone. Keep the old logs apart.
            stale = self.run_dir.with_name(self.run_dir.name + f".stale-{int(time.time())}")
            self.run_dir.rename(stale)
            if progress:
                progress(f"moved the stale run folder to {stale}")
        specs = [PodSpec(i, base_port, tag) for i in range(1, pods + 1)]
        for spec in specs:
            for port in (spec.sidecar_port, spec.python_port, spec.health_port):
                if not port_free(port):
                    raise PortInUse(
                        f"port {port} on {HOST} (pod {spec.index}) is in use; "
                        "choose other ports with --base-port"
                    )
        subprocess.run(["epmd", "-daemon"], check=True)
        state = _ClusterState(
            pods=pods,
            cookie=resolve_cookie(cookie),
            base_port=base_port,
            tag=tag,
            started_at=time.time(),
            pod_states={s.index: _pod_state(s.index, (runtimes or {}).get(s.index)) for s in specs},
            workers=setting,
            workers_path=os.getcwd() if setting else "",
            replica_copies=replica_copies,
            log_format=log_format,
            log_level=log_level,
            tls=tls,
        )
        (self.run_dir / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
        if tls:
            names = [n.split("@")[0] for s in specs for n in (s.sidecar_node, s.python_node)]
            issued = make_certificates(self.run_dir / _TLS_FOLDER, [*names, CLIENT_CERTIFICATE])
            # For erl and iex nodes of the user's: -proto_dist inet_tls -ssl_dist_optfile.
            _write_private(
                issued[CLIENT_CERTIFICATE] / "dist.conf",
                dist_optfile(issued[CLIENT_CERTIFICATE]),
            )
        try:
            with self._locked():
                self._save(state)
                for spec in specs:
                    self._spawn_pod(state, spec)
                    if progress:
                        progress(f"started pod {spec.index}")
                self._save(state)
            self.wait_ready(state, specs, progress, timeout)
            if supervise:
                with self._locked():
                    env = dict(os.environ)
                    if log_format is not None:
                        env["HP_LOG_FORMAT"] = log_format
                    if log_level is not None:
                        env["HP_LOG_LEVEL"] = log_level
                    state.supervisor_pid = self._spawn(
                        [sys.executable, "-m", "houseparty.cli._supervisor", str(self.run_dir)],
                        env,
                        self.run_dir / "logs" / "supervisor.log",
                    )
                    self._save(state)
        except BaseException:
            self.down()
            raise
        return state

    def _env(self, state: _ClusterState, spec: PodSpec) -> dict[str, str]:
        peers = ",".join(
            PodSpec(i, state.base_port, state.tag).sidecar_node for i in range(1, state.pods + 1)
        )
        env = dict(os.environ)
        env.update(
            HOUSEPARTY_COOKIE=state.cookie,
            POD_IP=HOST,
            HP_SIDECAR_NODE=spec.sidecar_node,
            HP_PYTHON_NODE=spec.python_node,
            HP_SIDECAR_DIST_PORT=str(spec.sidecar_port),
            HP_PYTHON_DIST_PORT=str(spec.python_port),
            HP_HEALTH_PORT=str(spec.health_port),
            # A local cluster listens on the loopback only: health, and epmd when the
            # sidecar starts it (the distribution ports are bound in the sidecar's args).
            HP_HEALTH_IP=HOST,
            ERL_EPMD_ADDRESS=HOST,
            HP_CLUSTER_STRATEGY="epmd",
            HP_CLUSTER_HOSTS=peers,
            HP_POLL_INTERVAL_MS="1000",
            # erl reads the cookie from $HOME/.erlang.cookie: it stays out of argv, where
            # `ps` would show it to everyone.
            HOME=str(self.cookie_home(state.cookie)),
        )
        if state.replica_copies is not None:
            env["HP_REPLICA_COPIES"] = str(state.replica_copies)
        if state.log_format is not None:
            env["HP_LOG_FORMAT"] = state.log_format
        if state.log_level is not None:
            env["HP_LOG_LEVEL"] = state.log_level
        if state.workers:
            env["HOUSEPARTY_WORKERS"] = state.workers
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [state.workers_path, env.get("PYTHONPATH")])
            )
        return env

    def cookie_home(self, cookie: str) -> Path:
        """The run folder's ``home``, whose ``.erlang.cookie`` holds ``cookie``: the HOME of
        an erl, iex or elixir node that joins the cluster without the cookie on its
        command line."""
        home = self.run_dir / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        path = home / ".erlang.cookie"
        if not path.exists() or path.read_text() != cookie:
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as out:
                out.write(cookie)
        return home

    def _spawn_pod(self, state: _ClusterState, spec: PodSpec, *, only: str | None = None) -> None:
        env = self._env(state, spec)
        sidecar_env, python_env = dict(env), dict(env)
        python_env.pop("HP_TLS_DIR", None)
        tls_args: list[str] = []
        if state.tls:
            sidecar_tls = self.tls_dir(spec.sidecar_node.split("@")[0])
            optfile = sidecar_tls / "dist.conf"
            _write_private(optfile, dist_optfile(sidecar_tls))
            tls_args = ["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)]
            python_env["HP_TLS_DIR"] = str(self.tls_dir(spec.python_node.split("@")[0]))
        pod = state.pod_states[spec.index]
        sidecar_cmd = [
            *pod.runtime.command_prefix(),
            "-name",
            spec.sidecar_node,
            *tls_args,
            "-noshell",
            "-noinput",
            "+t",
            "5000000",
            "+P",
            "2097152",
            *_schedulers(len(state.pod_states)),
            "-kernel",
            "prevent_overlapping_partitions",
            "false",
            "-kernel",
            "inet_dist_use_interface",
            "{" + HOST.replace(".", ",") + "}",
            "-kernel",
            "inet_dist_listen_min",
            str(spec.sidecar_port),
            "inet_dist_listen_max",
            str(spec.sidecar_port),
            "-eval",
            "{ok, _} = application:ensure_all_started(houseparty_sidecar)",
        ]
        python_cmd = [sys.executable, "-m", "houseparty.pod", "--name", spec.python_node]
        if only in (None, "sidecar"):
            pod.sidecar_pid = self._spawn(
                sidecar_cmd, sidecar_env, self.log_path(spec.sidecar_node)
            )
        if only in (None, "python"):
            pod.python_pid = self._spawn(python_cmd, python_env, self.log_path(spec.python_node))

    def _spawn(self, cmd: list[str], env: dict[str, str], log: Path) -> int:
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.run_dir,  # crash dumps land next to the logs
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches only `houseparty up`
                umask=0o077,  # a crash dump holds the node's memory, its cookie too
            )
        return proc.pid

    def wait_ready(
        self,
        state: _ClusterState,
        specs: list[PodSpec],
        progress: Callable[[str], None] | None,
        timeout: float,
    ) -> None:
        """Wait until every pod's sidecar says ready: joined, with its Python node connected."""
        deadline = time.monotonic() + timeout
        pending = {s.index: s for s in specs}
        while pending:
            for index, spec in list(pending.items()):
                pod = state.pod_states[index]
                if not (_alive(pod.sidecar_pid) and _alive(pod.python_pid)):
                    raise NotRunning(
                        f"pod {index} exited during start; see {self.log_path(spec.sidecar_node)} "
                        f"and {self.log_path(spec.python_node)}"
                    )
                if self.ready(spec):
                    del pending[index]
                    if progress:
                        progress(f"pod {index} ready")
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"pods {sorted(pending)} not ready after {timeout:.0f}s")
            if pending:
                time.sleep(0.2)

    @staticmethod
    def ready(spec: PodSpec) -> bool:
        url = f"http://{HOST}:{spec.health_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # -- stop ------------------------------------------------------------------------------

    def pods(self) -> Iterator[tuple[PodSpec, _PodState]]:
        state = self.state()
        for index, pod in sorted(state.pod_states.items()):
            yield PodSpec(index, state.base_port, state.tag), pod

    def _pod(self, index: int) -> tuple[_ClusterState, _PodState]:
        state = self.state()
        if index not in state.pod_states:
            raise NotRunning(f"pod {index} is not part of this cluster (pods 1..{state.pods})")
        return state, state.pod_states[index]

    def _running_pod(self, index: int) -> tuple[_ClusterState, _PodState]:
        state, pod = self._pod(index)
        if not self._pod_alive(pod):
            raise NotRunning(f"pod {index} is not running")
        return state, pod

    def stop_pod(self, index: int, timeout: float = 120.0) -> DrainSummary | None:
        """Drain pod ``index``: SIGTERM the Python node, then the sidecar, and wait for both.
        What the drain did, as the sidecar tells it once the Python node has left (None
        when it cannot say). NotRunning when neither runs."""
        with self._locked():
            state, pod = self._running_pod(index)
            _terminate(pod.python_pid, timeout)
            summary = _drain_summary(
                PodSpec(index, state.base_port, state.tag),
                state.cookie,
                self.tls_dir(CLIENT_CERTIFICATE) if state.tls else None,
            )
            _terminate(pod.sidecar_pid, timeout)
            pod.python_pid = pod.sidecar_pid = None
            self._save(state)
        return summary

    def kill_pod(self, index: int) -> None:
        """SIGKILL both nodes of pod ``index``: its state is lost, its names restart elsewhere.
        NotRunning when neither runs."""
        with self._locked():
            state, pod = self._running_pod(index)
            for pid in (pod.sidecar_pid, pod.python_pid):
                _signal(pid, signal.SIGKILL)
            for pid in (pod.python_pid, pod.sidecar_pid):
                _wait_gone(pid, 10.0)
            pod.python_pid = pod.sidecar_pid = None
            self._save(state)

    def kill_node(self, index: int, which: str) -> None:
        """SIGKILL one of pod ``index``'s two nodes: ``"sidecar"`` or ``"python"``."""
        with self._locked():
            state, pod = self._pod(index)
            pid = self._half_pid(pod, which)
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, 10.0)
            if which == "sidecar":
                pod.sidecar_pid = None
            else:
                pod.python_pid = None
            self._save(state)

    def start_node(self, index: int, which: str) -> None:
        """Start again one of pod ``index``'s two nodes (``"sidecar"`` or ``"python"``),
        as the container's restart would; it does not wait for the pod to be ready."""
        with self._locked():
            state, pod = self._pod(index)
            if _alive(self._half_pid(pod, which)):
                raise AlreadyRunning(f"the {which} node of pod {index} is running")
            self._spawn_pod(state, PodSpec(index, state.base_port, state.tag), only=which)
            self._save(state)

    def dead_nodes(self) -> list[tuple[int, str, int]]:
        """``(pod, "sidecar" | "python", pid)`` of every node that died on its own: its pid
        is on record (a node stopped or killed through this class is not) and runs no more.
        NotRunning when no pod runs."""
        return [
            (index, which, pid)
            for index, pod in sorted(self.state().pod_states.items())
            for which, pid in (("sidecar", pod.sidecar_pid), ("python", pod.python_pid))
            if pid is not None and not _alive(pid)
        ]

    def restart_node(self, index: int, which: str, pid: int) -> bool:
        """Start again the ``which`` node of pod ``index`` that died on its own as ``pid``,
        as Kubernetes restarts a container: alone, the pod's other node runs on (a Python
        node connects to its new sidecar; a sidecar takes its new Python node). False, and
        nothing done, when the pod's record changed meanwhile (stopped, or started again)."""
        with self._locked():
            try:
                state, pod = self._pod(index)
            except NotRunning:
                return False
            if self._half_pid(pod, which) != pid or _alive(pid):
                return False
            self._spawn_pod(state, PodSpec(index, state.base_port, state.tag), only=which)
            self._save(state)
            return True

    @staticmethod
    def _half_pid(pod: _PodState, which: str) -> int | None:
        match which:
            case "sidecar":
                return pod.sidecar_pid
            case "python":
                return pod.python_pid
        raise ValueError(f"a pod's node is 'sidecar' or 'python', not {which!r}")

    def start_pod(
        self, index: int, timeout: float = 60.0, runtime: SidecarRuntime | None = None
    ) -> str:
        """Bring a stopped, killed or broken pod back; it rejoins and takes its share of
        names. Of a broken pod (one node died on its own), the node still running is
        stopped first, gracefully, as a restarted pod starts both afresh. Answers the pod's
        condition before (see :meth:`condition`); AlreadyRunning when it was up.
        ``runtime`` replaces the Erlang its sidecar ran on (an upgrade); else it keeps it."""
        with self._locked():
            state, pod = self._pod(index)
            before = self.condition(pod)
            if before == "up":
                raise AlreadyRunning(f"pod {index} is running")
            # The Python node first, as a graceful stop does: it asks its sidecar to drain.
            _terminate(pod.python_pid, timeout)
            _terminate(pod.sidecar_pid, timeout)
            if runtime is not None:
                pod.erl, pod.code_path = runtime.erl, list(runtime.code_path)
            spec = PodSpec(index, state.base_port, state.tag)
            self._spawn_pod(state, spec)
            self._save(state)
        self.wait_ready(state, [spec], None, timeout)
        return before

    def down(self, timeout: float = 120.0) -> None:
        """Stop every pod gracefully, the last one without anywhere to drain to."""
        with self._locked():
            state = self._load()
            if state is None:
                raise NotRunning(f"no local cluster is running (run folder {self.run_dir})")
            # The supervisor first: it would wait on the lock, then find no cluster, but
            # need not outlive the command.
            _terminate(state.supervisor_pid, 10.0)
            for pod in state.pod_states.values():
                _terminate(pod.python_pid, timeout)
                _terminate(pod.sidecar_pid, timeout)
                pod.python_pid = pod.sidecar_pid = None
            self.state_path.unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _pod_state(index: int, runtime: SidecarRuntime | None) -> _PodState:
    runtime = runtime or SidecarRuntime()
    return _PodState(index, erl=runtime.erl, code_path=list(runtime.code_path))


def _signal(pid: int | None, sig: signal.Signals) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(pid: int | None, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL what is left."""
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)


def _drain_summary(spec: PodSpec, cookie: str, tls: Path | None) -> DrainSummary | None:
    # The Python node's SIGTERM drained the pod; asked again, the sidecar answers what
    # that drain did.
    try:
        with HouseParty(spec.sidecar_node, cookie=cookie, tls=tls) as hp:
            answer = hp.rpc("hp_registry", "drain", [])
    except HousePartyError:
        return None
    return DrainSummary.from_term(answer)
