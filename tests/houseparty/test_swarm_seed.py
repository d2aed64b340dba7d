"""The seed's HouseParty written for swarm, in plain Elixir, running unchanged on the sidecars.

``swarm_seed/house_party.ex`` uses nothing but ``Swarm.*``, ``GenServer.start_link`` workers
and swarm's handoff callbacks. It is compiled with ``elixirc`` and loaded onto the three
sidecars of a real cluster, which then run the seed's session, move every worker with its
state when a pod stops, and bring every name back when a pod is killed.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from houseparty.cli._localcluster import sidecar_ebin
from py_nodes._terms import Atom, Pid
from tests.houseparty.conftest import Cluster
from tests.py_nodes.conftest import ErlNode

SOURCE = Path(__file__).parent / "swarm_seed" / "house_party.ex"
API = "'Elixir.SwarmSeed.HouseParty'"

if shutil.which("elixirc") is None:
    pytest.skip("elixirc is not installed (scripts/setup.sh installs it)", allow_module_level=True)


def compile_seed(out: Path) -> dict[str, bytes]:
    done = subprocess.run(
        ["elixirc", "-pa", str(sidecar_ebin()), "-o", str(out), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # Compiled against the sidecar: every Swarm function the seed calls exists there.
    assert "undefined" not in done.stderr, done.stderr
    return {beam.stem: beam.read_bytes() for beam in out.glob("*.beam")}


def load_everywhere(erl: ErlNode, sidecars: list[str], beams: dict[str, bytes]) -> None:
    for sidecar in sidecars:
        for module, code in beams.items():
            encoded = base64.b64encode(code).decode()
            loaded = erl.eval_sync(
                f"rpc:call('{sidecar}', code, load_binary, "
                f'[\'{module}\', "{module}.beam", base64:decode("{encoded}")])'
            )
            assert loaded == (Atom("module"), Atom(module)), loaded


def atoms(names: list[str]) -> str:
    return "[" + ",".join(names) + "]"


class Seed:
    """The seed's API called on one sidecar, as iex users of the seed call it."""

    def __init__(self, erl: ErlNode, sidecar: str) -> None:
        self.erl = erl
        self.sidecar = sidecar

    def __call__(self, function: str, *args: str) -> Any:
        """``function(args...)``, each argument an Erlang term as text."""
        return self.erl.eval_sync(
            f"rpc:call('{self.sidecar}', {API}, {function}, [{', '.join(args)}])", 60.0
        )

    def state(self, people: list[str]) -> tuple[Any, dict[str, Any]]:
        """The dump, and each person's room and log (times and rooms)."""
        dump = self("dump")
        persons = {p: (self("where_is", p), self("get_person_room_log", p)) for p in people}
        return dump, persons


ROOMS = [f"room_{i}" for i in range(24)]
PEOPLE = [f"guest_{i}" for i in range(48)]


def test_the_swarm_seed_runs_unchanged_through_a_drain_and_a_kill(
    cluster: Cluster, tmp_path: Path
) -> None:
    beams = compile_seed(tmp_path)
    assert set(beams) == {
        f"Elixir.SwarmSeed.{m}" for m in ("HouseParty", "RoomWorker", "PersonWorker")
    }
    erl = ErlNode(cluster.cookie)
    try:
        load_everywhere(erl, cluster.sidecars, beams)
        seed = Seed(erl, cluster.sidecars[0])

        # The seed's session.
        assert seed("add_rooms", "[den, living_room, kitchen]") == Atom("ok")
        assert seed("walk_into", "kitchen", "[kid, bilal]") == Atom("ok")
        assert seed("walk_into", "living_room", "[play, sidney, kid]") == Atom("ok")
        assert seed("dump") == {
            Atom("den"): [],
            Atom("kitchen"): [Atom("bilal")],
            Atom("living_room"): [Atom("kid"), Atom("play"), Atom("sidney")],
        }
        assert seed("who_is_in", "kitchen") == [Atom("bilal")]
        assert seed("where_is", "kid") == Atom("living_room")

        # Enough rooms and people that every pod owns some, each walked twice.
        assert seed("add_rooms", atoms(ROOMS), "100") == Atom("ok")
        for i, person in enumerate(PEOPLE):
            for room in (ROOMS[i % len(ROOMS)], ROOMS[(i * 7 + 3) % len(ROOMS)]):
                assert seed("walk_into", room, person) == Atom("ok")
        everyone = [*PEOPLE, "kid", "bilal", "play", "sidney"]
        before = seed.state(everyone)
        registered = f"rpc:call('{cluster.sidecars[0]}', hp_registry, registered, [])"
        owned_by_3 = erl.eval_sync(
            f"length([N || {{N, P}} <- {registered}, node(P) =:= '{cluster.sidecars[2]}'])"
        )
        assert owned_by_3 > 0  # the start_link workers live on the sidecars themselves

        # A graceful stop moves every worker with its state.
        cluster.runner.stop_pod(3)
        assert seed.state(everyone) == before

        # A kill brings every name back, restarted from its start_link MFA.
        cluster.runner.kill_pod(2)
        names = [f"{{room, {r}}}" for r in ["den", "living_room", "kitchen", *ROOMS]] + [
            f"{{person, {p}}}" for p in everyone
        ]

        def whereis(name: str) -> Any:
            return erl.eval_sync(
                f"rpc:call('{cluster.sidecars[0]}', 'Elixir.Swarm', whereis_name, [{name}])"
            )

        deadline = time.monotonic() + 60
        missing = names
        while missing and time.monotonic() < deadline:
            missing = [n for n in missing if not isinstance(whereis(n), Pid)]
            time.sleep(0.5)
        assert missing == []
        for room in ROOMS:
            assert isinstance(seed("who_is_in", room), list)
        for person in everyone:
            assert isinstance(seed("get_person_room_log", person), list)
    finally:
        erl.stop()
