"""HouseParty pods in network namespaces: ``house`` gives three running pods."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from tests.scenarios._house import HouseCluster, sidecar_ebin
from tests.sim import PodCluster
from tests.sim.fixtures import pod_cluster

__all__ = ["house", "pod_cluster"]

if shutil.which("erl") is None:
    pytest.skip("Erlang/OTP is not installed", allow_module_level=True)


@pytest.fixture
def house(pod_cluster: Callable[[int], PodCluster]) -> Iterator[HouseCluster]:
    """Three ready pods; skipped (by ``pod_cluster``) where namespaces cannot be made."""
    if not (sidecar_ebin() / "houseparty_sidecar.app").exists():
        pytest.skip(f"the sidecar is not compiled ({sidecar_ebin()}): run `rebar3 compile`")
    cluster = HouseCluster(pod_cluster(3))
    cluster.start_all()
    yield cluster
