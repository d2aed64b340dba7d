"""A local cluster with TLS distribution (``houseparty up --tls``): rooms, walks and a graceful
pod stop over TLS, the client and the CLI on the run folder's certificates, and the sidecars
refusing nodes without a certificate, with one from another CA, or without TLS at all."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from houseparty import AsyncHouseParty, ClusterError, CookieRefused, HouseParty
from houseparty._certs import dist_optfile, make_certificates
from houseparty.cli._localcluster import CLIENT_CERTIFICATE, LocalCluster
from py_nodes import Atom
from tests.houseparty.conftest import Cluster, free_base_port
from tests.py_nodes.conftest import ErlNode

REFUSED_WITHIN_S = 5.0
PANG = Atom("pang")


def start_cluster(run_dir: Path, *, tls: bool, pods: int = 2) -> Cluster:
    runner = LocalCluster(run_dir)
    cookie = "hp_" + os.urandom(8).hex()
    tag = "_" + os.urandom(3).hex()
    runner.up(
        pods=pods, cookie=cookie, base_port=free_base_port(pods), tag=tag, timeout=90, tls=tls
    )
    return Cluster(runner, cookie, [spec for spec, _ in runner.pods()])


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("tls") / "run", tls=True)
    try:
        yield cluster
    finally:
        if cluster.runner.is_running():
            cluster.runner.down(timeout=60)


def client_dir(cluster: Cluster) -> Path:
    return cluster.runner.tls_dir(CLIENT_CERTIFICATE)


def connect(
    cluster: Cluster, pod: int = 1, *, tls: Path | None = None, timeout: float = 60.0
) -> HouseParty:
    sidecar = cluster.pods[pod - 1].sidecar_node
    return HouseParty(sidecar, cookie=cluster.cookie, tls=tls, timeout=timeout)


def test_rooms_walks_and_a_graceful_stop_over_tls(tls_cluster: Cluster) -> None:
    with connect(tls_cluster, tls=client_dir(tls_cluster)) as hp:
        hp.add_rooms(["den", "porch"], max=10)
        hp.walk_into("den", ["ann", "bob"])
        hp.walk_into("porch", ["cid"])
        hp.walk_into("porch", ["ann"])
        before = (hp.dump(), hp.get_person_room_log("ann"))
    tls_cluster.runner.stop_pod(2)
    with connect(tls_cluster, tls=client_dir(tls_cluster)) as hp:
        assert (hp.dump(), hp.get_person_room_log("ann")) == before
        assert hp.who_is_in("porch") == ["ann", "cid"]
    tls_cluster.runner.start_pod(2, timeout=90)


def test_every_connection_of_the_sidecars_is_tls(tls_cluster: Cluster) -> None:
    async def controllers(sidecar: str) -> list[tuple[Atom, object]]:
        async with AsyncHouseParty(sidecar, tls_cluster.cookie, tls=client_dir(tls_cluster)) as hp:
            got: list[tuple[Atom, object]] = await hp.rpc(
                "erlang", "system_info", [Atom("dist_ctrl")]
            )
            return got

    for spec in tls_cluster.pods:
        links = asyncio.run(controllers(spec.sidecar_node))
        peers = {node.name for node, _ in links}
        # The other sidecar, this pod's Python node and the client itself.
        assert spec.python_node in peers and len(peers) >= 3
        # inet_tls_dist: a process controls each connection (plain TCP's is a port).
        assert all(type(ctrl).__name__ == "Pid" for _, ctrl in links), links


def test_the_run_folder_keeps_its_keys_private(tls_cluster: Cluster) -> None:
    root = tls_cluster.runner.run_dir / "tls"
    assert not (root / "ca.key").exists()  # no certificate can be issued after `up`
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    logs = {p.name: p.read_text() for p in (tls_cluster.runner.run_dir / "logs").iterdir()}
    assert all("unencrypted" not in text for text in logs.values())
    assert any("TLS distribution" in text for name, text in logs.items() if name.startswith("py"))


def test_the_cli_uses_the_run_folders_certificates(tls_cluster: Cluster) -> None:
    env = {**os.environ, "HOUSEPARTY_RUN_DIR": str(tls_cluster.runner.run_dir)}
    env.pop("HOUSEPARTY_TLS_DIR", None)
    env.pop("HP_TLS_DIR", None)
    run = [sys.executable, "-m", "houseparty.cli"]
    done = subprocess.run(
        [*run, "add-rooms", "cli-room"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [*run, "who-is-in", "cli-room"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_a_plain_client_is_refused_with_its_cause(tls_cluster: Cluster) -> None:
    started = time.monotonic()
    with pytest.raises(CookieRefused, match="plain distribution"):
        connect(tls_cluster, timeout=5.0)
    assert time.monotonic() - started < 2 * REFUSED_WITHIN_S


def test_a_client_certificate_of_another_ca_is_refused(
    tls_cluster: Cluster, tmp_path: Path
) -> None:
    other = make_certificates(tmp_path / "other", ["client"])["client"]
    started = time.monotonic()
    with pytest.raises(CookieRefused):
        connect(tls_cluster, tls=other, timeout=5.0)
    assert time.monotonic() - started < 2 * REFUSED_WITHIN_S


def erl_node(cluster: Cluster, *extra: str) -> ErlNode:
    node = ErlNode(cluster.cookie, extra=extra)
    node.eval_sync("ok")
    return node


def ping(node: ErlNode, target: str) -> tuple[object, float]:
    started = time.monotonic()
    answer = node.eval_sync(f"net_adm:ping('{target}')")
    return answer, time.monotonic() - started


def test_an_erl_node_with_the_clusters_certificate_joins(tls_cluster: Cluster) -> None:
    optfile = client_dir(tls_cluster) / "dist.conf"
    node = erl_node(tls_cluster, "-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile))
    try:
        sidecar = tls_cluster.sidecars[0]
        assert node.eval_sync(f"rpc:call('{sidecar}', erlang, node, [])") == Atom(sidecar)
        python = tls_cluster.pods[0].python_node
        answer, took = ping(node, python)
        assert answer == Atom("pong"), (took, "".join(node.output)[-3000:])
    finally:
        node.stop()


def test_the_sidecars_refuse_nodes_without_the_clusters_certificate(
    tls_cluster: Cluster, tmp_path: Path
) -> None:
    sidecar = tls_cluster.sidecars[0]
    other = make_certificates(tmp_path / "other", ["intruder"])["intruder"]
    (other / "dist.conf").write_text(dist_optfile(other))
    ca = client_dir(tls_cluster) / "ca.crt"
    nocert = tmp_path / "nocert.conf"
    nocert.write_text(
        f'[{{server, [{{cacertfile, "{ca}"}}]}}, {{client, [{{cacertfile, "{ca}"}},'
        " {verify, verify_peer},"
        " {customize_hostname_check, [{match_fun, fun(_, _) -> true end}]}]}].\n"
    )
    cases = {
        "another CA": ("-proto_dist", "inet_tls", "-ssl_dist_optfile", str(other / "dist.conf")),
        "no certificate": ("-proto_dist", "inet_tls", "-ssl_dist_optfile", str(nocert)),
        "plain": (),
    }
    for what, extra in cases.items():
        node = erl_node(tls_cluster, *extra)
        try:
            answer, took = ping(node, sidecar)
            assert answer == PANG, what
            assert took < REFUSED_WITHIN_S, (what, took)
        finally:
            node.stop()
    # The sidecar's log names each cause.
    log = tls_cluster.runner.log_path(sidecar).read_text()
    assert "Unknown CA" in log
    assert "no_client_certificate_provided" in log
    assert "unsupported_record_type" in log  # a plain handshake where TLS was due


def test_a_plain_cluster_warns_that_distribution_is_unencrypted(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "run", tls=False, pods=1)
    try:
        with connect(cluster) as hp:
            hp.add_rooms("den")
        logs = cluster.runner.run_dir / "logs"
        for spec in cluster.pods:
            for node in (spec.sidecar_node, spec.python_node):
                text = (logs / f"{node.split('@')[0]}.log").read_text()
                assert "plain TCP, unencrypted" in text, node
        assert not (cluster.runner.run_dir / "tls").exists()
    finally:
        cluster.runner.down(timeout=60)


def test_up_tls_from_the_command_line(tmp_path: Path) -> None:
    """``houseparty up --tls`` says so and prints the iex line with the client's optfile;
    ``status`` and ``down`` then reach the pods over TLS with nothing more given."""
    env = {**os.environ, "HOUSEPARTY_RUN_DIR": str(tmp_path / "run")}
    for name in ("HOUSEPARTY_TLS_DIR", "HP_TLS_DIR", "HOUSEPARTY_NODES"):
        env.pop(name, None)
    run = [sys.executable, "-m", "houseparty.cli"]
    base = str(free_base_port(1))
    tag = "_" + os.urandom(3).hex()
    done = subprocess.run(
        [*run, "up", "--tls", "--detach", "--pods", "1", "--base-port", base, "--name-suffix", tag],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert done.returncode == 0, done.stderr
        assert "distribution over TLS" in done.stdout
        assert "-proto_dist inet_tls -ssl_dist_optfile" in done.stdout
        status = subprocess.run(
            [*run, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stderr
        assert f"py1{tag}" in status.stdout
    finally:
        subprocess.run([*run, "down"], env=env, capture_output=True, timeout=120)


def test_without_openssl_tls_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no openssl there
    with pytest.raises(ClusterError, match="openssl not found on PATH"):
        make_certificates(tmp_path / "tls", ["pod"])
    assert not (tmp_path / "tls" / "pod").exists()
