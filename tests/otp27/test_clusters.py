"""Sidecars on OTP 27: a cluster of three, and a cluster of two OTP 25 sidecars and one OTP 27
sidecar upgraded pod by pod to OTP 27, with the Python nodes, iex 1.18 and erl as users
drive them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from houseparty import HouseParty, Workers
from py_nodes._terms import Atom
from tests.houseparty import worker_classes
from tests.houseparty.conftest import Cluster
from tests.houseparty.test_readme import iex_session, layout_free
from tests.houseparty.test_seed import SESSION_1
from tests.otp27.conftest import OTP25_ELIXIR118, OTP27, Iex27, needs_otp27, start_cluster
from tests.py_nodes.conftest import ErlNode

pytestmark = needs_otp27

# OTP 26 and later keep a map of atom keys in the atoms' order, not in term order, so iex
# prints a dump in the order the rooms' names were first seen unless it is asked to sort
# maps, as the seed's transcript and the README show them.
SORT_MAPS = "IEx.configure(inspect: [custom_options: [sort_maps: true]])"
PEOPLE = ["kid", "bilal", "play", "sidney"]
SHARDS = [f"shard_{i}" for i in range(24)]


def releases(cluster: Cluster) -> list[int]:
    """The OTP release each sidecar runs, asked over the distribution."""
    erl = ErlNode(cluster.cookie)
    try:
        return [
            erl.eval_sync(f"list_to_integer(rpc:call('{s}', erlang, system_info, [otp_release]))")
            for s in cluster.sidecars
        ]
    finally:
        erl.stop()


def house_state(
    hp: HouseParty, people: list[str] = PEOPLE
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    return hp.dump(), {p: hp.get_person_room_log(p) for p in people}


def iex_seed_session(cluster: Cluster, pod: int, *, remsh: bool = True) -> None:
    """The seed's first iex session, typed into iex 1.18 attached to sidecar ``pod``, in a
    house where none of its people are yet."""
    iex = Iex27(cluster.cookie, cluster.sidecars[pod - 1], remsh=remsh)
    try:
        assert iex.run(SORT_MAPS) == ":ok"
        for line, expected in SESSION_1:
            assert iex.run(line) == expected, line
    finally:
        iex.close()


@pytest.mark.usefixtures("otp27_on_path")
def test_three_otp27_sidecars_run_the_seed_and_keep_it_through_a_graceful_stop(
    tmp_path: Path, stop_at_end: list[Cluster]
) -> None:
    cluster = start_cluster(tmp_path / "run", {1: OTP27, 2: OTP27, 3: OTP27})
    stop_at_end.append(cluster)
    assert releases(cluster) == [27, 27, 27]
    iex = Iex27(cluster.cookie, cluster.sidecars[0])
    try:
        assert iex.run("System.version()").startswith('"1.18.')
        assert iex.run("HouseParty.add_rooms([:den, :living_room, :kitchen])") == ":ok"
        # Printed in the order the atoms were made, which term order would not give.
        assert iex.run("HouseParty.dump()") == "%{den: [], living_room: [], kitchen: []}"
    finally:
        iex.close()
    # The README's iex session, which opens with the seed's, shows what iex 1.18 prints.
    iex = Iex27(cluster.cookie, cluster.sidecars[1])
    try:
        assert iex.run(SORT_MAPS) == ":ok"
        for line, shown in iex_session():
            assert layout_free(iex.run(line)) == layout_free(shown), line
    finally:
        iex.close()
    with cluster.client(3) as hp:
        before = house_state(hp)
    cluster.runner.stop_pod(1)
    with cluster.client(3) as hp:
        assert house_state(hp) == before
        hp.walk_into("den", "kid")
        assert hp.where_is("kid") == "den"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Pods 1 and 2 on OTP 25 (pod 1 with Elixir 1.18 built for it, pod 2 with Debian 12's
    Elixir 1.14), pod 3 on OTP 27, with the tests' worker classes."""
    cluster = start_cluster(
        tmp_path_factory.mktemp("mixed") / "run",
        {1: OTP25_ELIXIR118, 3: OTP27},
        workers=worker_classes.SETTING,
    )
    try:
        yield cluster
    finally:
        if cluster.runner.is_running():
            cluster.runner.down(timeout=60)


def workers(cluster: Cluster, pod: int) -> Workers:
    return Workers(cluster.pods[pod - 1].sidecar_node, cookie=cluster.cookie)


