"""The ``houseparty`` command line: run a local cluster, drive it, inspect any cluster."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from houseparty._client import HouseParty, from_term
from houseparty._errors import HousePartyError, NotRunning
from houseparty.cli._benchmarks import load_benchmarks
from houseparty.cli._demo import run_demo
from houseparty.cli._localcluster import (
    DEFAULT_BASE_PORT,
    LocalCluster,
    PodSpec,
    default_run_dir,
    resolve_cookie,
)
from py_nodes._terms import Atom

__all__ = ["main"]

DEFAULT_NODE = "sidecar1@127.0.0.1"

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(1)


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


@click.group()
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
@_name_suffix_option
@_run_dir_option
def up(
    pods: int,
    cookie: str | None,
    detach: bool,
    base_port: int,
    workers: tuple[str, ...],
    replica_copies: int | None,
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
            )
    except HousePartyError as exc:
        _fail(str(exc))
    except TimeoutError as exc:
        _fail(f"{exc}; logs are in {cluster.run_dir / 'logs'}")
    console.print(f"[green]{state.pods} pods up[/] (run folder {cluster.run_dir})")
    for spec, _pod in cluster.pods():
        console.print(f"  pod {spec.index}: {spec.sidecar_node} + {spec.python_node}")
    first = PodSpec(1, state.base_port, state.tag).sidecar_node
    console.print(
        f"attach iex with:  iex --name me@127.0.0.1 --cookie {state.cookie} --remsh {first}"
    )
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
        _fail(str(exc))
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
            cluster.stop_pod(index)
    except HousePartyError as exc:
        _fail(str(exc))
    console.print(f"pod {index} stopped")


@pod.command("kill")
@click.argument("index", type=int)
@_run_dir_option
def pod_kill(index: int, run_dir: Path | None) -> None:
    """SIGKILL pod INDEX: its processes restart on the other pods, without their state."""
    cluster = LocalCluster(run_dir)
    try:
        cluster.kill_pod(index)
    except HousePartyError as exc:
        _fail(str(exc))
    console.print(f"pod {index} killed")


@pod.command("start")
@click.argument("index", type=int)
@_run_dir_option
def pod_start(index: int, run_dir: Path | None) -> None:
    """Bring pod INDEX back; it rejoins the cluster."""
    cluster = LocalCluster(run_dir)
    try:
        with console.status(f"starting pod {index}..."):
            cluster.start_pod(index)
    except HousePartyError as exc:
        _fail(str(exc))
    console.print(f"pod {index} started")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


# -- driving and inspecting any cluster ------------------------------------------------------


def _target(node: str | None, cookie: str | None, run_dir: Path | None) -> tuple[str, str]:
    """``--node``/``--cookie``, else the local cluster of the run folder, else defaults."""
    local = LocalCluster(run_dir)
    state = None
    if node is None or cookie is None:
        with contextlib.suppress(NotRunning):
            state = local.state()
    if node is None:
        node = PodSpec(1, state.base_port, state.tag).sidecar_node if state else DEFAULT_NODE
    if cookie is None:
        cookie = state.cookie if state else resolve_cookie(None)
    return node, cookie


def _connect_options(func: F) -> F:
    func = click.option("--node", default=None, help="Any sidecar of the cluster.")(func)
    func = click.option("--cookie", default=None, help="The cluster's cookie.")(func)
    return _run_dir_option(func)


def _client(node: str | None, cookie: str | None, run_dir: Path | None) -> HouseParty:
    target, secret = _target(node, cookie, run_dir)
    try:
        return HouseParty(target, cookie=secret)
    except HousePartyError as exc:
        _fail(str(exc))


def _api(call: Callable[[HouseParty], T], node: str | None, cookie: str | None,
         run_dir: Path | None) -> T:  # fmt: skip
    with _client(node, cookie, run_dir) as hp:
        try:
            return call(hp)
        except HousePartyError as exc:
            _fail(str(exc))


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@main.command()
@_connect_options
@_json_option
def status(node: str | None, cookie: str | None, run_dir: Path | None, as_json: bool) -> None:
    """Pods, node names, connections, workers per kind, ring share and memory."""
    local = LocalCluster(run_dir)
    local_pods: dict[str, int] = {}
    with contextlib.suppress(NotRunning):
        for spec, pod_state in local.pods():
            local_pods[spec.sidecar_node] = pod_state.sidecar_pid or 0
    with _client(node, cookie, run_dir) as hp:
        first = _pod_status(hp, hp.sidecar)
        pods = []
        for sidecar in first["ring"]:
            try:
                pods.append(_pod_status(hp, sidecar))
            except HousePartyError as exc:
                pods.append({"node": sidecar, "error": str(exc)})
    missing = sorted(set(local_pods) - {p["node"] for p in pods})
    if as_json:
        _print_json({"pods": pods, "local_run_dir": str(local.run_dir) if local_pods else None,
                     "local_pods_down": missing})  # fmt: skip
        return
    rows = []
    for p in pods:
        if "error" in p:
            rows.append([p["node"], "-", "[red]unreachable[/]", "-", "-", "-", "-", "-"])
            continue
        python_rss = (p.get("python_memory") or {}).get("rss")
        rows.append([
            p["node"], p["python_node"],
            "[green]yes[/]" if p["python_connected"] else "[red]no[/]",
            p["names"], _per_kind(p.get("workers")), f"{100 * p['ring_share']:.1f}%",
            _mib(p["memory"]), _mib(python_rss) if python_rss else "-",
        ])  # fmt: skip
    for sidecar in missing:
        rows.append([sidecar, "-", "[red]down[/]", "-", "-", "-", "-", "-"])
    console.print(_table(
        "HouseParty cluster",
        ["sidecar", "python node", "python connected", "names", "workers", "ring share",
         "sidecar memory", "python RSS"],
        rows,
    ))  # fmt: skip
    if local_pods:
        console.print(f"local run folder: {local.run_dir} (logs in {local.run_dir / 'logs'})")


def _pod_status(hp: HouseParty, sidecar: str) -> dict[str, Any]:
    status: dict[str, Any] = from_term(
        hp.rpc("erpc", "call", [Atom(sidecar), Atom("houseparty"), Atom("pod_status"), [], 5000])
    )
    return status


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
def dump(node: str | None, cookie: str | None, run_dir: Path | None, as_json: bool) -> None:
    """Every room with the people in it."""
    rooms = _api(lambda hp: hp.dump(), node, cookie, run_dir)
    if as_json:
        _print_json(rooms)
        return
    rows = [[room, len(people), ", ".join(people)] for room, people in sorted(rooms.items())]
    console.print(_table("rooms", ["room", "people", "who"], rows))


@main.command("who-is-in")
@click.argument("room")
@_connect_options
@_json_option
def who_is_in(room: str, node: str | None, cookie: str | None, run_dir: Path | None,
              as_json: bool) -> None:  # fmt: skip
    """The people in ROOM."""
    people = _api(lambda hp: hp.who_is_in(room), node, cookie, run_dir)
    if as_json:
        _print_json(people)
    else:
        console.print(", ".join(people) if people else f"nobody is in {room}")


@main.command("where-is")
@click.argument("person")
@_connect_options
@_json_option
def where_is(person: str, node: str | None, cookie: str | None, run_dir: Path | None,
             as_json: bool) -> None:  # fmt: skip
    """The room PERSON is in."""
    room = _api(lambda hp: hp.where_is(person), node, cookie, run_dir)
    if as_json:
        _print_json(room)
    else:
        console.print(room if room is not None else f"{person} is nowhere")


@main.command("log")
@click.argument("person")
@_connect_options
@_json_option
def room_log(person: str, node: str | None, cookie: str | None, run_dir: Path | None,
             as_json: bool) -> None:  # fmt: skip
    """The rooms PERSON walked into, newest first."""
    log = _api(lambda hp: hp.get_person_room_log(person), node, cookie, run_dir)
    if as_json:
        _print_json([{"at": dt.isoformat(), "room": room} for dt, room in log])
        return
    console.print(_table(f"{person}'s rooms", ["at (UTC)", "room"],
                         [[dt.isoformat(), room] for dt, room in log]))  # fmt: skip


@main.command("add-rooms")
@click.argument("rooms", nargs=-1, required=True)
@click.option("--max", "max_people", type=int, default=None, help="Max people per new room.")
@_connect_options
def add_rooms(rooms: tuple[str, ...], max_people: int | None, node: str | None,
              cookie: str | None, run_dir: Path | None) -> None:  # fmt: skip
    """Add ROOMS (existing rooms are left as they are)."""
    _api(lambda hp: hp.add_rooms(list(rooms), max=max_people), node, cookie, run_dir)
    console.print("ok")


@main.command("walk")
@click.argument("room")
@click.argument("people", nargs=-1, required=True)
@_connect_options
def walk(room: str, people: tuple[str, ...], node: str | None, cookie: str | None,
         run_dir: Path | None) -> None:  # fmt: skip
    """Walk PEOPLE into ROOM, in order, stopping at the first refusal."""
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
                cluster.up(pods=pods, cookie=cookie, base_port=base_port, tag=name_suffix,
                           progress=lambda msg: status.update(msg))  # fmt: skip
            console.print(f"[green]{pods} pods up[/] (run folder {cluster.run_dir})")
        run_demo(cluster, console, (lambda: click.pause()) if pause else (lambda: None))
    except HousePartyError as exc:
        _fail(str(exc))
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
def k8s_status(namespace: str | None, selector: str | None, context: str | None,
               kubeconfig: str | None, cookie: str | None, sidecar_name_template: str,
               as_json: bool) -> None:  # fmt: skip
    """The pods Kubernetes shows, their node names, and how they match the cluster's ring."""
    from houseparty.cli import _k8s

    try:
        with console.status("listing pods..."):
            report = _k8s.k8s_status(
                namespace=namespace, selector=selector, context=context,
                kubeconfig=kubeconfig, cookie=cookie, sidecar_template=sidecar_name_template,
            )  # fmt: skip
    except HousePartyError as exc:
        _fail(str(exc))
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
@click.argument("benchmarks", nargs=-1,
                type=click.Choice(["all", "scale", "calls", "walks", "handoff", "dump",
                                   "registry"]))  # fmt: skip
