"""What a client of the cluster meets when things go wrong, each as its own error.

A client used before ``connect()`` or after ``close()``, a wrong cookie, a node that is not
there, a request that runs out of time, a function that fails on the sidecar, a sidecar
lost under the client (which carries on through another seed), and names of any length
and any text: each ends in its own class of the exception tree, at once, with no
traceback printed by the library.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from houseparty import (
    ApiError,
    AsyncHouseParty,
    BadArgument,
    ConnectError,
    CookieRefused,
    HouseParty,
    HousePartyError,
    NotConnected,
    Timeout,
    UnknownRoom,
    Workers,
)
from tests.houseparty.conftest import Cluster


def test_a_client_not_connected_says_so_at_once() -> None:
    async def scenario() -> None:
        hp = AsyncHouseParty("sidecar1_nobody@127.0.0.1", cookie="x")
        started = time.monotonic()
        with pytest.raises(NotConnected, match="connect"):
            await hp.dump()
        assert time.monotonic() - started < 1.0

    asyncio.run(scenario())


def test_a_node_that_is_not_there_is_not_a_cookie_problem() -> None:
    with pytest.raises(ConnectError) as caught:
        HouseParty(["sidecar1_nobody@127.0.0.1", "sidecar2_nobody@127.0.0.1"], cookie="x")
    assert type(caught.value) is ConnectError
    assert "sidecar1_nobody@127.0.0.1, sidecar2_nobody@127.0.0.1" in str(caught.value)


def test_errors_of_a_live_cluster(cluster: Cluster) -> None:
    with pytest.raises(CookieRefused, match="is the cookie right"):
        HouseParty(cluster.sidecars[0], cookie="not-the-cookie")

    hp = HouseParty(cluster.sidecars[0], cookie=cluster.cookie, timeout=0.5)
    try:
        with pytest.raises(Timeout, match=r"within 0\.5 s"):
            hp.rpc("timer", "sleep", [2000])
        with pytest.raises(ApiError) as caught:
            hp.rpc("no_such_module", "f", [])
        assert not isinstance(caught.value, ConnectError)
        assert "undef" in str(caught.value)
    finally:
        hp.close()
    with pytest.raises(NotConnected, match="closed"):
        hp.dump()
    hp.close()  # a second close is harmless
    with pytest.raises(NotConnected, match="closed"):
        hp.who_is_in("den")

    with Workers(cluster.sidecars[1], cookie=cluster.cookie) as workers:
        assert workers.whereis("nobody here") is None


def test_the_library_prints_nothing_of_its_own() -> None:
    # Warnings go to the "houseparty" and "py_nodes" loggers; an application that set up
    # no logging sees the exception and nothing else.
    script = (
        "from houseparty import HouseParty, ConnectError\n"
        "try:\n"
        "    HouseParty('sidecar9_nobody@127.0.0.1', cookie='x')\n"
        "except ConnectError:\n"
        "    print('refused')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "refused\n"
    assert done.stderr == ""


def test_a_lost_sidecar_is_left_for_the_next_seed(cluster: Cluster) -> None:
    with HouseParty(cluster.sidecars, cookie=cluster.cookie) as hp:
        assert hp.sidecar == cluster.sidecars[0]
        hp.add_rooms(["den", "kitchen"])
        hp.walk_into("kitchen", ["kid", "bilal"])
        cluster.runner.kill_pod(1)
        # The next request finds its sidecar gone and asks the next seed.
        assert hp.who_is_in("kitchen") == ["bilal", "kid"]
        assert hp.sidecar == cluster.sidecars[1]
        hp.walk_into("den", "kid")
        assert hp.where_is("kid") == "den"


NAMES = st.text(min_size=0, max_size=1000)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=NAMES)
def test_any_name_gets_an_answer_or_a_clean_error(live: HouseParty, name: str) -> None:
    for call in (
        lambda: live.where_is(name),
        lambda: live.who_is_in(name),
        lambda: live.get_person_room_log(name),
        lambda: live.walk_into("hall", name),
        lambda: live.walk_into(name, "guest"),
    ):
        try:
            call()
        except (BadArgument, UnknownRoom):
            pass
        except HousePartyError as exc:  # pragma: no cover - shown when it happens
            pytest.fail(f"{name!r}: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HouseParty]:
    from tests.houseparty.conftest import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("names"))
    try:
        with HouseParty(cluster.sidecars[0], cookie=cluster.cookie) as hp:
            hp.add_rooms(["hall"], max=10_000)
            yield hp
    finally:
        cluster.runner.down(timeout=60)
