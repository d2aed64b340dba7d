"""A local cluster whose pods know the tests' own worker classes, shared by the tests of a
module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.houseparty import worker_classes
from tests.houseparty.conftest import Cluster, start_cluster

__all__ = ["own_cluster"]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three pods with ``HOUSEPARTY_WORKERS`` set to the tests' classes."""
    saved = {k: os.environ.get(k) for k in ("HOUSEPARTY_WORKERS", "PYTHONPATH")}
    os.environ["HOUSEPARTY_WORKERS"] = worker_classes.SETTING
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), saved["PYTHONPATH"]]))
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("own"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield cluster
    finally:
        if cluster.runner.is_running():
            cluster.runner.down(timeout=60)