@click.option("--quick", is_flag=True, help="Small sizes: the whole run in about 2 minutes.")
@click.option("--sizes", callback=_int_list, help="scale: process counts, e.g. 10000,100000.")
@click.option("--people", type=click.IntRange(1), help="walks: people in the cluster.")
@click.option("--handoff-size", type=click.IntRange(3), help="handoff: rooms on the 3 pods.")
@click.option("--dump-sizes", callback=_int_list, help="dump: room counts, e.g. 10000,100000.")
@click.option("--registry-names", type=click.IntRange(min=1), default=None,
              help="registry: names registered with hp_registry.")  # fmt: skip
@click.option("--settle/--no-settle", default=None,
              help="Wait (up to 45 s per cluster) until the registries settled the new ring "
              "before creating names [default: on; off with --quick].")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON here.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path),
              help="Write PNG plots into this folder (needs matplotlib).")  # fmt: skip
def bench(benchmarks: tuple[str, ...], quick: bool, sizes: list[int] | None,
          people: int | None, handoff_size: int | None, dump_sizes: list[int] | None,
          registry_names: int | None, settle: bool | None, out: Path | None,
          plots: Path | None) -> None:  # fmt: skip
    """Benchmarks on fresh local 3-pod clusters of their own: scale, calls, walks, handoff,
    dump, registry (all by default). Prints a table per benchmark against its target.

    The benchmarks are not installed with houseparty: they are the benchmarks/ package of a
    checkout, found beside the houseparty/ package that runs, so this command needs a
    checkout installed with pip install -e ."""
    try:
        load_benchmarks()
    except ImportError as exc:
        _fail(str(exc))
    from benchmarks import _report as report_mod

    names = list(report_mod.BENCHMARKS) if not benchmarks or "all" in benchmarks else [
        b for b in report_mod.BENCHMARKS if b in benchmarks]  # fmt: skip
    settings = report_mod.BenchSettings.quick() if quick else report_mod.BenchSettings()
    if sizes:
        settings.scale_sizes = sizes
    if people:
        settings.people = people
    if handoff_size:
        settings.handoff = handoff_size
    if dump_sizes:
        settings.dump_sizes = dump_sizes
    if registry_names:
        settings.registry_names = registry_names
    if settle is not None:
        settings.settle = settle
    # The tables are wide: give them room when the output is not a terminal (a log file).
    out_console = console if console.is_terminal else Console(width=160, soft_wrap=True)
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
        _fail(str(exc))
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
