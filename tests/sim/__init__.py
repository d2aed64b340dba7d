"""Simulated Kubernetes pods for tests: network namespaces on a bridge, real processes.

See :mod:`tests.sim._netns` for the layout and the life cycle, :mod:`tests.sim._erl` for
Erlang nodes in pods. Tests get a cluster from the ``pod_cluster`` fixture factory
(:mod:`tests.sim.fixtures`), which skips with the reason when namespaces are unavailable.
"""

from tests.sim._erl import ErlError, ErlShell, erl_argv
from tests.sim._netns import (
    Pod,
    PodCluster,
    PodProcess,
    namespaces,
    reap_orphans,
    unavailable_reason,
)

__all__ = [
    "ErlError",
    "ErlShell",
    "Pod",
    "PodCluster",
    "PodProcess",
    "erl_argv",
    "namespaces",
    "reap_orphans",
    "unavailable_reason",
]
