"""The pytest fixture for simulated pods. Import it into a conftest.py::

    from tests.sim.fixtures import pod_cluster  # noqa: F401

and ask for a cluster in a test: ``cluster = pod_cluster(3)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sim._netns import PodCluster, unavailable_reason

__all__ = ["pod_cluster"]


@pytest.fixture
def pod_cluster(tmp_path: Path) -> Iterator[Callable[[int], PodCluster]]:
    """A factory of :class:`PodCluster`; each one is torn down after the test, failed or
    not. Skips the test, with the reason, when namespaces cannot be made here. Process
    logs go to the test's tmp_path, so a failed test keeps them."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"pod simulator: {reason}")
    made: list[PodCluster] = []

    def make(pods: int = 3) -> PodCluster:
        log_dir = tmp_path / f"pods{len(made)}"
        log_dir.mkdir()
        cluster = PodCluster(pods, log_dir=log_dir)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        errors = []
        for cluster in made:
            try:
                cluster.teardown()
            except RuntimeError as e:
                errors.append(str(e))
        if errors:
            pytest.fail("; ".join(errors))
