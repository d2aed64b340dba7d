"""``houseparty demo``: the seed scenario, step by step, on a running or a fresh local cluster.

The iex sessions run through Elixir itself: each line is evaluated on a sidecar exactly
as ``iex --remsh`` would evaluate it, and printed with Elixir's own ``inspect``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from houseparty._client import HouseParty
from houseparty._errors import ErlangMissing
from houseparty.cli._localcluster import CLIENT_CERTIFICATE, LocalCluster, PodSpec

__all__ = ["IEX_SESSIONS", "run_demo"]

IEX_SESSIONS: list[tuple[str, list[str]]] = [
    (
        "The basic HouseParty API",
        [
            "HouseParty.add_rooms([:den, :living_room, :kitchen])",
            "HouseParty.walk_into(:kitchen, [:kid, :bilal])",
            "HouseParty.walk_into(:living_room, [:play, :sidney, :kid])",
            "HouseParty.dump()",
            "HouseParty.who_is_in(:kitchen)",
            "HouseParty.where_is(:kid)",
        ],
    ),
    (
        "Rooms have a max: a full room refuses with destination_full",
        [
            "HouseParty.add_rooms([:kitchen, :living_room, :bathroom])",
            'HouseParty.walk_into(:kitchen, 1..99 |> Enum.map(fn(i) -> "peep_#{i}" |>'
            " String.to_atom() end))",
            "HouseParty.dump()",
        ],
    ),
    (
        "A person keeps a log of the rooms entered (a refused walk leaves none)",
        [
            "HouseParty.walk_into(:kitchen, :kid)",
            "HouseParty.walk_into(:den, :kid)",
            "HouseParty.walk_into(:bathroom, :kid)",
            "HouseParty.walk_into(:den, :kid)",
            "HouseParty.get_person_room_log(:kid)",
        ],
    ),
]

# Runs in `elixir`: evaluates each line on the sidecar and prints it iex-style.
_ELIXIR_RUNNER = """
[node | lines] = System.argv()
node = String.to_atom(node)
for line <- lines do
  IO.puts(IO.ANSI.format([:faint, "iex(#{node})> ", :reset, line], IO.ANSI.enabled?()))
  {value, _} = :erpc.call(node, Code, :eval_string, [line], 60_000)
  colors = if IO.ANSI.enabled?(), do: IO.ANSI.syntax_colors(), else: []
  IO.puts(inspect(value, pretty: true, width: 88, syntax_colors: colors))
end
"""


def _run_iex_lines(sidecar: str, cookie_home: Path, lines: list[str], tls: Path | None) -> None:
    elixir = shutil.which("elixir")
    if elixir is None:
        raise ErlangMissing("elixir is not installed: run scripts/setup.sh")
    name = f"demo_{secrets.token_hex(3)}@127.0.0.1"
    # The cookie comes from HOME's .erlang.cookie: on the command line, `ps` would show it.
    # A TLS cluster: the client certificate's ssl_dist_optfile, as `houseparty up --tls` prints.
    dist = [] if tls is None else ["--erl", f"-proto_dist inet_tls -ssl_dist_optfile {tls}"]
    subprocess.run(
        [elixir, "--name", name, *dist, "-e", _ELIXIR_RUNNER, sidecar, *lines],
        env={**os.environ, "HOME": str(cookie_home)},
        check=True,
    )


def _placement(hp: HouseParty) -> dict[str, str]:
    registered = hp.rpc("hp_registry", "registered", [])
    return {f"{kind}:{name}": str(pid.node) for (kind, name), pid in registered}


def _state(hp: HouseParty) -> tuple[dict[str, list[str]], dict[str, object]]:
    dump = hp.dump()
    people = sorted({p for inside in dump.values() for p in inside} | {"kid"})
    return dump, {p: hp.get_person_room_log(p) for p in people}


def run_demo(cluster: LocalCluster, console: Console, pause: Callable[[], None]) -> None:
    """The four steps of the seed scenario on the running cluster of ``cluster``."""
    state = cluster.state()
    specs = [spec for spec, _ in cluster.pods()]
    sidecar = specs[0].sidecar_node
    client = cluster.tls_dir(CLIENT_CERTIFICATE) if state.tls else None
    for step, (title, lines) in enumerate(IEX_SESSIONS, start=1):
        console.rule(f"[bold]{step}. {title}")
        _run_iex_lines(
            sidecar, cluster.cookie_home(state.cookie), lines, client and client / "dist.conf"
        )
        pause()

    leaving: PodSpec = specs[1] if len(specs) > 1 else specs[0]
    console.rule(
        f"[bold]4. A graceful stop of pod {leaving.index}: its processes move, with their state"
    )
    with HouseParty(sidecar, cookie=state.cookie, tls=client) as hp:
        before, where_before = _state(hp), _placement(hp)
    with console.status(f"draining pod {leaving.index} ({leaving.sidecar_node})..."):
        cluster.stop_pod(leaving.index)
    survivor = next(s for s in specs if s.index != leaving.index).sidecar_node
    with HouseParty(survivor, cookie=state.cookie, tls=client) as hp:
        after, where_after = _state(hp), _placement(hp)
    moved = Table(title=f"processes that lived on pod {leaving.index}")
    for column in ("name", "was on", "now on"):
        moved.add_column(column)
    for name, node in sorted(where_before.items()):
        if node == leaving.python_node:
            moved.add_row(name, node, where_after.get(name, "[red]lost[/]"))
    console.print(moved)
    same_rooms, same_logs = before[0] == after[0], before[1] == after[1]
    console.print(f"every room unchanged: {'[green]yes' if same_rooms else '[red]NO'}[/]")
    console.print(f"every person's log unchanged: {'[green]yes' if same_logs else '[red]NO'}[/]")
    with console.status(f"bringing pod {leaving.index} back..."):
        cluster.start_pod(leaving.index)
    console.print(f"pod {leaving.index} is back and has rejoined the ring")
    if not (same_rooms and same_logs):
        raise SystemExit("state changed across a graceful stop")
