"""The ``houseparty`` command line: run a local cluster, drive it, inspect any cluster."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from houseparty._certs import env_tls_dir
from houseparty._client import MAX_NAME, ROOM_MAX_LIMIT, HouseParty, from_term
from houseparty._errors import (
    AlreadyRegistered,
    AlreadyRunning,
    BadArgument,
    ConnectError,
    DestinationFull,
    HousePartyError,
    NotRunning,
    TooManyNames,
    Unavailable,
    UnknownKind,
    UnknownName,
    UnknownRoom,
)
from houseparty._logsetup import LEVELS, LOG_FORMATS
from houseparty.cli._benchmarks import load_benchmarks
from houseparty.cli._demo import run_demo
from houseparty.cli._localcluster import (
    CLIENT_CERTIFICATE,
    DEFAULT_BASE_PORT,
    LocalCluster,
    PodSpec,
    default_run_dir,
    resolve_cookie,
)
from py_nodes import PyNodesError, TlsError
from py_nodes._terms import Atom

__all__ = ["main"]

# Names are printed as they are: no ":smile:" turned into an emoji.
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Exit(IntEnum):
    """The exit codes of every command, as ``houseparty --help`` lists them."""

    OK = 0
    OTHER = 1  # anything else
    USAGE = 2  # bad input: an option, an argument, a name (click's own usage errors too)
    REFUSED = 3  # the cluster said no: a full room, a name taken, no room for new names,
    # a cluster already running
    NOT_FOUND = 4  # no such room, worker, kind, pod or cluster; a person in no room
    UNREACHABLE = 5  # the cluster, or the worker, could not be asked in time


EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 other error, 2 usage (bad input), 3 refused (a full room, a taken "
    "name, too many names), 4 not found (no such room, person, pod or cluster), 5 unreachable "
    "(the cluster or a worker could not be asked in time)."
)


def _fail(message: str, code: Exit = Exit.OTHER) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(code)


def _exit_code(exc: HousePartyError) -> Exit:
    match exc:
        case BadArgument():
            return Exit.USAGE
        case DestinationFull() | AlreadyRegistered() | AlreadyRunning() | TooManyNames():
            return Exit.REFUSED
        case UnknownRoom() | UnknownName() | UnknownKind() | NotRunning():
            return Exit.NOT_FOUND
        case ConnectError() | Unavailable():
            return Exit.UNREACHABLE
    return Exit.OTHER


def _fail_for(exc: HousePartyError) -> NoReturn:
    _fail(str(exc), _exit_code(exc))


def _run_dir_option(func: F) -> F:
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Run folder of the local cluster (default {default_run_dir()}).",
    )(func)


def _name_suffix_option(func: F) -> F:
    return click.option(
        "--name-suffix",
        default="",
        help="Appended to node names (sidecar1<suffix>@...), to run several local clusters.",
    )(func)


# Click completes commands, options and paths for bash, zsh and fish.
_COMPLETION = """\b
Shell completion, in ~/.bashrc (zsh: zsh_source, in ~/.zshrc):
  eval "$(_HOUSEPARTY_COMPLETE=bash_source houseparty)"