def test_two_otp25_sidecars_and_one_otp27_sidecar_form_one_cluster(mixed: Cluster) -> None:
    assert releases(mixed) == [25, 25, 27]
    erl = ErlNode(mixed.cookie)
    try:
        for sidecar in mixed.sidecars:
            seen = erl.eval_sync(f"rpc:call('{sidecar}', erlang, nodes, [])")
            assert {Atom(s) for s in mixed.sidecars} - {Atom(sidecar)} <= set(seen), seen
    finally:
        erl.stop()


def test_registration_groups_and_multi_call_work_across_versions(mixed: Cluster) -> None:
    python_nodes = [Atom(p.python_node) for p in mixed.pods]
    with workers(mixed, 3) as w:
        for i, name in enumerate(SHARDS):
            w.register(name, "counter", i)
            w.join("shards", name)
        owners = {w.whereis(name).node for name in SHARDS}  # type: ignore[union-attr]
    # The ring places names behind the OTP 25 sidecars and the OTP 27 one alike.
    assert python_nodes[2] in owners and owners & set(python_nodes[:2]), owners
    for pod in (1, 2, 3):
        with workers(mixed, pod) as w:
            assert sorted(w.multi_call("shards", "get")) == list(range(len(SHARDS)))
    for pod in (1, 2, 3):
        with workers(mixed, pod) as w:
            assert w.call(SHARDS[pod], "incr") == pod + 1
    with workers(mixed, 1) as w:
        assert [w.call(name, "get") for name in SHARDS[1:4]] == [2, 3, 4]


@pytest.mark.usefixtures("otp27_on_path")
def test_iex_118_attaches_to_an_otp25_sidecar_and_runs_houseparty(mixed: Cluster) -> None:
    """iex 1.18 attaches with ``--remsh`` to an OTP 25 sidecar that carries Elixir 1.18 and
    runs the seed session. To one that carries Debian 12's Elixir 1.14 it cannot (no
    ``iex`` module there), and the user switch command attaches instead."""
    iex = Iex27(mixed.cookie, mixed.sidecars[0])
    try:
        assert iex.run("{System.version(), System.otp_release()}") == '{"1.18.3", "25"}'
    finally:
        iex.close()
    iex_seed_session(mixed, 1)

    with pytest.raises(TimeoutError, match=r"Could not load .*\(nofile\)"):
        Iex27(mixed.cookie, mixed.sidecars[1])
    iex = Iex27(mixed.cookie, mixed.sidecars[1], remsh=False)
    try:
        assert iex.run("{System.version(), System.otp_release()}") == '{"1.14.0", "25"}'
        with mixed.client(3) as hp:
            room = hp.where_is("kid")
        assert room is not None
        assert iex.run("HouseParty.where_is(:kid)") == f":{room}"
    finally:
        iex.close()


def test_a_rolling_upgrade_to_otp27_keeps_every_state(mixed: Cluster) -> None:
    """Each OTP 25 pod stops gracefully (its workers hand off to the other versions) and
    comes back on OTP 27; nothing is lost at any step."""
    with workers(mixed, 3) as w:
        counts = {name: w.call(name, "get") for name in SHARDS}
    people = ["ada", "bo", "cy"]
    with mixed.client(3) as hp:
        hp.add_rooms(["attic", "cellar"])
        hp.walk_into("attic", people)
        hp.walk_into("cellar", "cy")
        house = house_state(hp, people)
    for pod, upgraded in ((1, [27, 25, 27]), (2, [27, 27, 27])):
        other = 3 if pod == 1 else 1
        mixed.runner.stop_pod(pod)
        with workers(mixed, other) as w:
            assert {name: w.call(name, "get") for name in SHARDS} == counts
        mixed.runner.start_pod(pod, timeout=90, runtime=OTP27)
        assert releases(mixed) == upgraded
        with workers(mixed, pod) as w:
            assert {name: w.call(name, "get") for name in SHARDS} == counts
            assert sorted(w.multi_call("shards", "get")) == sorted(counts.values())
        with mixed.client(pod) as hp:
            assert house_state(hp, people) == house
    # Started again without a runtime, a pod keeps the one it last ran on.
    mixed.runner.stop_pod(3)
    mixed.runner.start_pod(3, timeout=90)
    assert releases(mixed) == [27, 27, 27]
    with workers(mixed, 3) as w:
        assert {name: w.call(name, "get") for name in SHARDS} == counts
