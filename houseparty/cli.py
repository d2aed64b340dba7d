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
from rich.table import Table

from houseparty._errors import HousePartyError, NotRunning
from houseparty._localcluster import DEFAULT_BASE_PORT, LocalCluster, default_run_dir

__all__ = ["main"]

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(1)


def _run_dir_option(func: F) -> F:
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Run folder of the local cluster (default {default_run_dir()}).",
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
@_run_dir_option
def up(pods: int, cookie: str | None, detach: bool, base_port: int, run_dir: Path | None) -> None:
    """Start a local cluster: a sidecar and a Python node per pod."""
    cluster = LocalCluster(run_dir)
    try:
        with console.status("starting pods...") as status:
            state = cluster.up(
                pods=pods,
                cookie=cookie,
                base_port=base_port,
                progress=lambda msg: status.update(msg),
            )
    except HousePartyError as exc:
        _fail(str(exc))
    except TimeoutError as exc:
        _fail(f"{exc}; logs are in {cluster.run_dir / 'logs'}")
    console.print(f"[green]{state.pods} pods up[/] (run folder {cluster.run_dir})")
    for spec, _pod in cluster.pods():
        console.print(f"  pod {spec.index}: {spec.sidecar_node} + {spec.python_node}")
    console.print(
        "attach iex with:  "
        f"iex --name me@127.0.0.1 --cookie {state.cookie} --remsh sidecar1@127.0.0.1"
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