fish, in ~/.config/fish/completions/houseparty.fish:
  _HOUSEPARTY_COMPLETE=fish_source houseparty | source"""


@click.group(epilog=f"{EXIT_CODES_HELP}\n\n{_COMPLETION}")
@click.version_option(package_name="houseparty")
def main() -> None:
    """Rooms and people as Python GenServers spread over an Erlang cluster."""


# -- local cluster -------------------------------------------------------------------------


@main.command()
@click.option("--pods", default=3, show_default=True, type=click.IntRange(1, 32))
@click.option(
    "--cookie", default=None, help="Cookie; else HOUSEPARTY_COOKIE, else ~/.erlang.cookie."
)
@click.option("--detach", is_flag=True, help="Return once the cluster is up.")
@click.option("--base-port", default=DEFAULT_BASE_PORT, show_default=True, type=int)
@click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="[KIND=]MODULE:CLASS",
    help="A worker class of your own for the pods (repeatable), imported from here.",
)
@click.option(
    "--replica-copies",
    default=None,
    type=click.IntRange(0),
    help="Pods besides the owner's that hold each worker's state (HP_REPLICA_COPIES, "
    "default 1; 0: a killed pod loses its workers' state).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="How both nodes of each pod write their log: text lines, or one JSON object a "
    "line (HP_LOG_FORMAT, default text).",
)
@click.option(
    "--log-level",
    type=click.Choice(list(LEVELS)),
    default=None,
    help="The least severe events the pods log (HP_LOG_LEVEL, default info).",
)
@click.option(
    "--restart/--no-restart",
    default=True,
    show_default=True,
    help="Restart a pod's node that dies on its own (a crash, q() in a remote shell), as "
    "Kubernetes restarts a container; without it, status shows the pod broken until "
    "`pod start`.",
)
@click.option(
    "--tls",
    is_flag=True,
    help="Distribution over TLS: a throwaway CA and a certificate per node, and one for "
    "clients, in the run folder's tls/. Without it, distribution is plain TCP.",
)
@_name_suffix_option
@_run_dir_option
def up(
    pods: int,
    cookie: str | None,
    detach: bool,
    base_port: int,
    workers: tuple[str, ...],
    replica_copies: int | None,
    log_format: str | None,
    log_level: str | None,
    restart: bool,
    tls: bool,
    name_suffix: str,
    run_dir: Path | None,
) -> None:
    """Start a local cluster: a sidecar and a Python node per pod."""
    cluster = LocalCluster(run_dir)
    try:
        with console.status("starting pods...") as status:
            state = cluster.up(
                pods=pods,
                cookie=cookie,
                base_port=base_port,
                progress=lambda msg: status.update(msg),
                tag=name_suffix,
                workers=workers,
                replica_copies=replica_copies,
                log_format=log_format,
                log_level=log_level,
                supervise=restart,
                tls=tls,
            )
    except HousePartyError as exc:
        _fail_for(exc)
    except TimeoutError as exc:
        _fail(f"{exc}; logs are in {cluster.run_dir / 'logs'}", Exit.UNREACHABLE)
    console.print(f"[green]{state.pods} pods up[/] (run folder {cluster.run_dir})")
    if state.tls:
        client = cluster.tls_dir(CLIENT_CERTIFICATE)
        console.print(f"  distribution over TLS; client certificate: {client}")
    else:
        console.print("  [yellow]distribution is plain TCP, unencrypted[/] (--tls to encrypt)")
    for spec, _pod in cluster.pods():
        console.print(f"  pod {spec.index}: {spec.sidecar_node} + {spec.python_node}")
    first = PodSpec(1, state.base_port, state.tag).sidecar_node
    # iex reads the cookie from HOME's .erlang.cookie: no command line shows it.
    home = cluster.cookie_home(state.cookie)
    tls_args = ""
    if state.tls:
        optfile = cluster.tls_dir(CLIENT_CERTIFICATE) / "dist.conf"
        tls_args = f' --erl "-proto_dist inet_tls -ssl_dist_optfile {optfile}"'
    console.print(
        f"attach iex with:  HOME={home} iex --name me@127.0.0.1{tls_args} --remsh {first}"
    )
    console.print("  (leave it with Ctrl-C twice; q() there would stop that sidecar)")
    if detach:
        return
    console.print("Ctrl-C stops the cluster gracefully.")
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop and cluster.is_running():
        time.sleep(0.5)
    with console.status("stopping pods gracefully..."), contextlib.suppress(NotRunning):
        cluster.down()
    console.print("cluster stopped")


@main.command()
@_run_dir_option
def down(run_dir: Path | None) -> None:
    """Stop every pod of the local cluster gracefully."""
    cluster = LocalCluster(run_dir)
    try:
        with console.status("stopping pods gracefully..."):
            cluster.down()
    except HousePartyError as exc:
        _fail_for(exc)
    console.print("cluster stopped")


@main.group()
def pod() -> None:
    """Stop, kill or start one pod of the local cluster."""


@pod.command("stop")
@click.argument("index", type=int)
@_run_dir_option
def pod_stop(index: int, run_dir: Path | None) -> None:
    """Drain pod INDEX gracefully: its processes move to the other pods with their state."""
    cluster = LocalCluster(run_dir)
    try:
        with console.status(f"draining pod {index}..."):
            summary = cluster.stop_pod(index)
    except HousePartyError as exc:
        _fail_for(exc)
    if summary is None:
        console.print(f"pod {index} stopped")
    else:
        console.print(
            f"pod {index} stopped: {summary.moved:,} names moved, {summary.failed:,} "
            f"could not move, in {summary.seconds:.2f} s"
        )


@pod.command("kill")
@click.argument("index", type=int)
@_run_dir_option
def pod_kill(index: int, run_dir: Path | None) -> None:
    """SIGKILL pod INDEX: its names restart on the other pods, with the state of their last
    acknowledged change (see README, When a pod leaves)."""
    cluster = LocalCluster(run_dir)
    try:
        cluster.kill_pod(index)
    except HousePartyError as exc:
        _fail_for(exc)
    console.print(f"pod {index} killed")


@pod.command("start")
@click.argument("index", type=int)
@_run_dir_option
def pod_start(index: int, run_dir: Path | None) -> None:
    """Bring pod INDEX back; it rejoins the cluster. A broken pod (one of its nodes died on
    its own) is restarted: the node still running stops first."""
    cluster = LocalCluster(run_dir)
    try:
        with console.status(f"starting pod {index}..."):
            before = cluster.start_pod(index)
    except HousePartyError as exc:
        _fail_for(exc)
    if before.startswith("broken"):
        console.print(f"pod {index} restarted (it was {escape(before)})")
    else:
        console.print(f"pod {index} started")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _wide_when_piped() -> Console:
    """The console for tables: piped, they keep their cells whole rather than fit the 80
    columns a console without a terminal assumes."""
    return console if console.is_terminal else Console(width=200, soft_wrap=True, emoji=False)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


# -- driving and inspecting any cluster ------------------------------------------------------


def _target(
    nodes: tuple[str, ...], cookie: str | None, run_dir: Path | None
) -> tuple[list[str], str, str | None]:
    """The sidecars to try, in order, the cookie and the TLS folder: ``--node``
    (repeatable), else ``HOUSEPARTY_NODES``, else every pod of the run folder's local
    cluster. Without any of them, a run folder with no cluster is an error: guessing a node
    name could reach another cluster on the same host. TLS: the folder
    ``HOUSEPARTY_TLS_DIR`` (or a pod's ``HP_TLS_DIR``) names (``tls.crt``, ``tls.key``,
    ``ca.crt``), else the run folder's client certificate when its cluster runs TLS and is
    the one asked; else none."""
    seeds = list(nodes) or _env_nodes()
    state = None
    if not seeds or cookie is None:
        try:
            state = LocalCluster(run_dir).state()
        except NotRunning as exc:
            if not seeds:
                _fail(
                    f"{exc}: start one with `houseparty up`, or name sidecars of a cluster "
                    "with --node or HOUSEPARTY_NODES",
                    Exit.NOT_FOUND,
                )
    if not seeds:
        assert state is not None
        seeds = [PodSpec(i, state.base_port, state.tag).sidecar_node for i in state.pod_states]
    if cookie is None:
        cookie = state.cookie if state else resolve_cookie(None)
    tls = env_tls_dir()
    if tls is None and state is not None and state.tls:
        tls = str(LocalCluster(run_dir).tls_dir(CLIENT_CERTIFICATE))
    return seeds, cookie, tls


def _env_nodes() -> list[str]:
    return [n for n in re.split(r"[,\s]+", os.environ.get("HOUSEPARTY_NODES", "")) if n]


def _connect_options(func: F) -> F:
    func = click.option(
        "--node",
        multiple=True,
        help="A sidecar of the cluster (repeatable: the first that answers serves; "
        "default HOUSEPARTY_NODES, else every pod of the run folder).",
    )(func)
    func = click.option("--cookie", default=None, help="The cluster's cookie.")(func)
    return _run_dir_option(func)


def _client(node: tuple[str, ...], cookie: str | None, run_dir: Path | None) -> HouseParty:
    seeds, secret, tls = _target(node, cookie, run_dir)
    try:
        return HouseParty(seeds, cookie=secret, tls=tls)
    except HousePartyError as exc:
        _fail_for(exc)
    except TlsError as exc:
        _fail(f"the TLS certificates (HOUSEPARTY_TLS_DIR, or the run folder's): {exc}")


def _api(
    call: Callable[[HouseParty], T], node: tuple[str, ...], cookie: str | None, run_dir: Path | None
) -> T:
    with _client(node, cookie, run_dir) as hp:
        try:
            return call(hp)
        except HousePartyError as exc:
            _fail_for(exc)
        except PyNodesError as exc:
            _fail(f"the request could not be sent: {exc}")


def _names(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Names as the cluster takes them: not empty, at most MAX_NAME characters."""
    for name in [value] if isinstance(value, str) else value:
        if not name:
            raise click.BadParameter("a name cannot be empty")
        if len(name) > MAX_NAME:
            raise click.BadParameter(
                f"a name has at most {MAX_NAME} characters; this one has {len(name)}"
            )
    return value


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@main.command()
@_connect_options
@_json_option
@click.option("--watch", is_flag=True, help="Refresh the table until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
def status(
    node: tuple[str, ...],
    cookie: str | None,
    run_dir: Path | None,
    as_json: bool,
    watch: bool,
    interval: float,
) -> None:
    """Pods: node names, connections, health port, uptime, version, rooms and people,
    workers per kind, ring share and memory (--watch: refreshed live)."""
    if watch and as_json:
        _fail("--watch shows the table: it does not go with --json", Exit.USAGE)
    local = LocalCluster(run_dir)
    with _client(node, cookie, run_dir) as hp:
        if not watch:
            try:
                report = _cluster_status(hp, local)
            except HousePartyError as exc:
                _fail_for(exc)
            if as_json:
                _print_json(report)
                return
            _wide_when_piped().print(_status_table(report))
            if report["local_run_dir"]:
                console.print(
                    f"local run folder: {local.run_dir} (logs in {local.run_dir / 'logs'})"
                )
            return
        _watch_status(hp, local, interval)


def _watch_status(hp: HouseParty, local: LocalCluster, interval: float) -> None:
    """The status table, asked again every ``interval`` seconds until Ctrl-C, which ends
    it with exit 0. In a terminal the table is redrawn in place; otherwise each refresh
    is printed after the last."""

    def view() -> Table | str:
        stamp = time.strftime("%H:%M:%S")
        try:
            table = _status_table(_cluster_status(hp, local))
        except HousePartyError as exc:
            return f"[bold red]{stamp} error:[/] {escape(str(exc))}"
        table.caption = f"updated {stamp}, every {interval:g} s; Ctrl-C to leave"
        return table

    with contextlib.suppress(KeyboardInterrupt):
        if console.is_terminal:
            with Live(view(), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(view(), refresh=True)
        else:
            while True:
                console.print(view())
                time.sleep(interval)


def _cluster_status(hp: HouseParty, local: LocalCluster) -> dict[str, Any]:
    """Every pod of the ring as the first sidecar that answers sees it, and the pods of the
    run folder's local cluster that are not in it."""
    # Each local pod's condition: up, down, or broken (one of its nodes died on its own).
    local_pods: dict[str, str] = {}
    with contextlib.suppress(NotRunning):
        for spec, pod_state in local.pods():
            local_pods[spec.sidecar_node] = local.condition(pod_state)
    first = _pod_status(hp, hp.sidecar)
    pods = []
    for sidecar in first["ring"]:
        try:
            pods.append(_pod_status(hp, sidecar))
        except HousePartyError as exc:
            pods.append({"node": sidecar, "error": str(exc)})
    return {
        "pods": pods,
        "local_run_dir": str(local.run_dir) if local_pods else None,
        "local_pods_down": sorted(set(local_pods) - {p["node"] for p in pods}),
        "local_pod_conditions": local_pods,
    }


def _status_table(report: dict[str, Any]) -> Table:
    """One row per pod; its Python node in red when not connected to its sidecar."""
    columns = [
        "sidecar",
        "python node",
        "health port",
        "uptime",
        "version",
        "rooms",
        "people",
        "workers",
        "ring share",
        "sidecar memory",
        "python RSS",
    ]
    gap = ["-"] * (len(columns) - 2)
    conditions: dict[str, str] = report.get("local_pod_conditions", {})
    rows: list[list[Any]] = []
    for p in report["pods"]:
        if "error" in p:
            rows.append([p["node"], "[red]unreachable[/]", *gap])
            continue
        python_rss = (p.get("python_memory") or {}).get("rss")
        kinds = p.get("kinds") or {}
        python = escape(str(p["python_node"]))
        rows.append(
            [
                p["node"],
                _python_cell(python, p["python_connected"], conditions.get(p["node"], "up")),
                p.get("health_port") or "-",
                _duration(p["uptime_s"]) if "uptime_s" in p else "-",
                p.get("version") or "-",
                kinds.get("room", 0),
                kinds.get("person", 0),
                _per_kind(p.get("workers")),
                f"{100 * p['ring_share']:.1f}%",
                _mib(p["memory"]),
                _mib(python_rss) if python_rss else "-",
            ]
        )
    for sidecar in report["local_pods_down"]:
        # Running, yet not in the ring: joining, or cut off from the node that answered.
        condition = conditions.get(sidecar, "down")
        if condition == "up":
            condition = "up, not in the ring"
        rows.append([sidecar, f"[red]{condition}[/]", *gap])
    return _table("HouseParty cluster", columns, rows)


def _python_cell(python: str, connected: bool, condition: str) -> str:
    """The Python node, red when not connected, with the local pod's condition when it
    is broken."""
    text = f"[green]{python}[/]" if connected else f"[red]{python} (not connected)[/]"
    return text if condition == "up" else f"{text} [red]({condition})[/]"


def _pod_status(hp: HouseParty, sidecar: str) -> dict[str, Any]:
    status: dict[str, Any] = from_term(
        hp.rpc("erpc", "call", [Atom(sidecar), Atom("houseparty"), Atom("pod_status"), [], 5000])
    )
    if isinstance(status.get("version"), bytes):
        status["version"] = status["version"].decode()
    # Kinds of one's own workers may be named by binaries: text, as for the others.
    for counts in ("kinds", "workers"):
        if isinstance(status.get(counts), dict):
            status[counts] = {
                key.decode(errors="replace") if isinstance(key, bytes) else key: n
                for key, n in status[counts].items()
            }
    return status


def _duration(seconds: int) -> str:
    """``2d03h``, ``1h05m``, ``4m09s`` or ``12s``: the two largest units."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _per_kind(counts: dict[str, int] | None) -> str:
    """``person 3, room 10``: the workers of a pod per kind, those it has any of."""
    if not counts:
        return "-"
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()) if n) or "0"


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


@main.command()
@_connect_options
@_json_option
@click.option(
    "--plain", is_flag=True, help="One line per room: the room, then its people, tab-separated."
)
@click.option("--match", "pattern", default=None, help="Only rooms whose name matches this glob.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many rooms.")
def dump(
    node: tuple[str, ...],
    cookie: str | None,
    run_dir: Path | None,
    as_json: bool,
    plain: bool,
    pattern: str | None,
    limit: int | None,
) -> None:
    """Every room with the people in it, sorted by room (a table; --plain for many rooms)."""
    rooms = _api(lambda hp: hp.dump(), node, cookie, run_dir)
    names = sorted(r for r in rooms if pattern is None or fnmatch.fnmatchcase(r, pattern))
    shown = names if limit is None else names[:limit]
    if as_json:
        _print_json({room: rooms[room] for room in shown})
    elif plain:
        click.echo("".join("\t".join([room, *rooms[room]]) + "\n" for room in shown), nl=False)
    else:
        rows = [[room, len(rooms[room]), ", ".join(rooms[room])] for room in shown]
        console.print(_table("rooms", ["room", "people", "who"], rows))
    if len(shown) < len(names):
        err_console.print(f"{len(names) - len(shown)} more rooms not shown (--limit {limit})")


@main.command("who-is-in")
@click.argument("room", callback=_names)
@_connect_options
@_json_option
def who_is_in(
    room: str, node: tuple[str, ...], cookie: str | None, run_dir: Path | None, as_json: bool
) -> None:
    """The people in ROOM, one per line."""
    people = _api(lambda hp: hp.who_is_in(room), node, cookie, run_dir)
    if as_json:
        _print_json(people)
    elif people:
        click.echo("".join(f"{person}\n" for person in people), nl=False)
    else:
        err_console.print(f"nobody is in {escape(room)}")


@main.command("where-is")
@click.argument("person", callback=_names)
@_connect_options
@_json_option
def where_is(
    person: str, node: tuple[str, ...], cookie: str | None, run_dir: Path | None, as_json: bool
) -> None:
    """The room PERSON is in."""
    room = _api(lambda hp: hp.where_is(person), node, cookie, run_dir)
    if as_json:
        _print_json(room)
    elif room is not None:
        click.echo(room)
    if room is None:
        # Nobody of that name, or somebody every room refused: no room to name either way.
        _fail(f"{person} is in no room", Exit.NOT_FOUND)


@main.command("log")
@click.argument("person", callback=_names)
@_connect_options
@_json_option
def room_log(
    person: str, node: tuple[str, ...], cookie: str | None, run_dir: Path | None, as_json: bool
) -> None:
    """The rooms PERSON walked into, newest first."""
    log = _api(lambda hp: hp.get_person_room_log(person), node, cookie, run_dir)
    if as_json:
        _print_json([{"at": dt.isoformat(), "room": room} for dt, room in log])
    elif log:
        console.print(
            _table(
                f"{escape(person)}'s rooms",
                ["at (UTC)", "room"],
                [[dt.isoformat(), escape(room)] for dt, room in log],
            )
        )
    if not log:
        _fail(f"{person} has walked into no room", Exit.NOT_FOUND)


@main.command("add-rooms")
@click.argument("rooms", nargs=-1, required=True, callback=_names)
@click.option(
    "--max",
    "max_people",
    type=click.IntRange(1, ROOM_MAX_LIMIT),
    default=None,
    help=f"Max people per new room (at most {ROOM_MAX_LIMIT}).",
)
@_connect_options
def add_rooms(
    rooms: tuple[str, ...],
    max_people: int | None,
    node: tuple[str, ...],
    cookie: str | None,
    run_dir: Path | None,
) -> None:
    """Add ROOMS (existing rooms are left as they are)."""
    _api(lambda hp: hp.add_rooms(list(rooms), max=max_people), node, cookie, run_dir)
    console.print("ok")


@main.command("set-max")
@click.argument("room", callback=_names)
@click.argument("max_people", metavar="MAX", type=click.IntRange(1, ROOM_MAX_LIMIT))
@_connect_options
def set_max(
    room: str, max_people: int, node: tuple[str, ...], cookie: str | None, run_dir: Path | None
) -> None:
    """Set how many people ROOM holds at most, MAX up to 10000 (a room holding more refuses)."""
    _api(lambda hp: hp.set_room_max(room, max_people), node, cookie, run_dir)
    console.print("ok")


@main.command("walk")
@click.argument("room", callback=_names)
@click.argument("people", nargs=-1, required=True, callback=_names)
@_connect_options
def walk(
    room: str,
    people: tuple[str, ...],
    node: tuple[str, ...],
    cookie: str | None,
    run_dir: Path | None,
) -> None:
    """Walk PEOPLE into ROOM, in order, stopping at the first refusal (which names the
    room, the person refused and those who walked in before)."""
    _api(lambda hp: hp.walk_into(room, list(people)), node, cookie, run_dir)
    console.print("ok")


@main.command("pod-node")
def pod_node() -> None:
    """Run this pod's Python node (reads the pod environment; drains on SIGTERM)."""
    from houseparty.pod import main as pod_main

    pod_main()


@main.command()
@click.option("--pods", default=3, show_default=True, type=click.IntRange(2, 32))
@click.option("--cookie", default=None, help="Cookie for a fresh cluster.")
@click.option("--base-port", default=DEFAULT_BASE_PORT, show_default=True, type=int)
@click.option("--pause", is_flag=True, help="Wait for Enter between steps.")
@_name_suffix_option
@_run_dir_option
def demo(
    pods: int,
    cookie: str | None,
    base_port: int,
    pause: bool,
    name_suffix: str,
    run_dir: Path | None,
) -> None:
    """The seed scenario step by step, on the running local cluster or on a fresh one."""
    cluster = LocalCluster(run_dir)
    fresh = not cluster.is_running()
    try:
        if fresh:
            with console.status("starting a fresh local cluster...") as status:
                cluster.up(
                    pods=pods,
                    cookie=cookie,
                    base_port=base_port,
                    tag=name_suffix,
                    progress=lambda msg: status.update(msg),
                )
            console.print(f"[green]{pods} pods up[/] (run folder {cluster.run_dir})")
        run_demo(cluster, console, (lambda: click.pause()) if pause else (lambda: None))
    except HousePartyError as exc:
        _fail_for(exc)
    finally:
        if fresh and cluster.is_running():
            with console.status("stopping the demo cluster gracefully..."):
                cluster.down()
            console.print("demo cluster stopped")


# -- Kubernetes ------------------------------------------------------------------------------


@main.group()
def k8s() -> None:
    """Inspect a HouseParty deployment through the Kubernetes API."""


def _sidecar_name_template(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from houseparty.cli._k8s import check_name_template

    try:
        return check_name_template(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@k8s.command("status")
@click.option(
    "--namespace",
    default=None,
    help="Namespace of the pods (default: the context's, else houseparty).",
)
@click.option(
    "--selector",
    default=None,
    help="Label selector of the pods (default: app=houseparty, as deploy/k8s).",
)
@click.option("--context", default=None, help="kubeconfig context (default: the current one).")
@click.option(
    "--kubeconfig",
    default=None,
    type=click.Path(dir_okay=False),
    help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config; in a pod "
    "without either, the pod's service account).",
)
@click.option(
    "--cookie",
    default=None,
    envvar="HOUSEPARTY_COOKIE",
    help="The cluster's cookie, to join the pods with the ring [env: HOUSEPARTY_COOKIE].",
)
@click.option(
    "--sidecar-name-template",
    default="sidecar@{ip}",
    show_default=True,
    callback=_sidecar_name_template,
    help="A pod's sidecar node name from its IP; for clusters whose node "
    "basename (HP_NODE_BASENAME) is not sidecar.",
)
@_json_option
def k8s_status(
    namespace: str | None,
    selector: str | None,
    context: str | None,
    kubeconfig: str | None,
    cookie: str | None,
    sidecar_name_template: str,
    as_json: bool,
) -> None:
    """The pods Kubernetes shows, their node names, and how they match the cluster's ring."""
    from houseparty.cli import _k8s

    try:
        with console.status("listing pods..."):
            report = _k8s.k8s_status(
                namespace=namespace,
                selector=selector,
                context=context,
                kubeconfig=kubeconfig,
                cookie=cookie,
                sidecar_template=sidecar_name_template,
            )
    except HousePartyError as exc:
        _fail_for(exc)
    if as_json:
        _print_json(report.to_json())
        return
    console.print(_k8s.status_table(report))
    for line in _k8s.status_notes(report):
        console.print(line)


# -- benchmarks ------------------------------------------------------------------------------


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, not {value!r}") from None
    if not sizes or min(sizes) < 3:
        raise click.BadParameter("sizes must be integers of at least 3")
    return sizes


@main.command()
@click.argument(
    "benchmarks",
    nargs=-1,
    type=click.Choice(["all", "scale", "calls", "walks", "handoff", "dump", "registry", "kill"]),
)
@click.option("--quick", is_flag=True, help="Small sizes: the whole run in about 2 minutes.")
@click.option("--sizes", callback=_int_list, help="scale: process counts, e.g. 10000,100000.")
@click.option("--people", type=click.IntRange(1), help="walks: people in the cluster.")
@click.option("--handoff-size", type=click.IntRange(3), help="handoff: rooms on the 3 pods.")
@click.option("--dump-sizes", callback=_int_list, help="dump: room counts, e.g. 10000,100000.")
@click.option(
    "--kill-sizes",
    callback=_int_list,
    help="kill: room counts of the clusters whose killed pod's names restart, e.g. 333000.",
)
@click.option(
    "--registry-names",
    type=click.IntRange(min=1),
    default=None,
    help="registry: names registered with hp_registry.",
)
@click.option(
    "--settle/--no-settle",
    default=None,
    help="Wait (up to 45 s per cluster) until the registries settled the new ring "
    "before creating names [default: on; off with --quick].",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON here.")
@click.option(
    "--plots",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write PNG plots into this folder (needs matplotlib).",
)
def bench(
    benchmarks: tuple[str, ...],
    quick: bool,
    sizes: list[int] | None,
    people: int | None,
    handoff_size: int | None,
    dump_sizes: list[int] | None,
    kill_sizes: list[int] | None,
    registry_names: int | None,
    settle: bool | None,
    out: Path | None,
    plots: Path | None,
) -> None:
    """Benchmarks on fresh local 3-pod clusters of their own: scale, calls, walks, handoff,
    dump, registry, kill (all by default). Prints a table per benchmark against its target.

    The benchmarks are not installed with houseparty: they are the benchmarks/ package of a
    checkout, found beside the houseparty/ package that runs, so this command needs a
    checkout installed with pip install -e ."""
    try:
        load_benchmarks()
    except ImportError as exc:
        _fail(str(exc))
    from benchmarks import _report as report_mod

    names = (
        list(report_mod.BENCHMARKS)
        if not benchmarks or "all" in benchmarks
        else [b for b in report_mod.BENCHMARKS if b in benchmarks]
    )
    settings = report_mod.BenchSettings.quick() if quick else report_mod.BenchSettings()
    if sizes:
        settings.scale_sizes = sizes
    if people:
        settings.people = people
    if handoff_size:
        settings.handoff = handoff_size
    if dump_sizes:
        settings.dump_sizes = dump_sizes
    if kill_sizes:
        settings.kill_sizes = kill_sizes
    if registry_names:
        settings.registry_names = registry_names
    if settle is not None:
        settings.settle = settle
    # The tables are wide: give them room when the output is not a terminal (a log file).
    out_console = _wide_when_piped()
    reporter = report_mod.RichReporter(out_console)

    def show(name: str, result: dict[str, Any]) -> None:
        for table in report_mod.tables(name, result):
            out_console.print(table)

    try:
        results = report_mod.run_benchmarks(names, settings, reporter, show)
    except KeyboardInterrupt:
        reporter.done()
        _fail("interrupted; the benchmark clusters are stopped")
    except HousePartyError as exc:
        reporter.done()
        _fail_for(exc)
    if out is not None:
        report_mod.write_json(out, results)
        console.print(f"figures written to {out}")
    if plots is not None:
        from benchmarks._plot import plot_results

        try:
            for path in plot_results(results, plots):
                console.print(f"plot written to {path}")
        except ImportError:
            _fail("plots need matplotlib: pip install -e '.[dev]'")
