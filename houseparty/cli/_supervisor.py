"""Restarts the nodes of a local cluster that died on their own, as Kubernetes restarts a
pod's container: ``python -m houseparty.cli._supervisor RUN_DIR``.

``houseparty up`` starts it beside the pods (unless ``--no-restart``) and ``down`` stops
it; it also ends by itself once no pod of the run folder runs. A node that crashes again
soon after its restart waits longer each time before the next (a crash loop backs off),
up to a minute.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from houseparty._errors import NotRunning
from houseparty._logsetup import configure_logging
from houseparty.cli._localcluster import LocalCluster

__all__ = ["Backoff", "main", "supervise"]

log = logging.getLogger("houseparty.supervisor")

CHECK_S = 0.5
MAX_WAIT_S = 60.0
# A node up this long since its last restart is no longer in a crash loop.
STABLE_S = 300.0


@dataclass
class Backoff:
    """How long a node waits before its next restart: none the first time, then 1, 2, 4...
    seconds up to ``MAX_WAIT_S``, back to none once it stayed up ``STABLE_S``."""

    restarts: int = 0
    last: float = float("-inf")

    def due(self, now: float) -> bool:
        if now - self.last > STABLE_S:
            self.restarts = 0
        wait = 0.0 if self.restarts == 0 else min(MAX_WAIT_S, 2.0 ** (self.restarts - 1))
        return now - self.last >= wait

    def restarted(self, now: float) -> None:
        self.restarts += 1
        self.last = now


def supervise(cluster: LocalCluster, check_s: float = CHECK_S) -> None:
    """Restart every node that died on its own, until no pod of ``cluster`` runs."""
    backoffs: dict[tuple[int, str], Backoff] = {}
    while True:
        try:
            dead = cluster.dead_nodes()
        except NotRunning:
            log.info("no pod of %s runs: the supervisor stops", cluster.run_dir)
            return
        now = time.monotonic()
        for index, which, pid in dead:
            backoff = backoffs.setdefault((index, which), Backoff())
            if backoff.due(now) and cluster.restart_node(index, which, pid):
                backoff.restarted(now)
                log.warning(
                    "the %s node of pod %d (pid %d) died on its own: restarted (restart %d)",
                    which,
                    index,
                    pid,
                    backoff.restarts,
                    extra={"event": "restart", "pod": index, "node": which},
                )
        time.sleep(check_s)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m houseparty.cli._supervisor RUN_DIR")
    configure_logging(os.environ)
    supervise(LocalCluster(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
