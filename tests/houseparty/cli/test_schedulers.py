"""The pods of a local cluster share one machine's CPUs: each sidecar runs its share of
them, one scheduler at least."""

from __future__ import annotations

import os

from py_nodes._terms import Atom
from tests.houseparty.conftest import Cluster


def test_each_sidecar_runs_its_share_of_the_cpus(cluster: Cluster) -> None:
    share = max(1, len(os.sched_getaffinity(0)) // len(cluster.sidecars))
    with cluster.client() as hp:
        for sidecar in cluster.sidecars:
            for what in ("schedulers", "schedulers_online"):
                answer = hp.rpc(
                    "erpc",
                    "call",
                    [Atom(sidecar), Atom("erlang"), Atom("system_info"), [Atom(what)]],
                )
                assert answer == share, (sidecar, what, answer)
