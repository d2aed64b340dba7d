"""A local cluster whose pods know the tests' own worker classes, shared by the tests of a
module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.houseparty import worker_classes
from tests.houseparty.conftest import Cluster, cluster_with_env

__all__ = ["own_cluster", "own_env"]

REPO = Path(__file__).resolve().parents[2]


def own_env() -> dict[str, str]:
    """The environment of pods that know the tests' classes."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {"HOUSEPARTY_WORKERS": worker_classes.SETTING, "PYTHONPATH": path}


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three pods with ``HOUSEPARTY_WORKERS`` set to the tests' classes."""
    with cluster_with_env(tmp_path_factory.mktemp("own"), own_env()) as cluster:
        yield cluster
